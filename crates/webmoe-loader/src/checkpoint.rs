//! Hugging Face model folders read in place: `config.json`, `model.safetensors` or the shards named by
//! `model.safetensors.index.json`. [`Checkpoint`] is a [`ByteSource`] over a virtual GGUF-style data
//! section (see `webmoe_core::hf`): reading a range of it reads the matching checkpoint bytes (stacking
//! experts, splitting fused tensors, transposing Llama 4 experts, widening vectors to f32), so the
//! chunked loader streams a checkpoint exactly like a GGUF file. Matrices quantized on load stream in
//! their source type ([`Checkpoint::streamed_header`]); the GPU quantizes them as they arrive. The
//! mapping is also available without I/O: [`Checkpoint::plan_reads`] names the shard ranges a read
//! needs and [`Checkpoint::read_via`] assembles it from bytes the caller fetched, for drivers whose
//! reads are asynchronous (the browser).

use crate::{ByteSource, LoadError};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Mutex;
use webmoe_core::gguf::GgufHeader;
use webmoe_core::hf::{CheckpointTensor, HfModel, PlannedTensor, Recipe};
use webmoe_core::quant::GgmlType;
use webmoe_core::ModelError;

/// Opens a file of the folder by name (`config.json`, a shard); `Ok(None)` when it does not exist.
pub type OpenFile<'a> = dyn Fn(&str) -> Result<Option<Box<dyn ByteSource + Sync>>, LoadError> + 'a;

/// Reads `len` bytes at `offset` of shard `shard`.
pub type ShardRead<'a> = dyn Fn(usize, u64, u64) -> Result<Vec<u8>, LoadError> + 'a;

/// Where a checkpoint tensor lives.
struct Located {
    shard: usize,
    offset: u64,
    info: CheckpointTensor,
}

/// A checkpoint folder as one byte source plus its model.
pub struct Checkpoint {
    /// The model and its tensor plan.
    pub model: HfModel,
    /// The GGUF-style header of the tensors as the GPU stores them (the engine's view).
    pub header: GgufHeader,
    /// The header of the virtual data section this source serves: as `header`, except that matrices
    /// quantized on load keep their source type (the loader's view).
    pub streamed_header: GgufHeader,
    /// `tokenizer.json`, `tokenizer_config.json` and `generation_config.json` when present.
    pub files: HashMap<String, Vec<u8>>,
    name: String,
    shard_names: Vec<String>,
    shards: Vec<Box<dyn ByteSource + Sync>>,
    located: HashMap<String, Located>,
    /// The last transposed expert matrix: (tensor, expert, bytes in source layout).
    cache: Mutex<Option<(String, usize, Vec<u8>)>>,
}

fn io(name: &str, message: impl Into<String>) -> LoadError {
    LoadError::Io {
        source_name: name.to_string(),
        message: message.into(),
    }
}

/// One F32, F16 or BF16 element.
fn to_f32(ty: GgmlType, c: &[u8]) -> f32 {
    match ty {
        GgmlType::F16 => half::f16::from_le_bytes([c[0], c[1]]).to_f32(),
        GgmlType::BF16 => half::bf16::from_le_bytes([c[0], c[1]]).to_f32(),
        _ => f32::from_le_bytes([c[0], c[1], c[2], c[3]]),
    }
}

/// Largest JSON file of a model folder read whole (`tokenizer.json` of a 256 k vocabulary is about
/// 20 MB).
pub const MAX_JSON_BYTES: u64 = 64 << 20;

fn read_all(src: &dyn ByteSource) -> Result<Vec<u8>, LoadError> {
    if src.len() > MAX_JSON_BYTES {
        return Err(io(
            &src.name(),
            format!(
                "{} bytes is more than the {MAX_JSON_BYTES} a configuration or tokenizer file may have",
                src.len()
            ),
        ));
    }
    src.read_at(0, src.len())
}

