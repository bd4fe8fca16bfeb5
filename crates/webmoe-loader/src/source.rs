//! Byte sources: something that can read a byte range.

use crate::LoadError;
#[cfg(not(target_arch = "wasm32"))]
use std::{
    fs::File,
    path::{Path, PathBuf},
};

/// Random access to the bytes of one file-like object.
pub trait ByteSource {
    /// Total size in bytes.
    fn len(&self) -> u64;
    /// Whether the source is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Reads exactly `len` bytes at `offset`.
    ///
    /// # Errors
    /// [`LoadError::Io`] when the range cannot be read in full.
    fn read_at(&self, offset: u64, len: u64) -> Result<Vec<u8>, LoadError>;
    /// A name for error messages (path or URL).
    fn name(&self) -> String;
    /// Whether parallel or out-of-order reads are slow (a server without `Range` support).
    fn prefers_sequential(&self) -> bool {
        false
    }
}

/// A local file.
#[cfg(not(target_arch = "wasm32"))]
pub struct FileSource {
    path: PathBuf,
    file: File,
    len: u64,
}

#[cfg(not(target_arch = "wasm32"))]
impl FileSource {
    /// Opens `path`, which must be a regular file (a FIFO, device or directory would block or
    /// never end: `/dev/zero` as a tokenizer, a named pipe as the model).
    ///
    /// # Errors
    /// [`LoadError::Io`] when the path is not a regular file or cannot be opened.
    pub fn open(path: &Path) -> Result<Self, LoadError> {
        let io = |e: std::io::Error| LoadError::Io {
            source_name: path.display().to_string(),
            message: e.to_string(),
        };
        // stat before open: opening a FIFO blocks until a writer appears.
        let meta = std::fs::metadata(path).map_err(io)?;
        if !meta.is_file() {
            return Err(LoadError::Io {
                source_name: path.display().to_string(),
                message: "not a regular file (only files are read as models and tokenizers, not pipes, devices or folders)".into(),
            });
        }
        let file = File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        Ok(FileSource {
            path: path.to_path_buf(),
            file,
            len,
        })
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl ByteSource for FileSource {
    fn len(&self) -> u64 {
        self.len
    }
    fn read_at(&self, offset: u64, len: u64) -> Result<Vec<u8>, LoadError> {
        use std::os::unix::fs::FileExt;
        if offset.checked_add(len).is_none_or(|e| e > self.len) {
            return Err(LoadError::Io {
                source_name: self.name(),
                message: format!("range {offset}+{len} beyond the end ({} bytes)", self.len),
            });
        }
        let mut buf = vec![0u8; len as usize];
        self.file
            .read_exact_at(&mut buf, offset)
            .map_err(|e| LoadError::Io {
                source_name: self.name(),
                message: e.to_string(),
            })?;
        Ok(buf)
    }
    fn name(&self) -> String {
        self.path.display().to_string()
    }
}

/// Bytes in memory (tests, small fixtures).
pub struct MemorySource(pub Vec<u8>);

impl ByteSource for MemorySource {
    fn len(&self) -> u64 {
        self.0.len() as u64
    }
    fn read_at(&self, offset: u64, len: u64) -> Result<Vec<u8>, LoadError> {
        let end = offset
            .checked_add(len)
            .filter(|&e| e <= self.len())
            .ok_or_else(|| LoadError::Io {
                source_name: self.name(),
                message: format!("range {offset}+{len} beyond the end"),
            })?;
        Ok(self.0[offset as usize..end as usize].to_vec())
    }
    fn name(&self) -> String {
        "memory".into()
    }
}
