//! Hugging Face model folders read in place: `config.json`, `model.safetensors` or the shards named by
//! `model.safetensors.index.json`. A [`CheckpointLayout`] (made by the sans-IO recipe
//! [`crate::FolderOpening`]) maps a virtual GGUF-style data section (see `webmoe_core::hf`) onto the
//! shards: reading a range of it reads the matching checkpoint bytes (stacking experts, splitting
//! fused tensors, transposing Llama 4 experts, widening vectors to f32), so the chunked loader streams
//! a checkpoint exactly like a GGUF file. Matrices quantized on load stream in their source type
//! ([`CheckpointLayout::streamed_header`]); the GPU quantizes them as they arrive. The layout does no
//! I/O: [`CheckpointLayout::plan_reads`] names the shard ranges a read needs and
//! [`CheckpointLayout::read_via`] assembles it from bytes the caller fetched (the browser's driver);
//! [`Checkpoint`] is the native driver, a layout with its shards as [`ByteSource`]s.

use crate::folder::{io, FolderAnswer, FolderOpening};
use crate::{ByteSource, LoadError};
use std::collections::HashMap;
use std::sync::Mutex;
use webmoe_core::gguf::GgufHeader;
use webmoe_core::hf::{CheckpointTensor, HfModel, PlannedTensor, Recipe};
use webmoe_core::quant::GgmlType;
use webmoe_core::tokenizer::Tokenizer;

/// Opens a file of the folder by name (`config.json`, a shard); `Ok(None)` when it does not exist.
pub type OpenFile<'a> = dyn Fn(&str) -> Result<Option<Box<dyn ByteSource + Sync>>, LoadError> + 'a;

/// Reads `len` bytes at `offset` of shard `shard`.
pub type ShardRead<'a> = dyn Fn(usize, u64, u64) -> Result<Vec<u8>, LoadError> + 'a;

/// Where a checkpoint tensor lives.
#[derive(Debug)]
pub(crate) struct Located {
    pub(crate) shard: usize,
    pub(crate) offset: u64,
    pub(crate) info: CheckpointTensor,
}

/// A checkpoint folder's model and the map from its virtual data section to the shards (no I/O).
#[derive(Debug)]
pub struct CheckpointLayout {
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
    located: HashMap<String, Located>,
    /// The last transposed expert matrix: (tensor, expert, bytes in source layout).
    cache: Mutex<Option<(String, usize, Vec<u8>)>>,
}

/// A checkpoint folder read natively: its layout and its shards.
pub struct Checkpoint {
    /// What the folder holds and where.
    pub layout: CheckpointLayout,
    shards: Vec<Box<dyn ByteSource + Sync>>,
}

