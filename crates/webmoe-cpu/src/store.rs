//! The CPU weight store: a [`TensorSink`] that repacks each tensor's rows into its kernel layout as
//! the bytes stream in, so a tensor is never held twice (only a partial row waits for its rest).

use crate::matrix::Matrix;
use crate::CpuError;
use std::collections::HashMap;
use webmoe_core::gguf::GgufHeader;
use webmoe_core::quant::{dequantize, quantize, GgmlType};
use webmoe_core::TensorSink;

struct Slot {
    name: String,
    /// Type of the bytes that arrive.
    streamed: GgmlType,
    /// Type the rows are stored as (differs for quantization on load).
    stored: GgmlType,
    /// Bytes of one streamed row.
    row_bytes: usize,
    /// Bytes expected and received.
    size: u64,
    received: u64,
    /// A partial row waiting for the rest.
    pending: Vec<u8>,
    matrix: Matrix,
}

/// Weights of a model in the CPU kernels' layouts.
pub struct WeightStore {
    slots: HashMap<usize, Slot>,
    by_name: HashMap<String, usize>,
}

impl WeightStore {
    /// Room for the tensors `indices` of `header` (stored as the header says).
    ///
    /// # Errors
    /// [`CpuError::Load`] for an index outside the header or a tensor with no rows.
    pub fn new(header: &GgufHeader, indices: &[usize]) -> Result<Self, CpuError> {
        let mut slots = HashMap::new();
        let mut by_name = HashMap::new();
        for &i in indices {
            let t = header
                .tensors
                .get(i)
                .ok_or_else(|| CpuError::Load(format!("tensor index {i} is not in the file")))?;
            let cols = *t.dims.first().unwrap_or(&1) as usize;
            if cols == 0 {
                return Err(CpuError::Load(format!("tensor {} is empty", t.name)));
            }
            let rows = (t.n_elements() / cols as u64) as usize;
            slots.insert(
                i,
                Slot {
                    name: t.name.clone(),
                    streamed: t.ggml_type,
                    stored: t.ggml_type,
                    row_bytes: t.ggml_type.row_bytes(cols as u64) as usize,
                    size: t.size_bytes,
                    received: 0,
                    pending: Vec::new(),
                    matrix: Matrix::with_capacity(t.ggml_type, rows, cols),
                },
            );
            by_name.insert(t.name.clone(), i);
        }
        Ok(WeightStore { slots, by_name })
    }

    /// Declares that tensor `index` streams as rows of `src` (F32/F16/BF16) and is quantized to its
    /// header type on the CPU as the rows arrive.
    ///
    /// # Errors
    /// [`CpuError::Load`] for an unknown tensor or a source type that is not a float type.
    pub fn quantize_on_upload(&mut self, index: usize, src: GgmlType) -> Result<(), CpuError> {
        let s = self
            .slots
            .get_mut(&index)
            .ok_or_else(|| CpuError::Load(format!("tensor index {index} is not stored")))?;
        if !matches!(src, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16) {
            return Err(CpuError::Load(format!(
                "{}: quantization on load reads F32, F16 or BF16 rows, not {}",
                s.name,
                src.name()
            )));
        }
        let cols = s.matrix.cols as u64;
        s.size = s.size / s.stored.row_bytes(cols) * src.row_bytes(cols);
        s.streamed = src;
        s.row_bytes = src.row_bytes(cols) as usize;
        Ok(())
    }

    /// The matrix of tensor `name`.
    ///
    /// # Errors
    /// [`CpuError::Load`] when the model has no such tensor.
    pub fn get(&self, name: &str) -> Result<&Matrix, CpuError> {
        self.by_name
            .get(name)
            .and_then(|i| self.slots.get(i))
            .map(|s| &s.matrix)
            .ok_or_else(|| CpuError::Load(format!("tensor {name} is not loaded")))
    }

    /// Checks that every tensor arrived whole.
    ///
    /// # Errors
    /// [`CpuError::Load`] naming the first incomplete tensor.
    pub fn finish(&mut self) -> Result<(), CpuError> {
        for s in self.slots.values_mut() {
            if s.received != s.size || !s.pending.is_empty() {
                return Err(CpuError::Load(format!(
                    "tensor {} got {} of {} bytes",
                    s.name, s.received, s.size
                )));
            }
            s.pending = Vec::new();
        }
        Ok(())
    }

    /// Bytes of all matrices.
    pub fn total_bytes(&self) -> u64 {
        self.slots.values().map(|s| s.matrix.bytes()).sum()
    }

    fn push(s: &mut Slot, rows: &[u8]) {
        if s.streamed == s.stored {
            s.matrix.push_rows(s.stored, rows);
            return;
        }
        let cols = s.matrix.cols;
        let mut f = vec![0f32; cols];
        for row in rows.chunks_exact(s.row_bytes) {
            dequantize(s.streamed, row, &mut f);
            s.matrix.push_rows(s.stored, &quantize(s.stored, &f));
        }
    }
}

impl TensorSink for WeightStore {
    fn write(&mut self, index: usize, offset: u64, bytes: &[u8]) -> Result<(), String> {
        let s = self
            .slots
            .get_mut(&index)
            .ok_or_else(|| format!("tensor index {index} is not part of the model"))?;
        if offset != s.received || offset + bytes.len() as u64 > s.size {
            return Err(format!(
                "tensor {}: {} bytes at offset {offset} do not continue the {} of {} received",
                s.name,
                bytes.len(),
                s.received,
                s.size
            ));
        }
        s.received += bytes.len() as u64;
        let mut data = bytes;
        if !s.pending.is_empty() {
            let need = (s.row_bytes - s.pending.len()).min(data.len());
            s.pending.extend_from_slice(&data[..need]);
            data = &data[need..];
            if s.pending.len() == s.row_bytes {
                let row = std::mem::take(&mut s.pending);
                Self::push(s, &row);
            }
        }
        let whole = data.len() / s.row_bytes * s.row_bytes;
        if whole > 0 {
            Self::push(s, &data[..whole]);
        }
        s.pending.extend_from_slice(&data[whole..]);
        Ok(())
    }
}
