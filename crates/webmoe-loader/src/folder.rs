//! The Hugging Face folder opening recipe, without I/O: which files and byte ranges to read
//! (`config.json`, the optional `model.safetensors.index.json`, each shard's safetensors header with
//! one small read plus one for a header longer than that, then the tokenizer files), the checks on
//! each (sizes, names, offsets against the shard's size), and what they become: a
//! [`CheckpointLayout`]. The native driver ([`crate::Checkpoint::open`]) and the browser's async one
//! answer the same reads, so both open a folder with the same requests and the same errors.

use crate::checkpoint::{CheckpointLayout, Located};
use crate::LoadError;
use serde_json::Value;
use std::collections::HashMap;
use webmoe_core::hf::{CheckpointTensor, HfModel};
use webmoe_core::quant::GgmlType;
use webmoe_core::ModelError;

/// Largest JSON file of a model folder read whole (`tokenizer.json` of a 256 k vocabulary is about
/// 20 MB).
pub const MAX_JSON_BYTES: u64 = 64 << 20;

/// Bytes of the first read of a shard: its header length and, for most shards, the whole header.
pub const SHARD_FIRST_READ: u64 = 64 << 10;

/// Largest safetensors header accepted (a shard of a few thousand tensors needs well under 1 MB).
const MAX_SAFETENSORS_HEADER: u64 = 100 << 20;

/// Files read after the weights' headers when present.
const EXTRA_FILES: [&str; 3] = [
    "tokenizer.json",
    "tokenizer_config.json",
    "generation_config.json",
];

/// A read the recipe asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FolderRead {
    /// A whole JSON file of the folder (answer [`FolderAnswer::Json`], or [`FolderAnswer::Missing`]
    /// when it does not exist; `required`: then the folder cannot be opened).
    Json {
        /// File name in the folder.
        file: String,
        /// Its absence is an error.
        required: bool,
    },
    /// `len` bytes at `offset` of a shard, fewer when the shard ends first (answer
    /// [`FolderAnswer::Shard`] with the shard's size).
    Shard {
        /// File name in the folder.
        file: String,
        /// First byte.
        offset: u64,
        /// Bytes wanted.
        len: u64,
    },
}

impl FolderRead {
    /// The file it reads.
    pub fn file(&self) -> &str {
        match self {
            FolderRead::Json { file, .. } | FolderRead::Shard { file, .. } => file,
        }
    }

    /// The byte range `(offset, len)` a driver reads to answer it from a file of `size` bytes:
    /// the whole of a JSON file (`None` when it is over [`MAX_JSON_BYTES`]: the recipe refuses it
    /// from its size), what exists of a shard range.
    pub fn range(&self, size: u64) -> Option<(u64, u64)> {
        match self {
            FolderRead::Json { .. } => (size <= MAX_JSON_BYTES).then_some((0, size)),
            FolderRead::Shard { offset, len, .. } => Some((
                (*offset).min(size),
                (*len).min(size.saturating_sub(*offset)),
            )),
        }
    }

    /// The answer made of the bytes of [`FolderRead::range`] (none when it was `None`) of a file
    /// of `size` bytes.
    pub fn answer(&self, size: u64, bytes: Vec<u8>) -> FolderAnswer {
        match self {
            FolderRead::Json { .. } => FolderAnswer::Json { size, bytes },
            FolderRead::Shard { .. } => FolderAnswer::Shard { size, bytes },
        }
    }
}

/// The answer to a [`FolderRead`].
#[derive(Debug)]
pub enum FolderAnswer {
    /// The file does not exist (a 404, no such entry in a picked folder).
    Missing,
    /// A whole file: its size and bytes (a driver need not read a file over [`MAX_JSON_BYTES`]; it
    /// may answer with its size and no bytes, which the recipe refuses).
    Json {
        /// The file's size in bytes.
        size: u64,
        /// Its bytes.
        bytes: Vec<u8>,
    },
    /// Bytes of a shard and the shard's size.
    Shard {
        /// The shard's size in bytes.
        size: u64,
        /// The bytes read.
        bytes: Vec<u8>,
    },
}