impl std::ops::Deref for Checkpoint {
    type Target = CheckpointLayout;
    fn deref(&self) -> &CheckpointLayout {
        &self.layout
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

impl Checkpoint {
    /// Reads the folder's JSON files and safetensors headers (not the weights) through the
    /// [`FolderOpening`] recipe, opening files with `open`; see [`FolderOpening::new`] for
    /// `quantize`.
    ///
    /// # Errors
    /// What [`FolderOpening::feed`] reports, and what `open` and the sources return.
    pub fn open(
        name: &str,
        open: &OpenFile,
        quantize: Option<GgmlType>,
    ) -> Result<Self, LoadError> {
        let mut opening = FolderOpening::new(name, quantize);
        let mut opened: HashMap<String, Box<dyn ByteSource + Sync>> = HashMap::new();
        while let Some(read) = opening.need() {
            let file = read.file().to_string();
            if !opened.contains_key(&file) {
                match open(&file)? {
                    Some(src) => {
                        opened.insert(file.clone(), src);
                    }
                    None => {
                        opening.feed(FolderAnswer::Missing)?;
                        continue;
                    }
                }
            }
            let src = &opened[&file];
            let bytes = match read.range(src.len()) {
                Some((offset, len)) => src.read_at(offset, len)?,
                None => Vec::new(),
            };
            opening.feed(read.answer(src.len(), bytes))?;
        }
        let layout = opening.finish()?;
        let shards = layout.take_shards(&mut opened);
        Ok(Checkpoint { layout, shards })
    }
}

impl CheckpointLayout {
    pub(crate) fn new(
        model: HfModel,
        files: HashMap<String, Vec<u8>>,
        name: String,
        shard_names: Vec<String>,
        located: HashMap<String, Located>,
    ) -> Self {
        CheckpointLayout {
            header: model.header(),
            streamed_header: model.streamed_header(),
            model,
            files,
            name,
            shard_names,
            located,
            cache: Mutex::new(None),
        }
    }

    /// Size of the virtual data section.
    pub fn len(&self) -> u64 {
        self.streamed_header.file_size
    }

    /// Whether the virtual data section is empty (never, for a model).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The folder's name (its path or URL).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `(tensor index, streamed type)` of the tensors the GPU quantizes on load: those whose streamed
    /// type differs from the stored one.
    pub fn quantized_on_load(&self) -> Vec<(usize, GgmlType)> {
        let pairs = self
            .header
            .tensors
            .iter()
            .zip(&self.streamed_header.tensors);
        pairs
            .enumerate()
            .filter(|(_, (t, s))| t.ggml_type != s.ggml_type)
            .map(|(i, (_, s))| (i, s.ggml_type))
            .collect()
    }

    /// The tokenizer from `tokenizer.json`, with the special tokens of `tokenizer_config.json`,
    /// `generation_config.json` and `config.json`.
    ///
    /// # Errors
    /// [`LoadError::Io`] when `tokenizer.json` is missing or not UTF-8; [`LoadError::Tokenizer`] when
    /// it does not describe a tokenizer.
    pub fn tokenizer(&self) -> Result<Tokenizer, LoadError> {
        let json = |f: &str| -> Option<serde_json::Value> {
            serde_json::from_slice(self.files.get(f)?).ok()
        };
        let path = format!("{}/tokenizer.json", self.name);
        let text = self.files.get("tokenizer.json").ok_or_else(|| {
            io(
                &path,
                "not found (a Hugging Face folder needs its tokenizer.json)",
            )
        })?;
        let text = std::str::from_utf8(text).map_err(|_| io(&path, "not UTF-8 text"))?;
        Ok(Tokenizer::from_hf(
            text,
            json("tokenizer_config.json").as_ref(),
            json("generation_config.json").as_ref(),
            self.model.bos,
            &self.model.eos,
        )?)
    }

    /// The shard sources a driver opened (`opened`: file name → source), taken out in the order of
    /// the shard indices [`CheckpointLayout::plan_reads`] gives.
    ///
    /// # Panics
    /// When a shard is not in `opened` (the recipe asks for every shard before it finishes).
    pub fn take_shards<S>(&self, opened: &mut HashMap<String, S>) -> Vec<S> {
        self.shard_names
            .iter()
            .map(|n| opened.remove(n).expect("every shard was opened"))
            .collect()
    }

    /// The shard files, in the order of the shard indices [`CheckpointLayout::plan_reads`] gives.
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

    /// Reads `len` bytes at `offset` of the virtual data section from `fetched`: the ranges
    /// `(shard, offset, bytes)` that [`CheckpointLayout::plan_reads`] named, fetched by the caller.
    ///
    /// # Errors
    /// A range beyond the end; [`LoadError::Io`] naming a shard range that `fetched` lacks.
    pub fn assemble(
        &self,
        offset: u64,
        len: u64,
        fetched: &[(usize, u64, Vec<u8>)],
    ) -> Result<Vec<u8>, LoadError> {
        self.read_via(offset, len, &|shard, off, n| {
            fetched
                .iter()
                .find(|(s, o, b)| *s == shard && *o <= off && off + n <= o + b.len() as u64)
                .map(|(_, o, b)| b[(off - o) as usize..(off - o + n) as usize].to_vec())
                .ok_or_else(|| {
                    io(
                        &self.name,
                        format!("shard {shard} bytes {off}+{n} were not fetched"),
                    )
                })
        })
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
        self.layout.len()
    }

    fn read_at(&self, offset: u64, len: u64) -> Result<Vec<u8>, LoadError> {
        self.layout.read_via(offset, len, &|shard, off, n| {
            self.shards[shard].read_at(off, n)
        })
    }

    fn name(&self) -> String {
        self.layout.name.clone()
    }
}
