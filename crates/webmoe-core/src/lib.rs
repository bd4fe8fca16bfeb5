//! webmoe-core: formats (GGUF), the model description, quant block formats with CPU dequantization,
//! tokenizer and chat template, sampling parameters, and the CPU reference forward pass.
//! No GPU and no I/O runtime, so everything here runs natively and on wasm32.
#![warn(missing_docs)]

pub mod chat;
pub mod chat_request;
pub mod error;
pub mod family;
pub mod generate;
pub mod gguf;
pub mod hf;
pub mod kv;
pub mod miniature;
pub mod model;
pub mod moe;
pub mod options;
pub mod plan;
pub mod pyjson;
pub mod quant;
pub mod reference;
pub mod rope;
pub mod sampling;
pub mod stop;
pub mod synthetic;
pub mod tokenizer;
pub mod tool_prompt;

pub use error::{GgufError, ModelError, TokenizerError};

/// Receives tensor data as it arrives from a loader (the GPU weight store is one implementation).
pub trait TensorSink {
    /// `bytes` belong to tensor `index` (in the file's tensor table) starting at byte `offset` of that
    /// tensor. Calls for one tensor come in increasing offset order.
    ///
    /// # Errors
    /// A message when the data cannot be stored.
    fn write(&mut self, index: usize, offset: u64, bytes: &[u8]) -> Result<(), String>;
}
