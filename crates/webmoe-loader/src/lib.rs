//! webmoe-loader: streaming model loading. A [`ByteSource`] reads byte ranges (files and native HTTP;
//! the browser's async source follows the same HTTP rules, [`remote`], without the trait); [`read_gguf_header`] reads only the header with a few growing
//! reads; [`stream_tensors`] hands tensor data to a [`TensorSink`] chunk by chunk, so a model never sits
//! whole in memory.

mod checkpoint;
mod folder;
#[cfg(not(target_arch = "wasm32"))]
mod http;
mod open;
mod plan;
pub mod remote;
mod sink;
mod source;

#[cfg(not(target_arch = "wasm32"))]
pub use http::{set_stall_timeout, HttpSource};

pub use checkpoint::{Checkpoint, CheckpointLayout, OpenFile, ShardRead};
pub use folder::{FolderAnswer, FolderOpening, FolderRead, MAX_JSON_BYTES, SHARD_FIRST_READ};
pub use open::{GgufOpening, OpenedGguf, FIRST_HEADER_READ};
pub use plan::{Chunk, ChunkPlan};
pub use sink::MemorySink;
#[cfg(not(target_arch = "wasm32"))]
pub use source::FileSource;
pub use source::{ByteSource, MemorySource};

use thiserror::Error;
use webmoe_core::gguf::{GgufHeader, TensorInfo};
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
    /// A file of a Hugging Face folder is not what it should be (invalid JSON, not safetensors,
    /// tensors that do not fit the file).
    #[error("{source_name}: {message}")]
    BadFile {
        /// Which file.
        source_name: String,
        /// What is wrong with it.
        message: String,
    },
    /// The file is not a valid GGUF.
    #[error(transparent)]
    Gguf(#[from] GgufError),
    /// Reading a remote file failed (after the retries [`remote::RETRY`] allows for that failure).
    #[error("reading {source_name}: {error}{}", if *attempts > 1 { format!(" (after {attempts} attempts)") } else { String::new() })]
    Remote {
        /// Which source (the URL).
        source_name: String,
        /// What went wrong.
        error: remote::FetchError,
        /// Attempts made.
        attempts: u32,
    },
    /// The sink rejected data.
    #[error("storing tensor data: {0}")]
    Sink(String),
    /// A tensor the caller asked for is not in the file.
    #[error("missing tensor {0}")]
    MissingTensor(String),
    /// The files do not describe a model webmoe runs.
    #[error(transparent)]
    Model(#[from] webmoe_core::ModelError),
    /// The tokenizer files do not describe a tokenizer.
    #[error("building the tokenizer: {0}")]
    Tokenizer(#[from] webmoe_core::TokenizerError),
}

/// Reads a regular file of at most [`MAX_JSON_BYTES`] as UTF-8 text (a tokenizer file).
///
/// # Errors
/// [`LoadError::Io`] for a non-regular file (FIFO, device), one that is too large, unreadable or not
/// UTF-8.
#[cfg(not(target_arch = "wasm32"))]
pub fn read_small_file(path: &std::path::Path) -> Result<String, LoadError> {
    let src = FileSource::open(path)?;
    let name = src.name();
    if src.len() > MAX_JSON_BYTES {
        return Err(LoadError::Io {
            source_name: name,
            message: format!(
                "{} bytes is more than the {} a tokenizer file may have",
                src.len(),
                MAX_JSON_BYTES
            ),
        });
    }
    String::from_utf8(src.read_at(0, src.len())?).map_err(|_| LoadError::Io {
        source_name: name,
        message: "not UTF-8 text".into(),
    })
}

/// Default size of one read while streaming tensor data.
pub const DEFAULT_CHUNK_BYTES: u64 = 16 << 20;

/// Reads and parses the GGUF header with a few reads of growing size ([`GgufOpening`]'s reads).
///
/// # Errors
/// [`LoadError::Io`] when reading fails, [`LoadError::Gguf`] when the header is invalid or truncated.
pub fn read_gguf_header(src: &dyn ByteSource) -> Result<GgufHeader, LoadError> {
    let mut opening = GgufOpening::new(src.len());
    while opening.header().is_none() {
        let (offset, len) = opening.need().expect("a header still to read");
        opening.feed(&src.read_at(offset, len)?)?;
    }
    Ok(opening.into_header().expect("just parsed"))
}

/// Opens a GGUF file by [`GgufOpening`]'s recipe: header, `rope_freqs`, model description.
///
/// # Errors
/// As [`GgufOpening::feed`] and [`GgufOpening::finish`]; read errors.
pub fn open_gguf(src: &dyn ByteSource) -> Result<OpenedGguf, LoadError> {
    let mut opening = GgufOpening::new(src.len());
    while let Some((offset, len)) = opening.need() {
        opening.feed(&src.read_at(offset, len)?)?;
    }
    opening.finish()
}

/// Default number of chunk reads in flight.
pub const DEFAULT_PARALLEL: usize = 4;

/// Streams the data of the tensors `indices` (into `header.tensors`) to `sink` in the reads of a
/// [`ChunkPlan`] of `chunk_bytes`, with up to `parallel` reads in flight (on threads; sources that prefer
/// sequential access get one). Chunks reach the sink in file order, so at most `parallel` chunks are held
/// in memory. `progress(done, total)` is called after each delivered chunk.
///
/// # Errors
/// [`LoadError::Io`] or [`LoadError::Remote`] when a read fails (after the source's own retries;
/// [`remote::FetchError::Changed`] when the file changed), [`LoadError::Sink`] when the sink fails.
pub fn stream_tensors(
    src: &(dyn ByteSource + Sync),
    header: &GgufHeader,
    indices: &[usize],
    chunk_bytes: u64,
    parallel: usize,
    sink: &mut dyn TensorSink,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<(), LoadError> {
    let plan = ChunkPlan::new(header, indices, chunk_bytes);
    let jobs = &plan.chunks;
    let total = plan.total_bytes();
    let parallel = if src.prefers_sequential() {
        1
    } else {
        parallel.max(1)
    };
    let mut done = 0;
    if parallel == 1 {
        for (k, c) in jobs.iter().enumerate() {
            let bytes = src.read_at(c.offset, c.len)?;
            plan.deliver(k, &bytes, sink)?;
            done += c.len;
            progress(done, total);
        }
        return Ok(());
    }
    let (job_tx, job_rx) = std::sync::mpsc::channel::<usize>();
    let (res_tx, res_rx) = std::sync::mpsc::channel::<(usize, Result<Vec<u8>, LoadError>)>();
    let job_rx = std::sync::Mutex::new(job_rx);
    let (plan, job_rx) = (&plan, &job_rx);
    std::thread::scope(move |scope| {
        for _ in 0..parallel {
            let res_tx = res_tx.clone();
            scope.spawn(move || loop {
                let k = match job_rx.lock().unwrap().recv() {
                    Ok(k) => k,
                    Err(_) => return,
                };
                let c = plan.chunks[k];
                if res_tx.send((k, src.read_at(c.offset, c.len))).is_err() {
                    return;
                }
            });
        }
        drop(res_tx);
        let mut ready = std::collections::BTreeMap::new();
        let (mut sent, mut delivered) = (0, 0);
        while delivered < jobs.len() {
            while sent < jobs.len() && sent < delivered + parallel {
                job_tx.send(sent).expect("workers alive");
                sent += 1;
            }
            let (k, r) = res_rx.recv().expect("a worker result");
            ready.insert(k, r?);
            while let Some(bytes) = ready.remove(&delivered) {
                plan.deliver(delivered, &bytes, sink)?;
                done += jobs[delivered].len;
                progress(done, total);
                delivered += 1;
            }
        }
        Ok(())
    })
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
