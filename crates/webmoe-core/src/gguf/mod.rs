//! GGUF container: header, metadata and tensor table.
//!
//! Spec: <https://github.com/ggml-org/ggml/blob/master/docs/gguf.md>. The parser is sans-IO: it works on a
//! prefix of the file and says how many bytes it needs when the prefix is too short, so any byte source
//! (file, HTTP range requests, browser `Blob`) can drive it with a few small reads. Tensor data is never
//! touched here.
//!
//! We write our own reader instead of using a crate because it must be streaming (prefix-driven), must
//! validate every count and length against the file size before allocating, and must compile to wasm32
//! without a file system.

mod reader;
mod value;
pub mod writer;

pub use reader::{parse_header, HeaderParse, MAX_ARRAY_ELEMENTS, MAX_ENTRIES, MAX_HEADER_BYTES};
pub use value::GgufValue;

use crate::quant::GgmlType;
use std::collections::BTreeMap;

/// GGUF magic bytes `GGUF` read as a little-endian u32.
pub const GGUF_MAGIC: u32 = 0x4655_4747;
/// Alignment of tensor data when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;

/// One entry of the tensor table.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    /// Tensor name, e.g. `blk.0.attn_q.weight`.
    pub name: String,
    /// Dimensions in GGUF order: `dims[0]` is contiguous.
    pub dims: Vec<u64>,
    /// Storage type.
    pub ggml_type: GgmlType,
    /// Offset of the data relative to the start of the data section.
    pub offset: u64,
    /// Size of the data in bytes.
    pub size_bytes: u64,
}

impl TensorInfo {
    /// Number of elements.
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }
    /// Number of rows (elements / `dims[0]`).
    pub fn n_rows(&self) -> u64 {
        self.dims.iter().skip(1).product()
    }
    /// Bytes of one row of `dims[0]` elements.
    pub fn row_bytes(&self) -> u64 {
        self.ggml_type.row_bytes(self.dims[0])
    }
}

/// A parsed GGUF header: everything before the tensor data.
#[derive(Debug, Clone)]
pub struct GgufHeader {
    /// Container version (2 or 3).
    pub version: u32,
    /// Metadata key/value pairs.
    pub metadata: BTreeMap<String, GgufValue>,
    /// Tensor table, in file order.
    pub tensors: Vec<TensorInfo>,
    /// Data alignment in bytes.
    pub alignment: u64,
    /// Absolute file offset where tensor data starts.
    pub data_start: u64,
    /// Total file size in bytes.
    pub file_size: u64,
}

impl GgufHeader {
    /// Metadata value by key.
    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        self.metadata.get(key)
    }
    /// A tensor by name.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }
    /// The `general.architecture` string, if present.
    pub fn architecture(&self) -> Option<&str> {
        self.get("general.architecture").and_then(|v| v.as_str())
    }
    /// Absolute byte range `[start, end)` of a tensor's data in the file.
    pub fn tensor_range(&self, t: &TensorInfo) -> (u64, u64) {
        let start = self.data_start + t.offset;
        (start, start + t.size_bytes)
    }
}