/// One shard's safetensors header: tensor name → (absolute data offset, type and shape).
type ShardTable = Vec<(String, u64, CheckpointTensor)>;

/// The recipe's state: answer the read [`FolderOpening::need`] asks for until it asks for none, then
/// [`FolderOpening::finish`].
#[derive(Debug)]
pub struct FolderOpening {
    name: String,
    quantize: Option<GgmlType>,
    config: Option<Value>,
    shard_names: Option<Vec<String>>,
    /// The shard being read: its size and the bytes from its start.
    partial: Option<(u64, Vec<u8>)>,
    tables: Vec<ShardTable>,
    model: Option<HfModel>,
    extras_read: usize,
    files: HashMap<String, Vec<u8>>,
}

pub(crate) fn io(name: &str, message: impl Into<String>) -> LoadError {
    LoadError::Io {
        source_name: name.to_string(),
        message: message.into(),
    }
}

/// A file whose contents are wrong.
pub(crate) fn bad(name: &str, message: impl Into<String>) -> LoadError {
    LoadError::BadFile {
        source_name: name.to_string(),
        message: message.into(),
    }
}

fn json(name: &str, bytes: &[u8]) -> Result<Value, LoadError> {
    serde_json::from_slice(bytes).map_err(|e| bad(name, format!("invalid JSON: {e}")))
}

fn dtype(d: safetensors::Dtype, name: &str) -> Result<GgmlType, LoadError> {
    Ok(match d {
        safetensors::Dtype::F32 => GgmlType::F32,
        safetensors::Dtype::F16 => GgmlType::F16,
        safetensors::Dtype::BF16 => GgmlType::BF16,
        other => {
            return Err(LoadError::Model(ModelError::Inconsistent(format!(
            "tensor {name} has element type {other:?}; webmoe reads F32, F16 and BF16 checkpoints"
        ))))
        }
    })
}

/// The header length a shard's first 8 bytes declare, checked against the shard's size.
fn header_len(name: &str, first: &[u8], size: u64) -> Result<u64, LoadError> {
    if size < 8 || first.len() < 8 {
        return Err(bad(
            name,
            "not a safetensors file (shorter than its 8-byte header length)",
        ));
    }
    let n = u64::from_le_bytes(first[..8].try_into().expect("8 bytes"));
    if n > MAX_SAFETENSORS_HEADER || 8 + n > size {
        return Err(bad(
            name,
            format!("not a safetensors file (header length {n} for a file of {size} bytes)"),
        ));
    }
    Ok(n)
}

/// Parses a shard's header (`header` = the JSON after the length) and checks every tensor's data
/// against its shape and the shard's size.
fn shard_table(name: &str, header: &[u8], size: u64) -> Result<ShardTable, LoadError> {
    let meta: safetensors::tensor::Metadata = serde_json::from_slice(header)
        .map_err(|e| bad(name, format!("invalid safetensors header: {e}")))?;
    let data = 8 + header.len() as u64;
    let mut out = Vec::new();
    for (tname, info) in meta.tensors() {
        let (b, e) = (info.data_offsets.0 as u64, info.data_offsets.1 as u64);
        let ty = dtype(info.dtype, &tname)?;
        let elems = info
            .shape
            .iter()
            .try_fold(1u64, |p, &d| p.checked_mul(d as u64));
        let fits = elems
            .and_then(|n| n.checked_mul(ty.block_bytes()))
            .is_some_and(|bytes| e >= b && e - b == bytes && data + e <= size);
        if !fits {
            return Err(bad(
                name,
                format!(
                    "tensor {tname}: data {b}..{e} does not fit its shape or the file (truncated?)"
                ),
            ));
        }
        out.push((
            tname,
            data + b,
            CheckpointTensor {
                dtype: ty,
                shape: info.shape.clone(),
            },
        ));
    }
    Ok(out)
}

