//! GPU sampling (`shaders/sample.wgsl`): penalties, greedy/top-k/top-p/min-p/temperature and a seeded
//! draw, so that a decode step reads back a single u32.

use crate::op::{Grid, Op};
use crate::{Gpu, GpuError};
use webmoe_core::sampling::SamplingParams;

/// Most distinct recent tokens the repetition penalty looks at.
pub const MAX_RECENT: usize = 1024;

/// The sampler's buffers and launch.
pub struct Sampler {
    params: wgpu::Buffer,
    recent: wgpu::Buffer,
    _work: wgpu::Buffer,
    /// The chosen token id (one u32).
    pub out: wgpu::Buffer,
    op: Op,
    vocab: u32,
}

impl Sampler {
    /// A sampler reading `logits` (`vocab` f32).
    ///
    /// # Errors
    /// [`GpuError`] if the pipeline cannot be built.
    pub fn new(gpu: &Gpu, logits: &wgpu::Buffer, vocab: usize) -> Result<Self, GpuError> {
        let p = gpu.pipeline("sample.wgsl", "main", &[])?;
        let params = gpu.uniform(&[0; 12]);
        let recent = gpu.storage("recent tokens", (MAX_RECENT * 4) as u64);
        let work = gpu.storage("sampler scratch", vocab as u64 * 4);
        let out = gpu.storage("sampled token", 4);
        let op = Op {
            bind_group: gpu.bind(&p, &[logits, &work, &recent, &out, &params]),
            pipeline: p,
            grid: Grid::Fixed([1, 1, 1]),
        };
        Ok(Sampler {
            params,
            recent,
            _work: work,
            out,
            op,
            vocab: vocab as u32,
        })
    }

    /// Writes this draw's parameters: `recent` are the last tokens (the penalty window), `counter`
    /// numbers the draw within the seeded stream.
    pub fn prepare(&self, gpu: &Gpu, s: &SamplingParams, recent: &[u32], counter: u32) {
        let mut uniq: Vec<u32> = Vec::new();
        let window = &recent[recent.len().saturating_sub(s.repeat_last_n)..];
        for &t in window.iter().rev() {
            if !uniq.contains(&t) && uniq.len() < MAX_RECENT {
                uniq.push(t);
            }
        }
        let words = [
            self.vocab,
            uniq.len() as u32,
            s.top_k,
            counter,
            s.temperature.to_bits(),
            s.top_p.to_bits(),
            s.min_p.to_bits(),
            s.repeat_penalty.to_bits(),
            s.seed as u32,
            (s.seed >> 32) as u32,
            0,
            0,
        ];
        gpu.queue
            .write_buffer(&self.params, 0, bytemuck::cast_slice(&words));
        if !uniq.is_empty() {
            gpu.queue
                .write_buffer(&self.recent, 0, bytemuck::cast_slice(&uniq));
        }
    }

    /// The launch (encode it after the logits are computed).
    pub fn op(&self) -> &Op {
        &self.op
    }
}
