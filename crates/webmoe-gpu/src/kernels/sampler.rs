//! GPU sampling (`shaders/sample.wgsl`): penalties, greedy/top-k/top-p/min-p/temperature and a seeded
//! draw, so that a decode step reads back a single u32.

use crate::op::{Grid, Op};
use crate::uniforms::SampleParams;
use crate::{Gpu, GpuError};
use webmoe_core::sampling::{penalizes, penalty_window, Draw, MAX_RECENT};

/// The sampler's buffers and launch.
pub struct Sampler {
    params: wgpu::Buffer,
    recent: wgpu::Buffer,
    mask: wgpu::Buffer,
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
        let params = gpu.uniform_of(&SampleParams::default());
        let recent = gpu.storage("recent tokens", (MAX_RECENT * 8) as u64);
        let mask = gpu.storage("token mask", (vocab.div_ceil(32).max(1) * 4) as u64);
        let work = gpu.storage("sampler scratch", vocab as u64 * 4);
        let out = gpu.storage("sampled token", 4);
        let op = Op {
            bind_group: gpu.bind(&p, &[logits, &work, &recent, &out, &params, &mask]),
            pipeline: p,
            grid: Grid::Fixed([1, 1, 1]),
        };
        Ok(Sampler {
            params,
            recent,
            mask,
            _work: work,
            out,
            op,
            vocab: vocab as u32,
        })
    }

    /// Writes this draw's parameters, penalty window and token mask (uploaded per step).
    pub fn prepare(&self, gpu: &Gpu, d: &Draw) {
        let s = d.params;
        let window: Vec<u32> = if penalizes(s) {
            penalty_window(s, d.recent)
                .into_iter()
                .flat_map(|(id, n)| [id, n])
                .collect()
        } else {
            Vec::new()
        };
        let p = SampleParams {
            vocab: self.vocab,
            n_recent: (window.len() / 2) as u32,
            top_k: s.top_k,
            counter: d.counter,
            temperature: s.temperature,
            top_p: s.top_p,
            min_p: s.min_p,
            penalty: s.repeat_penalty,
            seed_lo: s.seed as u32,
            seed_hi: (s.seed >> 32) as u32,
            has_mask: u32::from(d.mask.is_some()),
            presence: s.presence_penalty,
            frequency: s.frequency_penalty,
            ..Default::default()
        };
        gpu.queue
            .write_buffer(&self.params, 0, bytemuck::cast_slice(&[p]));
        if !window.is_empty() {
            gpu.queue
                .write_buffer(&self.recent, 0, bytemuck::cast_slice(&window));
        }
        if let Some(m) = d.mask {
            let words = (self.vocab as usize).div_ceil(32);
            let mut full = m[..m.len().min(words)].to_vec();
            full.resize(words, 0);
            gpu.queue
                .write_buffer(&self.mask, 0, bytemuck::cast_slice(&full));
        }
    }

    /// The launch (encode it after the logits are computed).
    pub fn op(&self) -> &Op {
        &self.op
    }
}
