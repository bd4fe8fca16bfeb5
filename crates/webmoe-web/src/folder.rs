//! The browser's driver of the loader's Hugging Face folder recipe (`webmoe_loader::FolderOpening`):
//! it answers the recipe's reads with `fetch` (a folder URL: each file under it, `Range` requests,
//! the retry and validator rules of `source.rs`) or with slices of picked files (a `FileList` or a
//! directory handle turned into named `File`s by `web/src/webmoe.js`), and reads a chunk of the
//! folder's virtual data section as the shard ranges `CheckpointLayout::plan_reads` names, which
//! `CheckpointLayout::assemble` turns into the chunk's bytes.

use crate::source::{open_url, Remote, Source};
use futures_util::future::try_join_all;
use js_sys::Uint8Array;
use std::collections::HashMap;
use webmoe_core::quant::GgmlType;
use webmoe_loader::remote::FetchError;
use webmoe_loader::{
    CheckpointLayout, FolderAnswer, FolderOpening, FolderRead, LoadError, MAX_JSON_BYTES,
};

/// Where a folder's files are.
pub enum FolderFiles {
    /// Under this URL (`…/folder/` or `…/folder`).
    Url(String),
    /// Picked or dropped files, by name.
    Picked(HashMap<String, web_sys::Blob>),
}

impl FolderFiles {
    /// The folder's name for messages and the cache key: its URL with one trailing `/`, or "the
    /// local folder".
    pub fn name(&self) -> String {
        match self {
            FolderFiles::Url(u) => format!("{}/", u.trim_end_matches('/')),
            FolderFiles::Picked(_) => "the local folder".into(),
        }
    }

    /// Opens `file`, reading its first `first` bytes; `None` when it does not exist.
    async fn open(
        &self,
        file: &str,
        first: u64,
    ) -> Result<Option<(Source, Uint8Array)>, LoadError> {
        match self {
            FolderFiles::Url(_) => {
                let url = format!("{}{file}", self.name());
                match open_url(&url, first, file.ends_with(".json")).await {
                    Ok(opened) => Ok(Some(opened)),
                    Err(LoadError::Remote {
                        error: FetchError::NotFound { .. },
                        ..
                    }) => Ok(None),
                    Err(e) => Err(e),
                }
            }
            FolderFiles::Picked(files) => {
                let Some(blob) = files.get(file) else {
                    return Ok(None);
                };
                let src = Source::Blob(blob.clone());
                let bytes = src.read(0, first.min(src.size())).await?;
                Ok(Some((src, bytes)))
            }
        }
    }
}

/// An opened folder: its layout and one source per shard.
pub struct OpenedFolder {
    /// The model, its headers, the tokenizer files and the shard map.
    pub layout: CheckpointLayout,
    shards: Vec<Source>,
}

/// Opens a folder through the loader's recipe; `Ok(None)` when it has no `config.json` (so a URL
/// may still name a GGUF file).
///
/// # Errors
/// What the recipe reports (missing or invalid files, a model webmoe does not run) and read errors.
pub async fn open_folder(
    files: &FolderFiles,
    quantize: Option<GgmlType>,
) -> Result<Option<OpenedFolder>, LoadError> {
    let mut opening = FolderOpening::new(&files.name(), quantize);
    let mut opened: HashMap<String, Source> = HashMap::new();
    while let Some(read) = opening.need() {
        let file = read.file().to_string();
        let first = match &read {
            FolderRead::Json { .. } => MAX_JSON_BYTES,
            FolderRead::Shard { len, .. } => *len,
        };
        let answer = if let Some(src) = opened.get(&file) {
            let bytes = match read.range(src.size()) {
                Some((offset, len)) => src.read(offset, len).await?.to_vec(),
                None => Vec::new(),
            };
            read.answer(src.size(), bytes)
        } else {
            match files.open(&file, first).await? {
                None if file == "config.json" => return Ok(None),
                None => FolderAnswer::Missing,
                Some((src, first_bytes)) => {
                    // The first read of a file is the whole of what the recipe asked for (a JSON
                    // file over the limit gets no bytes: the recipe refuses it from its size).
                    let bytes = match read.range(src.size()) {
                        Some(_) => first_bytes.to_vec(),
                        None => Vec::new(),
                    };
                    let answer = read.answer(src.size(), bytes);
                    if matches!(read, FolderRead::Shard { .. }) {
                        opened.insert(file, src);
                    }
                    answer
                }
            }
        };
        opening.feed(answer)?;
    }
    let layout = opening.finish()?;
    let shards = layout.take_shards(&mut opened);
    Ok(Some(OpenedFolder { layout, shards }))
}

/// A 64-bit FNV-1a hash (the cache key's digest of the folder's identity; not a security measure).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

impl OpenedFolder {
    /// The cache identity of the folder's virtual data section: its URL, a validator that changes
    /// when any shard changes (each shard's ETag or Last-Modified and size) or the plan does (the
    /// quantization, the tensor layout), and the section's size; `None` for picked files.
    pub fn remote(&self, files: &FolderFiles) -> Option<Remote> {
        let FolderFiles::Url(_) = files else {
            return None;
        };
        let mut id = String::new();
        for s in &self.shards {
            let r = s.remote()?;
            id.push_str(&format!("{}|{}|{};", r.url, r.validator, r.size));
        }
        for t in &self.layout.streamed_header.tensors {
            id.push_str(&format!("{}:{}:{};", t.name, t.ggml_type.name(), t.offset));
        }
        Some(Remote {
            url: files.name(),
            validator: format!("folder-{:016x}", fnv1a(id.as_bytes())),
            size: self.layout.len(),
        })
    }

    /// Whether shard reads may run in parallel (no shard is read as one ordered body).
    pub fn parallel_ok(&self) -> bool {
        self.shards.iter().all(Source::parallel_ok)
    }

    /// The shard ranges that `len` bytes at `offset` of the virtual section need, fetched (each
    /// stays in JS memory until [`OpenedFolder::assemble`]).
    ///
    /// # Errors
    /// A range beyond the end; read errors.
    pub async fn fetch(
        &self,
        offset: u64,
        len: u64,
    ) -> Result<Vec<(usize, u64, Uint8Array)>, LoadError> {
        let plan = self.layout.plan_reads(offset, len)?;
        let reads = plan.into_iter().map(|(shard, off, n)| async move {
            let bytes = self.shards[shard].read(off, n).await?;
            Ok::<_, LoadError>((shard, off, bytes))
        });
        if self.parallel_ok() {
            try_join_all(reads).await
        } else {
            let mut out = Vec::new();
            for r in reads {
                out.push(r.await?);
            }
            Ok(out)
        }
    }

    /// The chunk's bytes from the ranges [`OpenedFolder::fetch`] returned.
    ///
    /// # Errors
    /// As `CheckpointLayout::assemble`.
    pub fn assemble(
        &self,
        offset: u64,
        len: u64,
        fetched: Vec<(usize, u64, Uint8Array)>,
    ) -> Result<Vec<u8>, LoadError> {
        let fetched: Vec<(usize, u64, Vec<u8>)> = fetched
            .into_iter()
            .map(|(s, o, b)| (s, o, b.to_vec()))
            .collect();
        self.layout.assemble(offset, len, &fetched)
    }
}
