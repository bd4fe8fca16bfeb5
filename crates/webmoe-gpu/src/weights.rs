//! The weight store: GGUF tensor bytes uploaded unchanged into GPU buffers as they arrive.
//!
//! A tensor larger than one storage binding is split by rows into shards, each its own buffer no
//! larger than [`Gpu::max_binding_bytes`]; kernels run once per shard. Writes to a buffer must be
//! 4-byte aligned, so each tensor keeps a small carry of bytes until a word is complete.
//!
//! A tensor quantized on load (see [`WeightStore::quantize_on_upload`]) arrives as F32/F16/BF16 rows
//! instead: complete rows go to a staging buffer and `shaders/quantize.wgsl` writes their blocks into
//! the tensor's shards, so the CPU never touches the values.

use crate::{Gpu, GpuError};
use std::collections::HashMap;
use webmoe_core::gguf::TensorInfo;
use webmoe_core::quant::GgmlType;
use webmoe_core::TensorSink;

/// Rows `[row0, row0 + n_rows)` of a tensor, in one buffer.
#[derive(Debug)]
pub struct Shard {
    /// The buffer (raw block bytes, padded to 4).
    pub buffer: wgpu::Buffer,
    /// First row held.
    pub row0: u64,
    /// Rows held.
    pub n_rows: u64,
}

/// A tensor on the GPU.
#[derive(Debug)]
pub struct GpuTensor {
    /// Storage type.
    pub ty: GgmlType,
    /// GGUF dims (`dims[0]` contiguous).
    pub dims: Vec<u64>,
    /// Bytes per row.
    pub row_bytes: u64,
    /// Row shards, in order.
    pub shards: Vec<Shard>,
}

impl GpuTensor {
    /// Elements per row.
    pub fn row_len(&self) -> u64 {
        self.dims[0]
    }
    /// Number of rows.
    pub fn n_rows(&self) -> u64 {
        self.dims.iter().skip(1).product()
    }
    fn shard_bytes(&self) -> u64 {
        self.shards[0].n_rows * self.row_bytes
    }
}

struct Pending {
    name: String,
    /// Bytes written so far (for a converted tensor: rows written so far).
    next: u64,
    carry: Vec<u8>,
    convert: Option<Convert>,
}

/// Rows of another type that are quantized on the GPU as they arrive.
struct Convert {
    src_row_bytes: u64,
    pipeline: wgpu::ComputePipeline,
}

/// Source bytes converted per dispatch at most (rounded down to 4 rows, at least 4 rows).
const CONVERT_BYTES: u64 = 16 << 20;

/// All weights of a model on the GPU; also the [`TensorSink`] that uploads them.
pub struct WeightStore {
    tensors: HashMap<String, GpuTensor>,
    by_index: HashMap<usize, Pending>,
    device: wgpu::Device,
    queue: wgpu::Queue,
    /// Bytes uploaded so far.
    pub uploaded: u64,
}

/// Rows per shard for a tensor with rows of `row_bytes` under a binding limit: a multiple of 4 rows (so
/// every shard starts 4-byte aligned), as many as fit.
pub fn rows_per_shard(row_bytes: u64, n_rows: u64, max_binding: u64) -> Result<u64, GpuError> {
    if row_bytes * n_rows <= max_binding {
        return Ok(n_rows);
    }
    let rows = (max_binding / row_bytes) & !3;
    if rows == 0 {
        return Err(GpuError::TooLarge(format!(
            "one row of {row_bytes} bytes exceeds the storage binding limit of {max_binding} bytes"
        )));
    }
    Ok(rows)
}

impl WeightStore {
    /// Allocates buffers for `tensors` (`(file index, info)` pairs).
    ///
    /// # Errors
    /// [`GpuError::TooLarge`] when a tensor cannot be split to fit the device.
    pub fn allocate(gpu: &Gpu, tensors: &[(usize, &TensorInfo)]) -> Result<Self, GpuError> {
        let mut store = WeightStore {
            tensors: HashMap::new(),
            by_index: HashMap::new(),
            device: gpu.device.clone(),
            queue: gpu.queue.clone(),
            uploaded: 0,
        };
        for &(index, t) in tensors {
            let row_bytes = t.row_bytes();
            let n_rows = t.n_rows();
            let per = rows_per_shard(row_bytes, n_rows, gpu.max_binding_bytes)?;
            let mut shards = Vec::new();
            let mut row0 = 0;
            while row0 < n_rows {
                let n = per.min(n_rows - row0);
                shards.push(Shard {
                    buffer: gpu.storage(&t.name, n * row_bytes),
                    row0,
                    n_rows: n,
                });
                row0 += n;
            }
            store.tensors.insert(
                t.name.clone(),
                GpuTensor {
                    ty: t.ggml_type,
                    dims: t.dims.clone(),
                    row_bytes,
                    shards,
                },
            );
            store.by_index.insert(
                index,
                Pending {
                    name: t.name.clone(),
                    next: 0,
                    carry: Vec::new(),
                    convert: None,
                },
            );
        }
        Ok(store)
    }

    /// Declares that tensor `index` will arrive as rows of `src` (F32, F16 or BF16) and is to be
    /// quantized on the GPU into its allocated type (Q8_0, Q4_0 or Q4_K).
    ///
    /// # Errors
    /// [`GpuError::Invalid`] for an unknown index or a pair of types the quantizer does not handle.
    pub fn quantize_on_upload(
        &mut self,
        gpu: &Gpu,
        index: usize,
        src: GgmlType,
    ) -> Result<(), GpuError> {
        let p = self
            .by_index
            .get_mut(&index)
            .ok_or_else(|| GpuError::Invalid(format!("tensor #{index} was not allocated")))?;
        let t = &self.tensors[&p.name];
        p.convert = Some(Convert {
            src_row_bytes: src.row_bytes(t.row_len()),
            pipeline: crate::kernels::quantize::pipeline(gpu, src, t.ty, t.row_len())?,
        });
        Ok(())
    }