fn json(name: &str, bytes: &[u8]) -> Result<Value, LoadError> {
    serde_json::from_slice(bytes).map_err(|e| io(name, format!("invalid JSON: {e}")))
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

/// The safetensors header of one shard: tensor name → (absolute data offset, type and shape).
fn shard_table(src: &dyn ByteSource) -> Result<Vec<(String, u64, CheckpointTensor)>, LoadError> {
    let name = src.name();
    if src.len() < 8 {
        return Err(io(
            &name,
            "not a safetensors file (shorter than its 8-byte header length)",
        ));
    }
    let n = u64::from_le_bytes(src.read_at(0, 8)?.try_into().expect("8 bytes"));
    if n > 100 << 20 || 8 + n > src.len() {
        return Err(io(
            &name,
            format!(
                "not a safetensors file (header length {n} for a file of {} bytes)",
                src.len()
            ),
        ));
    }
    let header = src.read_at(8, n)?;
    let meta: safetensors::tensor::Metadata = serde_json::from_slice(&header)
        .map_err(|e| io(&name, format!("invalid safetensors header: {e}")))?;
    let data = 8 + n;
    let mut out = Vec::new();
    for (tname, info) in meta.tensors() {
        let (b, e) = (info.data_offsets.0 as u64, info.data_offsets.1 as u64);
        let ty = dtype(info.dtype, &tname)?;
        let elems: u64 = info.shape.iter().map(|&d| d as u64).product();
        if e < b || e - b != elems * ty.block_bytes() || data + e > src.len() {
            return Err(io(
                &name,
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

impl Checkpoint {
    /// Reads the folder's JSON files and safetensors headers (not the weights) and plans the model;
    /// with `quantize` (Q8_0, Q4_0 or Q4_K) the weight matrices are planned in that type and stream in
    /// their source type, for the GPU to quantize (the tensors whose types differ between `header` and `streamed_header`).
    ///
    /// # Errors
    /// [`LoadError::Io`] for missing or unreadable files and invalid headers; [`LoadError::Model`] when
    /// the checkpoint does not describe a model webmoe runs.
    pub fn open(
        name: &str,
        open: &OpenFile,
        quantize: Option<GgmlType>,
    ) -> Result<Self, LoadError> {
        let must = |f: &str| -> Result<Box<dyn ByteSource + Sync>, LoadError> {
            open(f)?.ok_or_else(|| io(&format!("{name}/{f}"), "not found"))
        };
        let config = json("config.json", &read_all(must("config.json")?.as_ref())?)?;
        let shard_names: Vec<String> = match open("model.safetensors.index.json")? {
            Some(idx) => {
                let v = json("model.safetensors.index.json", &read_all(idx.as_ref())?)?;
                let map = v
                    .get("weight_map")
                    .and_then(Value::as_object)
                    .ok_or_else(|| io("model.safetensors.index.json", "no weight_map"))?;
                let mut files: Vec<String> = map
                    .values()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect();
                files.sort();
                files.dedup();
                files
            }
            None => vec!["model.safetensors".into()],
        };
        let mut shards = Vec::new();
        let mut located = HashMap::new();
        for (i, f) in shard_names.iter().enumerate() {
            if f.contains('/') || f.contains("..") {
                return Err(io(f, "shard names must be plain file names"));
            }
            let src = must(f)?;
            for (tname, offset, info) in shard_table(src.as_ref())? {
                located.insert(
                    tname,
                    Located {
                        shard: i,
                        offset,
                        info,
                    },
                );
            }
            shards.push(src);
        }
        let table: HashMap<String, CheckpointTensor> = located
            .iter()
            .map(|(k, v)| (k.clone(), v.info.clone()))
            .collect();
        let mut model = HfModel::new(&config, &table).map_err(LoadError::Model)?;
        if let Some(ty) = quantize {
            model.quantize(ty);
        }
        let header = model.header();
        let streamed_header = model.streamed_header();
        let mut files = HashMap::new();
        for f in [
            "tokenizer.json",
            "tokenizer_config.json",
            "generation_config.json",
        ] {
            if let Some(src) = open(f)? {
                files.insert(f.to_string(), read_all(src.as_ref())?);
            }
        }
        Ok(Checkpoint {
            model,
            header,
            streamed_header,
            files,
            name: name.to_string(),
            shard_names,
            shards,
            located,
            cache: Mutex::new(None),
        })
    }

    /// The shard files, in the order of the shard indices [`Checkpoint::plan_reads`] gives.
    pub fn shard_names(&self) -> &[String] {
        &self.shard_names
    }

    /// The shard byte ranges `(shard, offset, len)` that reading `len` bytes at `offset` of the
    /// virtual data section reads (sorted, overlaps merged), without reading them: a driver with
    /// asynchronous I/O (the browser) fetches these, then calls [`Checkpoint::read_via`].
    ///
    /// # Errors
    /// A range beyond the end.
    pub fn plan_reads(&self, offset: u64, len: u64) -> Result<Vec<(usize, u64, u64)>, LoadError> {
        let wanted = std::cell::RefCell::new(Vec::new());
        let record = |shard: usize, off: u64, n: u64| -> Result<Vec<u8>, LoadError> {
            wanted.borrow_mut().push((shard, off, n));
            Ok(vec![0; n as usize])
        };
        self.read_with(offset, len, &record, false)?;
        let mut v = wanted.into_inner();
        v.sort_unstable();
        let mut merged: Vec<(usize, u64, u64)> = Vec::with_capacity(v.len());
        for (shard, off, n) in v {
            match merged.last_mut() {
                Some((s, o, m)) if *s == shard && off <= *o + *m => {
                    *m = (*m).max(off + n - *o);
                }
                _ => merged.push((shard, off, n)),
            }
        }
        Ok(merged)
    }

    /// Reads `len` bytes at `offset` of the virtual data section with `read(shard, offset, len)`
    /// serving the shard bytes (those [`Checkpoint::plan_reads`] named, fetched by the caller).
    ///
    /// # Errors
    /// A range beyond the end; what `read` returns.
    pub fn read_via(&self, offset: u64, len: u64, read: &ShardRead) -> Result<Vec<u8>, LoadError> {
        self.read_with(offset, len, read, true)
    }

    /// The virtual section's bytes, reading shards with `read`; `cached`: keep and use the last
    /// transposed expert matrix (not while planning, whose reads return zeros).
    fn read_with(
        &self,
        offset: u64,
        len: u64,
        read: &ShardRead,
        cached: bool,
    ) -> Result<Vec<u8>, LoadError> {
        let end = offset
            .checked_add(len)
            .filter(|&e| e <= self.len())
            .ok_or_else(|| io(&self.name, format!("range {offset}+{len} beyond the end")))?;
        let mut out = vec![0u8; len as usize];
        for (info, p) in self.streamed_header.tensors.iter().zip(&self.model.tensors) {
            let (lo, hi) = (
                offset.max(info.offset),
                end.min(info.offset + info.size_bytes),
            );
            if lo < hi {
                let bytes =
                    self.tensor_bytes(p, lo - info.offset, hi - info.offset, read, cached)?;
                out[(lo - offset) as usize..(hi - offset) as usize].copy_from_slice(&bytes);
            }
        }
        Ok(out)
    }

    /// Bytes `[a, b)` of a planned tensor, in its streamed type.
    fn tensor_bytes(
        &self,
        p: &PlannedTensor,
        a: u64,
        b: u64,
        read: &ShardRead,
        cached: bool,
    ) -> Result<Vec<u8>, LoadError> {
        let out_ty = p.streamed_type();
        let (ses, oes) = (p.src_type.block_bytes(), out_ty.block_bytes());
        let (e0, e1) = (a / oes, b.div_ceil(oes));
        let src = self.source_elements(p, e0, e1, read, cached)?;
        let out: Vec<u8> = if p.src_type == out_ty {
            src
        } else {
            // Vectors are widened to f32.
            src.chunks_exact(ses as usize)
                .flat_map(|c| to_f32(p.src_type, c).to_le_bytes())
                .collect()
        };
        let skip = (a - e0 * oes) as usize;
        Ok(out[skip..skip + (b - a) as usize].to_vec())
    }

    /// Source-type bytes of elements `[e0, e1)` of a planned tensor.
    fn source_elements(
        &self,
        p: &PlannedTensor,
        e0: u64,
        e1: u64,
        read: &ShardRead,
        cached: bool,
    ) -> Result<Vec<u8>, LoadError> {
        let es = p.src_type.block_bytes();
        let mut out = Vec::with_capacity(((e1 - e0) * es) as usize);
        match &p.recipe {
            Recipe::Rows(slices) => {
                let mut at = 0u64; // first element of this slice in the tensor
                for s in slices {
                    let t = &self.located[&s.tensor];
                    let row = *t.info.shape.last().unwrap_or(&1) as u64;
                    let n = s.rows as u64 * row;
                    let (lo, hi) = (e0.max(at), e1.min(at + n));
                    if lo < hi {
                        let off = t.offset + (s.row0 as u64 * row + lo - at) * es;
                        out.extend(read(t.shard, off, (hi - lo) * es)?);
                    }
                    at += n;
                }
            }
            Recipe::Transpose {
                tensor,
                experts,
                src_rows,
                src_cols,
                col0,
                cols,
            } => {
                let per = (*cols * *src_rows) as u64; // output elements per expert
                let t = &self.located[tensor];
                for x in (e0 / per) as usize..(e1.div_ceil(per) as usize).min(*experts) {
                    let mut cache = self.cache.lock().expect("cache lock");
                    let hit = cached
                        && cache
                            .as_ref()
                            .is_some_and(|(n, e, _)| n == tensor && *e == x);
                    let planned;
                    let m = if hit {
                        &cache.as_ref().expect("a hit").2
                    } else {
                        let bytes = (*src_rows * *src_cols) as u64 * es;
                        let matrix = read(t.shard, t.offset + x as u64 * bytes, bytes)?;
                        if cached {
                            &cache.insert((tensor.clone(), x, matrix)).2
                        } else {
                            // Planning: its zeros must not stand in for the matrix later.
                            planned = matrix;
                            &planned
                        }
                    };
                    let base = x as u64 * per;
                    for o in e0.max(base)..e1.min(base + per) {
                        // Output row r = source column col0 + r; output column c = source row c.
                        let (r, c) = ((o - base) / *src_rows as u64, (o - base) % *src_rows as u64);
                        let i = ((c * *src_cols as u64 + *col0 as u64 + r) * es) as usize;
                        out.extend_from_slice(&m[i..i + es as usize]);
                    }
                }
            }
        }
        Ok(out)
    }
}

impl ByteSource for Checkpoint {
    fn len(&self) -> u64 {
        self.streamed_header.file_size
    }

    fn read_at(&self, offset: u64, len: u64) -> Result<Vec<u8>, LoadError> {
        self.read_via(offset, len, &|shard, off, n| {
            self.shards[shard].read_at(off, n)
        })
    }

    fn name(&self) -> String {
        self.name.clone()
    }
}
