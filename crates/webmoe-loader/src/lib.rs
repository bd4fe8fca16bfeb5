//! webmoe-loader: streaming model loading. A [`ByteSource`] reads byte ranges (files now; HTTP and the
//! browser implement the same trait); [`read_gguf_header`] reads only the header with a few growing
//! reads; [`stream_tensors`] hands tensor data to a [`TensorSink`] chunk by chunk, so a model never sits
//! whole in memory.

mod source;

#[cfg(not(target_arch = "wasm32"))]
pub use source::FileSource;
pub use source::{ByteSource, MemorySource};

use thiserror::Error;
use webmoe_core::gguf::{parse_header, GgufHeader, HeaderParse, TensorInfo};
use webmoe_core::quant::dequantize;
use webmoe_core::GgufError;
pub use webmoe_core::TensorSink;

/// Loader errors.
#[derive(Debug, Error)]
pub enum LoadError {
    /// Reading from the source failed.
    #[error("reading {source_name}: {message}")]
    Io {
        /// Which source.
        source_name: String,
        /// What went wrong.
        message: String,
    },
    /// The file is not a valid GGUF.
    #[error(transparent)]
    Gguf(#[from] GgufError),
    /// The sink rejected data.
    #[error("storing tensor data: {0}")]
    Sink(String),
    /// A tensor the caller asked for is not in the file.
    #[error("missing tensor {0}")]
    MissingTensor(String),
}

/// Default size of one read while streaming tensor data.
pub const DEFAULT_CHUNK_BYTES: u64 = 16 << 20;
const FIRST_HEADER_READ: u64 = 1 << 20;

/// Reads and parses the GGUF header with a few reads of growing size.
///
/// # Errors
/// [`LoadError::Io`] when reading fails, [`LoadError::Gguf`] when the header is invalid or truncated.
pub fn read_gguf_header(src: &dyn ByteSource) -> Result<GgufHeader, LoadError> {
    let size = src.len();
    let mut want = FIRST_HEADER_READ.min(size);
    let mut buf = src.read_at(0, want)?;
    loop {
        match parse_header(&buf, size)? {
            HeaderParse::Done(h) => return Ok(*h),
            HeaderParse::NeedBytes(n) => {
                let more = src.read_at(want, n - want)?;
                buf.extend_from_slice(&more);
                want = n;
            }
        }
    }
}

/// Streams the data of the tensors `indices` (into `header.tensors`) to `sink` in reads of at most
/// `chunk_bytes`; `progress(done, total)` is called after each read.
///
/// # Errors
/// [`LoadError::Io`] when a read fails or comes back short, [`LoadError::Sink`] when the sink fails.
pub fn stream_tensors(
    src: &dyn ByteSource,
    header: &GgufHeader,
    indices: &[usize],
    chunk_bytes: u64,
    sink: &mut dyn TensorSink,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<(), LoadError> {
    let total: u64 = indices.iter().map(|&i| header.tensors[i].size_bytes).sum();
    let mut done = 0;
    for &i in indices {
        let t = &header.tensors[i];
        let (start, end) = header.tensor_range(t);
        let mut off = 0;
        while start + off < end {
            let n = chunk_bytes.min(end - start - off);
            let bytes = src.read_at(start + off, n)?;
            sink.write(i, off, &bytes).map_err(LoadError::Sink)?;
            off += n;
            done += n;
            progress(done, total);
        }
    }
    Ok(())
}

/// Reads one tensor whole and dequantizes it to f32 (for small tensors and the CPU reference).
///
/// # Errors
/// [`LoadError::MissingTensor`] or a read error.
pub fn read_tensor_f32(
    src: &dyn ByteSource,
    header: &GgufHeader,
    name: &str,
) -> Result<Vec<f32>, LoadError> {
    let t: &TensorInfo = header
        .tensor(name)
        .ok_or_else(|| LoadError::MissingTensor(name.into()))?;
    let (start, _) = header.tensor_range(t);
    let bytes = src.read_at(start, t.size_bytes)?;
    let mut out = vec![0f32; t.n_elements() as usize];
    dequantize(t.ggml_type, &bytes, &mut out);
    Ok(out)
}
