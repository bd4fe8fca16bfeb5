//! Causal GQA attention over the KV cache: split-K partials (`shaders/attention.wgsl`) and their merge
//! (`shaders/attention_reduce.wgsl`); on CPU adapters, decode runs barrier-free instead: scores, softmax
//! and weighted sum (`shaders/attention_scores.wgsl`, `attention_softmax.wgsl`, `attention_pv.wgsl`).

use super::groups;
use super::kv::LayerCache;
use crate::op::{Grid, Op};
use crate::{Gpu, GpuError};

/// Largest number of key-range splits (decode).
pub const MAX_SPLITS: u32 = 16;

/// Keys one workgroup of the barrier-free scores launch covers (64 threads × 4 keys).
const KEYS_PER_SCORES_GROUP: u32 = 256;

/// How a device runs decode attention ([`Gpu::attention_plan`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Online-softmax partials over at most this many key ranges, then their merge (GPUs want many
    /// workgroups).
    Splits(u32),
    /// Scores, softmax and weighted sum as three launches without workgroup barriers. CPU emulators
    /// pay for barriers per workgroup (SwiftShader runs each invocation group as a coroutine).
    BarrierFree,
}

/// The `n_splits` of a call of `n_tokens` tokens whose last query sees `kv_len` keys: prefill rows
/// already give enough workgroups (1); decode splits the keys in ranges of at least 64, at most the
/// plan's; barrier-free decode counts the scores launch's workgroups along the keys.
pub fn n_splits(n_tokens: u32, kv_len: u32, plan: Plan) -> u32 {
    match plan {
        _ if n_tokens > 1 => 1,
        Plan::Splits(max) => kv_len.div_ceil(64).clamp(1, max.clamp(1, MAX_SPLITS)),
        Plan::BarrierFree => kv_len.div_ceil(KEYS_PER_SCORES_GROUP).max(1),
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

/// Floats of partial-result scratch for up to `max_tokens` tokens, caches of up to `max_pos` slots.
pub fn partial_len(
    max_tokens: usize,
    n_heads: usize,
    head_dim: usize,
    max_pos: usize,
    plan: Plan,
) -> usize {
    let partials = max_tokens.max(MAX_SPLITS as usize) * n_heads * (head_dim + 2);
    match plan {
        Plan::Splits(_) => partials,
        Plan::BarrierFree => partials.max(n_heads * (max_pos + 1)),
    }
}

/// The launches of one attention layer.
pub struct Launches {
    /// For one token.
    pub decode: Vec<Op>,
    /// For several.
    pub prefill: Vec<Op>,
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

/// The launches: partials from `q` and the cache, then their merge into `out`; for barrier-free decode
/// ([`Plan::BarrierFree`]) scores into `part`, their softmax, then the weighted sum into `out`.
///
/// # Errors
/// [`GpuError`] if a pipeline cannot be built, `head_dim` exceeds 256 or is odd.
#[allow(clippy::too_many_arguments)]
pub fn build(
    gpu: &Gpu,
    s: Shape,
    plan: Plan,
    q: &wgpu::Buffer,
    cache: &LayerCache,
    part: &wgpu::Buffer,
    out: &wgpu::Buffer,
    step: &wgpu::Buffer,
) -> Result<Launches, GpuError> {
    if s.head_dim > 256 || s.head_dim % 2 == 1 {
        return Err(GpuError::Invalid(format!(
            "head_dim {} is not supported (even and at most 256)",
            s.head_dim
        )));
    }
    let kv = if s.f16 { "1u" } else { "0u" };
    let kv_define = [("KV_F16", kv.into())];
    let pa = gpu.pipeline("attention.wgsl", "main", &kv_define)?;
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
    let prefill = vec![
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
    ];
    let decode = match plan {
        Plan::Splits(_) => prefill.clone(),
        Plan::BarrierFree => {
            let sc = gpu.pipeline("attention_scores.wgsl", "main", &kv_define)?;
            let sm = gpu.pipeline("attention_softmax.wgsl", "main", &[])?;
            let pv = gpu.pipeline("attention_pv.wgsl", "main", &kv_define)?;
            vec![
                Op {
                    bind_group: gpu.bind(&sc, &[q, &cache.k, part, &params, step]),
                    pipeline: sc,
                    grid: Grid::Attention(s.n_heads as u32),
                },
                Op {
                    bind_group: gpu.bind(&sm, &[part, &params, step]),
                    pipeline: sm,
                    grid: Grid::Fixed([groups(s.n_heads as u64, 64), 1, 1]),
                },
                Op {
                    bind_group: gpu.bind(&pv, &[part, &cache.v, out, &params, step]),
                    pipeline: pv,
                    grid: Grid::Fixed([groups((s.n_heads * s.head_dim / 2) as u64, 64), 1, 1]),
                },
            ]
        }
    };
    Ok(Launches { decode, prefill })
}