/// The shard files an index names (sorted, each once), checked to be plain file names.
fn shard_names_of(index: &Value) -> Result<Vec<String>, LoadError> {
    let map = index
        .get("weight_map")
        .and_then(Value::as_object)
        .ok_or_else(|| bad("model.safetensors.index.json", "no weight_map"))?;
    let mut files: Vec<String> = map
        .values()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect();
    files.sort();
    files.dedup();
    if files.is_empty() {
        return Err(bad(
            "model.safetensors.index.json",
            "weight_map names no file",
        ));
    }
    if let Some(f) = files
        .iter()
        .find(|f| f.is_empty() || f.contains(['/', '\\']) || f.contains("..") || f.starts_with('.'))
    {
        return Err(bad(f, "shard names must be plain file names"));
    }
    Ok(files)
}

impl FolderOpening {
    /// The recipe for the folder called `name` (for messages); with `quantize` (Q8_0, Q4_0 or Q4_K)
    /// the weight matrices are planned in that type and stream in their source type, for the GPU to
    /// quantize.
    pub fn new(name: &str, quantize: Option<GgmlType>) -> Self {
        FolderOpening {
            name: name.trim_end_matches('/').to_string(),
            quantize,
            config: None,
            shard_names: None,
            partial: None,
            tables: Vec::new(),
            model: None,
            extras_read: 0,
            files: HashMap::new(),
        }
    }

    /// The next read, or `None` when everything is read.
    pub fn need(&self) -> Option<FolderRead> {
        let json = |file: &str, required| FolderRead::Json {
            file: file.to_string(),
            required,
        };
        if self.config.is_none() {
            return Some(json("config.json", true));
        }
        let Some(shards) = &self.shard_names else {
            return Some(json("model.safetensors.index.json", false));
        };
        if let Some(file) = shards.get(self.tables.len()) {
            let file = file.clone();
            return Some(match &self.partial {
                None => FolderRead::Shard {
                    file,
                    offset: 0,
                    len: SHARD_FIRST_READ,
                },
                Some((size, have)) => {
                    let n = header_len(&file, have, *size).expect("checked when fed");
                    FolderRead::Shard {
                        file,
                        offset: have.len() as u64,
                        len: 8 + n - have.len() as u64,
                    }
                }
            });
        }
        EXTRA_FILES.get(self.extras_read).map(|f| json(f, false))
    }

    /// Takes the answer to the read [`FolderOpening::need`] asked for.
    ///
    /// # Errors
    /// [`LoadError::Io`] for a missing required file and an answer of the wrong kind or size;
    /// [`LoadError::BadFile`] for a JSON file over [`MAX_JSON_BYTES`] or invalid, an index without
    /// shards or with shard names that are not plain file names, a shard that is not safetensors or
    /// whose tensors do not fit it, a tensor in two shards; [`LoadError::Model`] when the folder
    /// does not describe a model webmoe runs.
    pub fn feed(&mut self, answer: FolderAnswer) -> Result<(), LoadError> {
        let Some(read) = self.need() else {
            return Ok(());
        };
        let path = format!("{}/{}", self.name, read.file());
        match (read, answer) {
            (FolderRead::Json { required: true, .. }, FolderAnswer::Missing) => {
                Err(io(&path, "not found"))
            }
            (FolderRead::Json { file, .. }, FolderAnswer::Missing) => {
                self.absent(&file);
                Ok(())
            }
            (FolderRead::Json { file, .. }, FolderAnswer::Json { size, bytes }) => {
                if size > MAX_JSON_BYTES {
                    return Err(bad(
                        &path,
                        format!("{size} bytes is more than the {MAX_JSON_BYTES} a configuration or tokenizer file may have"),
                    ));
                }
                if bytes.len() as u64 != size {
                    return Err(io(
                        &path,
                        format!("short read: {} of {size} bytes", bytes.len()),
                    ));
                }
                self.json_file(&file, bytes)
            }
            (FolderRead::Shard { .. }, FolderAnswer::Missing) => Err(io(&path, "not found")),
            (FolderRead::Shard { file, offset, len }, FolderAnswer::Shard { size, bytes }) => {
                let want = len.min(size.saturating_sub(offset));
                if bytes.len() as u64 != want {
                    return Err(io(
                        &path,
                        format!("short read: {} of {want} bytes at {offset}", bytes.len()),
                    ));
                }
                self.shard_bytes(&file, &path, size, bytes)
            }
            (_, _) => Err(io(&path, "the answer does not match the read asked for")),
        }
    }

