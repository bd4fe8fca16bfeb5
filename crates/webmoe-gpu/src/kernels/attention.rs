//! Causal GQA attention over the KV cache: split-K partials (`shaders/attention.wgsl`) and their merge
//! (`shaders/attention_reduce.wgsl`).

use super::groups;
use super::kv::LayerCache;
use crate::op::{Grid, Op};
use crate::{Gpu, GpuError};

/// Largest number of key-range splits (decode).
pub const MAX_SPLITS: u32 = 16;

/// Splits for a call of `n_tokens` tokens whose last query sees `kv_len` keys, at most `max_splits`
/// ([`Gpu::max_attention_splits`]): prefill rows already give enough workgroups; decode splits the keys
/// in ranges of at least 64.
pub fn n_splits(n_tokens: u32, kv_len: u32, max_splits: u32) -> u32 {
    if n_tokens > 1 {
        1
    } else {
        kv_len
            .div_ceil(64)
            .clamp(1, max_splits.clamp(1, MAX_SPLITS))
    }
}

/// Cache slots a layer needs for a context of `ctx` positions: all of them, or for chunked attention of
/// `chunk` positions a ring of `chunk + prefill_chunk` (a prefill call writes all its keys before any of its
/// queries reads, and the oldest key a query needs is at most `chunk - 1` positions back).
pub fn cache_slots(ctx: usize, chunk: Option<usize>, prefill_chunk: usize) -> usize {
    match chunk {
        Some(c) => ctx.min(c + prefill_chunk),
        None => ctx,
    }
}

/// Floats of partial-result scratch for up to `max_tokens` tokens.
pub fn partial_len(max_tokens: usize, n_heads: usize, head_dim: usize) -> usize {
    max_tokens.max(MAX_SPLITS as usize) * n_heads * (head_dim + 2)
}

/// Shapes of one attention layer.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Query heads.
    pub n_heads: usize,
    /// KV heads.
    pub n_kv_heads: usize,
    /// Head dimension.
    pub head_dim: usize,
    /// Positions in the cache (slots of the ring for a chunked layer).
    pub max_pos: usize,
    /// Chunked local attention of this many positions (`None`: full causal).
    pub chunk: Option<usize>,
    /// Score scale (`head_dim^-0.5`).
    pub scale: f32,
    /// Cache holds packed f16.
    pub f16: bool,
}

/// The two launches: partials from `q` and the cache, then the merge into `out`.
///
/// # Errors
/// [`GpuError`] if a pipeline cannot be built or `head_dim` exceeds 256.
pub fn build(
    gpu: &Gpu,
    s: Shape,
    q: &wgpu::Buffer,
    cache: &LayerCache,
    part: &wgpu::Buffer,
    out: &wgpu::Buffer,
    step: &wgpu::Buffer,
) -> Result<[Op; 2], GpuError> {
    if s.head_dim > 256 {
        return Err(GpuError::Invalid(format!(
            "head_dim {} > 256 is not supported",
            s.head_dim
        )));
    }
    let kv = if s.f16 { "1u" } else { "0u" };
    let pa = gpu.pipeline("attention.wgsl", "main", &[("KV_F16", kv.into())])?;
    let pr = gpu.pipeline("attention_reduce.wgsl", "main", &[])?;
    let params = gpu.uniform(&[
        s.n_heads as u32,
        s.n_kv_heads as u32,
        s.head_dim as u32,
        s.max_pos as u32,
        s.scale.to_bits(),
        s.chunk.unwrap_or(0) as u32,
        0,
        0,
    ]);
    Ok([
        Op {
            bind_group: gpu.bind(&pa, &[q, &cache.k, &cache.v, part, &params, step]),
            pipeline: pa,
            grid: Grid::Attention(s.n_heads as u32),
        },
        Op {
            bind_group: gpu.bind(&pr, &[part, out, &params, step]),
            pipeline: pr,
            grid: Grid::Tokens(groups((s.n_heads * s.head_dim) as u64, 64)),
        },
    ])
}
