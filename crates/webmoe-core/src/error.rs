#![allow(missing_docs)] // variant fields are described by each variant's message
//! Error types of webmoe-core.

use thiserror::Error;

/// Errors of the GGUF reader. Each names the cause and, where possible, the byte position.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum GgufError {
    /// The file does not start with `GGUF`.
    #[error("not a GGUF file: magic is {found:#010x}, expected 0x46554747 (\"GGUF\")")]
    BadMagic { found: u32 },
    /// Version other than 2 or 3.
    #[error("unsupported GGUF version {version} (webmoe reads versions 2 and 3)")]
    UnsupportedVersion { version: u32 },
    /// The file ends inside the header.
    #[error(
        "truncated GGUF header: the file ({file_size} bytes) ends before the tensor table does"
    )]
    TruncatedHeader { file_size: u64 },
    /// A count or length cannot fit in the rest of the file.
    #[error("corrupt GGUF: {count} {what} at byte {at} cannot fit in a file of {file_size} bytes")]
    CountBeyondFile {
        what: &'static str,
        count: u64,
        at: u64,
        file_size: u64,
    },
    /// Offset arithmetic overflowed.
    #[error("corrupt GGUF: length overflows at byte {at}")]
    LengthOverflow { at: u64 },
    /// A string is not UTF-8.
    #[error("corrupt GGUF: string at byte {at} is not valid UTF-8")]
    InvalidUtf8 { at: u64 },
    /// A metadata value is malformed.
    #[error("corrupt GGUF metadata at byte {at}: {reason}")]
    BadValue { at: u64, reason: String },
    /// `general.alignment` is not a positive multiple of 8.
    #[error("corrupt GGUF: general.alignment = {value} is not a positive multiple of 8")]
    BadAlignment { value: String },
    /// A tensor uses a ggml type webmoe does not know.
    #[error("tensor {name} has ggml type {type_id}, which webmoe does not support (supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K..Q6_K)")]
    UnknownTensorType { name: String, type_id: u32 },
    /// A tensor entry is malformed.
    #[error("corrupt GGUF: tensor {name}: {reason}")]
    BadTensor { name: String, reason: String },
    /// A tensor's data extends past the end of the file.
    #[error("tensor {name} needs bytes {offset}..{} but the file has only {file_size} bytes (truncated download?)", offset + size)]
    TensorBeyondFile {
        name: String,
        offset: u64,
        size: u64,
        file_size: u64,
    },
    /// The header (metadata and tensor table) is larger than any model needs.
    #[error("corrupt GGUF: the header needs {need} bytes, more than the {limit} a model's metadata can take")]
    HeaderTooLarge { need: u64, limit: u64 },
    /// Arrays hold more elements than any model needs.
    #[error("corrupt GGUF: {what} of {count} elements at byte {at} exceed the limit of {limit}")]
    TooManyElements {
        what: &'static str,
        count: u64,
        at: u64,
        limit: u64,
    },
    /// A metadata key appears twice.
    #[error("corrupt GGUF: metadata key {key:?} appears twice")]
    DuplicateKey { key: String },
    /// A tensor name appears twice.
    #[error("corrupt GGUF: tensor {name} appears twice")]
    DuplicateTensor { name: String },
    /// Two tensors' data overlap.
    #[error("corrupt GGUF: tensors {first} and {second} overlap in the file")]
    OverlappingTensors { first: String, second: String },
}

/// Errors building a model description from metadata and tensors.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum ModelError {
    /// `general.architecture` is not one webmoe runs.
    #[error("unsupported architecture {0:?} (webmoe runs: llama, qwen2, qwen3, qwen2moe, qwen3moe, olmoe, llama4)")]
    UnknownArchitecture(String),
    /// A required metadata key is missing or has the wrong type.
    #[error("missing or invalid metadata key {0}")]
    MissingKey(String),
    /// A required tensor is absent.
    #[error("missing tensor {0}")]
    MissingTensor(String),
    /// A tensor has an unexpected shape.
    #[error("tensor {name} has shape {found:?}, expected {expected:?}")]
    BadShape {
        name: String,
        found: Vec<u64>,
        expected: Vec<u64>,
    },
    /// Metadata values that contradict each other.
    #[error("inconsistent model: {0}")]
    Inconsistent(String),
}

/// Errors of the tokenizer and chat template.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum TokenizerError {
    /// The metadata does not describe a tokenizer webmoe can build.
    #[error("cannot build tokenizer: {0}")]
    Build(String),
    /// Encoding or decoding failed.
    #[error("tokenizer: {0}")]
    Encode(String),
    /// The chat template failed to render.
    #[error("chat template: {0}")]
    Template(String),
}