    /// An optional file that does not exist.
    fn absent(&mut self, file: &str) {
        if file == "model.safetensors.index.json" {
            self.shard_names = Some(vec!["model.safetensors".into()]);
        } else {
            self.extras_read += 1;
        }
    }

    fn json_file(&mut self, file: &str, bytes: Vec<u8>) -> Result<(), LoadError> {
        match file {
            "config.json" => self.config = Some(json(file, &bytes)?),
            "model.safetensors.index.json" => {
                self.shard_names = Some(shard_names_of(&json(file, &bytes)?)?)
            }
            _ => {
                self.files.insert(file.to_string(), bytes);
                self.extras_read += 1;
            }
        }
        Ok(())
    }

    fn shard_bytes(
        &mut self,
        file: &str,
        path: &str,
        size: u64,
        bytes: Vec<u8>,
    ) -> Result<(), LoadError> {
        let (size, mut have) = match self.partial.take() {
            Some((s, _)) if s != size => {
                return Err(io(
                    path,
                    format!("its size changed from {s} to {size} bytes"),
                ))
            }
            Some(p) => p,
            None => (size, Vec::new()),
        };
        have.extend_from_slice(&bytes);
        let n = header_len(path, &have, size)?;
        if (have.len() as u64) < 8 + n {
            self.partial = Some((size, have));
            return Ok(());
        }
        let table = shard_table(file, &have[8..(8 + n) as usize], size)?;
        self.tables.push(table);
        if self.tables.len() == self.shard_names.as_ref().map_or(0, Vec::len) {
            self.plan_model()?;
        }
        Ok(())
    }

    /// Every shard header is in: plan the model.
    fn plan_model(&mut self) -> Result<(), LoadError> {
        let mut table = HashMap::new();
        for (tname, _, info) in self.tables.iter().flatten() {
            if table.insert(tname.clone(), info.clone()).is_some() {
                return Err(bad(
                    &self.name,
                    format!("tensor {tname} is in more than one shard"),
                ));
            }
        }
        let config = self.config.as_ref().expect("read first");
        let mut model = HfModel::new(config, &table).map_err(LoadError::Model)?;
        if let Some(ty) = self.quantize {
            model.quantize(ty);
        }
        self.model = Some(model);
        Ok(())
    }

    /// The folder's layout, once [`FolderOpening::need`] asks for nothing more.
    ///
    /// # Errors
    /// [`LoadError::Io`] when called before everything was read.
    pub fn finish(self) -> Result<CheckpointLayout, LoadError> {
        if self.need().is_some() {
            return Err(io(&self.name, "the folder was not read to the end"));
        }
        let model = self.model.expect("planned once every shard header is in");
        let located = self
            .tables
            .into_iter()
            .enumerate()
            .flat_map(|(shard, t)| {
                t.into_iter().map(move |(name, offset, info)| {
                    (
                        name,
                        Located {
                            shard,
                            offset,
                            info,
                        },
                    )
                })
            })
            .collect();
        Ok(CheckpointLayout::new(
            model,
            self.files,
            self.name,
            self.shard_names.expect("read before the shards"),
            located,
        ))
    }
}
