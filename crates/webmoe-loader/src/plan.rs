//! The chunk plan: which byte ranges of a model file to read, and how a chunk's bytes are handed to the
//! tensors it covers. Shared by the native loader and the browser loader, so both read the same ranges —
//! which is what lets the browser cache chunks and resume an interrupted download.
//!
//! Chunks sit on a fixed grid of `chunk_bytes` counted from the start of the tensor data, so a plan depends
//! only on the file and the chunk size. Small tensors that lie next to each other share one chunk instead
//! of costing a request each.

use crate::LoadError;
use webmoe_core::gguf::GgufHeader;
use webmoe_core::TensorSink;

/// Gaps between wanted tensors up to this size are read through rather than split into two ranges.
const MAX_GAP: u64 = 1 << 20;

/// One range of the file to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk {
    /// Absolute file offset.
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
}

/// The ranges to read for a set of tensors, and where their bytes go.
#[derive(Debug, Clone)]
pub struct ChunkPlan {
    /// Ranges in file order.
    pub chunks: Vec<Chunk>,
    /// (tensor index, absolute start, absolute end) of each wanted tensor, in file order.
    tensors: Vec<(usize, u64, u64)>,
}

impl ChunkPlan {
    /// Plans reads of `chunk_bytes` (at least 4) covering the tensors `indices` of `header`.
    pub fn new(header: &GgufHeader, indices: &[usize], chunk_bytes: u64) -> Self {
        let grid = chunk_bytes.max(4);
        let mut tensors: Vec<(usize, u64, u64)> = indices
            .iter()
            .map(|&i| {
                let (s, e) = header.tensor_range(&header.tensors[i]);
                (i, s, e)
            })
            .filter(|t| t.2 > t.1)
            .collect();
        tensors.sort_by_key(|t| t.1);
        // Merge into spans that are read through.
        let mut spans: Vec<(u64, u64)> = Vec::new();
        for &(_, s, e) in &tensors {
            match spans.last_mut() {
                Some(last) if s <= last.1.saturating_add(MAX_GAP) => last.1 = last.1.max(e),
                _ => spans.push((s, e)),
            }
        }
        let base = header.data_start;
        let mut chunks = Vec::new();
        for (s, e) in spans {
            let mut at = s;
            while at < e {
                let cell_end = base + ((at - base) / grid + 1) * grid;
                let end = cell_end.min(e);
                chunks.push(Chunk {
                    offset: at,
                    len: end - at,
                });
                at = end;
            }
        }
        ChunkPlan { chunks, tensors }
    }

    /// Bytes the plan reads in total.
    pub fn total_bytes(&self) -> u64 {
        self.chunks.iter().map(|c| c.len).sum()
    }

    /// Hands the bytes of chunk number `k` to `sink`, split by tensor. Chunks must be delivered in plan
    /// order (the sink expects increasing offsets within each tensor).
    ///
    /// # Errors
    /// [`LoadError::Io`] when `bytes` is not the chunk's length; [`LoadError::Sink`] when the sink fails.
    pub fn deliver(
        &self,
        k: usize,
        bytes: &[u8],
        sink: &mut dyn TensorSink,
    ) -> Result<(), LoadError> {
        let c = self.chunks[k];
        if bytes.len() as u64 != c.len {
            return Err(LoadError::Io {
                source_name: "chunk".into(),
                message: format!(
                    "got {} bytes for the range {}+{}",
                    bytes.len(),
                    c.offset,
                    c.len
                ),
            });
        }
        let (a, b) = (c.offset, c.offset + c.len);
        let first = self.tensors.partition_point(|t| t.2 <= a);
        for &(i, s, e) in &self.tensors[first..] {
            if s >= b {
                break;
            }
            let (from, to) = (s.max(a), e.min(b));
            sink.write(i, from - s, &bytes[(from - a) as usize..(to - a) as usize])
                .map_err(LoadError::Sink)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use webmoe_core::gguf::{parse_header, HeaderParse};
    use webmoe_core::quant::GgmlType;
    use webmoe_core::synthetic::SyntheticLlama;

    #[test]
    fn chunks_sit_on_the_grid_and_deliver_exactly_the_wanted_tensors() {
        let file = SyntheticLlama {
            vocab: 256,
            hidden: 128,
            layers: 2,
            heads: 2,
            kv_heads: 1,
            ffn: 256,
            ty: GgmlType::Q4_0,
            untied: true,
            context: 64,
            seed: 9,
            experts: None,
        }
        .writer()
        .to_bytes();
        let HeaderParse::Done(h) = parse_header(&file, file.len() as u64).unwrap() else {
            panic!("whole file given")
        };
        let wanted: Vec<usize> = (0..h.tensors.len()).filter(|i| i % 3 != 1).collect();
        for grid in [4, 1000, 4096, 1 << 24] {
            let plan = ChunkPlan::new(&h, &wanted, grid);
            let mut sink = crate::MemorySink::default();
            for (k, c) in plan.chunks.iter().enumerate() {
                assert!(c.len > 0 && c.len <= grid);
                let end = c.offset + c.len - h.data_start;
                assert!(
                    (c.offset - h.data_start) / grid == (end - 1) / grid,
                    "one grid cell"
                );
                let bytes = &file[c.offset as usize..(c.offset + c.len) as usize];
                plan.deliver(k, bytes, &mut sink)
                    .expect("pieces of a tensor arrive in order");
            }
            assert_eq!(sink.tensors.len(), wanted.len());
            for &i in &wanted {
                let (s, e) = h.tensor_range(&h.tensors[i]);
                assert_eq!(
                    sink.tensors[&i],
                    &file[s as usize..e as usize],
                    "tensor {i}"
                );
            }
            assert!(plan.deliver(0, &[0; 3], &mut sink).is_err(), "short chunk");
        }
    }
}