    /// A tensor by name.
    ///
    /// # Errors
    /// [`GpuError::Invalid`] if it was not allocated.
    pub fn get(&self, name: &str) -> Result<&GpuTensor, GpuError> {
        self.tensors
            .get(name)
            .ok_or_else(|| GpuError::Invalid(format!("tensor {name} is not on the GPU")))
    }

    /// Total bytes held.
    pub fn total_bytes(&self) -> u64 {
        self.tensors
            .values()
            .map(|t| t.row_bytes * t.n_rows())
            .sum()
    }

    /// Writes out the carried bytes of every tensor (zero-padded to a word) and converts the last rows
    /// of converted tensors. Call after the last chunk.
    ///
    /// # Errors
    /// When a converted tensor ends with a partial row (the source was shorter than planned).
    pub fn finish(&mut self) -> Result<(), GpuError> {
        let mut indices: Vec<usize> = self.by_index.keys().copied().collect();
        indices.sort_unstable();
        for index in indices {
            let p = self.by_index.get_mut(&index).expect("listed");
            if p.carry.is_empty() {
                continue;
            }
            if p.convert.is_some() {
                self.convert_rows(index, true)?;
                continue;
            }
            let (name, at, mut bytes) = (p.name.clone(), p.next, std::mem::take(&mut p.carry));
            bytes.resize(4, 0);
            self.write_aligned(&name, at, &bytes);
        }
        Ok(())
    }

    /// Quantizes the complete rows carried for converted tensor `index` into its shards; before the
    /// tensor's end only whole groups of 4 rows, so that every call starts on a word.
    fn convert_rows(&mut self, index: usize, last: bool) -> Result<(), GpuError> {
        let p = self.by_index.get_mut(&index).expect("allocated");
        let c = p.convert.as_ref().expect("converted tensor");
        let t = &self.tensors[&p.name];
        let mut rows = p.carry.len() as u64 / c.src_row_bytes;
        if last && p.carry.len() as u64 != rows * c.src_row_bytes {
            return Err(GpuError::Invalid(format!(
                "tensor {} ended inside a row",
                p.name
            )));
        }
        if !last {
            rows &= !3;
        }
        let mut done = 0;
        while done < rows {
            // Rows [row, row + n) go to one shard.
            let row = p.next + done;
            let shard_rows = t.shards[0].n_rows;
            let shard = &t.shards[(row / shard_rows) as usize];
            let in_shard = row - shard.row0;
            let n = (rows - done)
                .min((CONVERT_BYTES / c.src_row_bytes).max(4) & !3)
                .min(shard.n_rows - in_shard);
            let src =
                &p.carry[(done * c.src_row_bytes) as usize..][..(n * c.src_row_bytes) as usize];
            crate::kernels::quantize::run(
                &self.device,
                &self.queue,
                &c.pipeline,
                src,
                &shard.buffer,
                crate::kernels::quantize::Call {
                    k: t.row_len(),
                    src_row_bytes: c.src_row_bytes,
                    n_rows: n,
                    dst_byte: in_shard * t.row_bytes,
                    ty: t.ty,
                },
            );
            done += n;
        }
        p.next += rows;
        p.carry.drain(..(rows * c.src_row_bytes) as usize);
        Ok(())
    }

    fn write_aligned(&self, name: &str, mut at: u64, mut bytes: &[u8]) {
        let t = &self.tensors[name];
        let shard_bytes = t.shard_bytes();
        while !bytes.is_empty() {
            let s = (at / shard_bytes) as usize;
            let off = at % shard_bytes;
            let shard = &t.shards[s];
            let room = (shard.n_rows * t.row_bytes).div_ceil(4) * 4 - off;
            let n = (bytes.len() as u64).min(room) as usize;
            self.queue.write_buffer(&shard.buffer, off, &bytes[..n]);
            bytes = &bytes[n..];
            at += n as u64;
        }
    }
}

impl TensorSink for WeightStore {
    fn write(&mut self, index: usize, offset: u64, bytes: &[u8]) -> Result<(), String> {
        let p = self
            .by_index
            .get_mut(&index)
            .ok_or_else(|| format!("tensor #{index} was not allocated"))?;
        // Bytes received so far, in the layout they arrive in.
        let received = match &p.convert {
            Some(c) => p.next * c.src_row_bytes,
            None => p.next,
        } + p.carry.len() as u64;
        if offset != received {
            return Err(format!(
                "tensor {}: chunk at {offset} arrived out of order (expected {received})",
                p.name
            ));
        }
        self.uploaded += bytes.len() as u64;
        if p.convert.is_some() {
            p.carry.extend_from_slice(bytes);
            return self.convert_rows(index, false).map_err(|e| e.to_string());
        }
        let mut data = std::mem::take(&mut p.carry);
        data.extend_from_slice(bytes);
        let aligned = data.len() / 4 * 4;
        let at = p.next;
        p.next += aligned as u64;
        p.carry = data[aligned..].to_vec();
        let name = p.name.clone();
        self.write_aligned(&name, at, &data[..aligned]);
        Ok(())
    }
}
