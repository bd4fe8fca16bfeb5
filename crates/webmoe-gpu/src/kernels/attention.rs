//! Causal GQA attention over the KV cache: split-K partials (`shaders/attention.wgsl`) and their merge
//! (`shaders/attention_reduce.wgsl`); on CPU adapters decode, and prefill when its scores fit, run
//! barrier-free instead: scores, softmax and weighted sum (`shaders/attention_scores.wgsl`,
//! `attention_softmax.wgsl`, `attention_pv.wgsl`).

use super::groups;
use super::kv::LayerCache;
use crate::op::{Grid, Op};
use crate::uniforms::AttentionParams;
use crate::{Gpu, GpuError};

/// Largest number of key-range splits (decode).
pub const MAX_SPLITS: u32 = 16;

/// Keys one workgroup of the barrier-free scores launch covers (64 threads × 4 keys).
const KEYS_PER_SCORES_GROUP: u32 = 256;

/// Most bytes of scores a barrier-free prefill call may hold (all its tokens × heads × cache slots);
/// above it prefill keeps the online-softmax kernel.
pub const SCORES_BUDGET: usize = 64 << 20;

/// How a device runs attention ([`Gpu::attention_plan`], then [`Plan::fit`] for a model).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Online-softmax partials over at most this many key ranges for decode, then their merge (GPUs
    /// want many workgroups). Prefill uses one range per query.
    Splits(u32),
    /// Scores, softmax and weighted sum as three launches without workgroup barriers: CPU emulators
    /// pay for barriers per workgroup (SwiftShader runs each invocation group as a coroutine). Always
    /// for decode; for prefill too when `prefill` (its scores fit [`SCORES_BUDGET`]).
    BarrierFree {
        /// Prefill runs barrier-free too.
        prefill: bool,
    },
}

impl Plan {
    /// This plan for calls of up to `max_tokens` tokens of `n_heads` heads over `max_pos` cache slots:
    /// barrier-free prefill only when its scores fit [`SCORES_BUDGET`].
    pub fn fit(self, max_tokens: usize, n_heads: usize, max_pos: usize) -> Plan {
        match self {
            Plan::BarrierFree { prefill: true }
                if scores_len(max_tokens, n_heads, max_pos) * 4 > SCORES_BUDGET =>
            {
                Plan::BarrierFree { prefill: false }
            }
            p => p,
        }
    }

    fn barrier_free(self, n_tokens: u32) -> bool {
        match self {
            Plan::Splits(_) => false,
            Plan::BarrierFree { prefill } => n_tokens == 1 || prefill,
        }
    }
}

/// The `n_splits` of a call of `n_tokens` tokens whose last query sees `kv_len` keys: barrier-free
/// calls count the scores launch's workgroups along the keys; otherwise prefill rows already give
/// enough workgroups (1), and decode splits the keys in ranges of at least 64, at most the plan's.
pub fn n_splits(n_tokens: u32, kv_len: u32, plan: Plan) -> u32 {
    match plan {
        _ if plan.barrier_free(n_tokens) => kv_len.div_ceil(KEYS_PER_SCORES_GROUP).max(1),
        Plan::Splits(max) if n_tokens == 1 => {
            kv_len.div_ceil(64).clamp(1, max.clamp(1, MAX_SPLITS))
        }
        _ => 1,
    }
}

fn scores_len(n_tokens: usize, n_heads: usize, max_pos: usize) -> usize {
    n_tokens * n_heads * (max_pos + 1)
}

/// Floats of partial-result scratch for calls of up to `max_tokens` tokens over caches of up to
/// `max_pos` slots.
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
        Plan::BarrierFree { prefill } => {
            let tokens = if prefill { max_tokens } else { 1 };
            partials.max(scores_len(tokens, n_heads, max_pos))
        }
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

/// The launches: partials from `q` and the cache, then their merge into `out`; barrier-free
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
    let params = gpu.uniform_of(&AttentionParams {
        n_heads: s.n_heads as u32,
        n_kv_heads: s.n_kv_heads as u32,
        head_dim: s.head_dim as u32,
        max_pos: s.max_pos as u32,
        scale: s.scale,
        chunk: s.chunk.unwrap_or(0) as u32,
        ..Default::default()
    });
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
    if !plan.barrier_free(1) {
        return Ok(Launches {
            decode: prefill.clone(),
            prefill,
        });
    }
    let sc = gpu.pipeline("attention_scores.wgsl", "main", &kv_define)?;
    let sm = gpu.pipeline("attention_softmax.wgsl", "main", &[])?;
    let pv = gpu.pipeline("attention_pv.wgsl", "main", &kv_define)?;
    let decode = vec![
        Op {
            bind_group: gpu.bind(&sc, &[q, &cache.k, part, &params, step]),
            pipeline: sc,
            grid: Grid::Attention(s.n_heads as u32),
        },
        Op {
            bind_group: gpu.bind(&sm, &[part, &params, step]),
            pipeline: sm,
            grid: Grid::Tokens(groups(s.n_heads as u64, 64)),
        },
        Op {
            bind_group: gpu.bind(&pv, &[part, &cache.v, out, &params, step]),
            pipeline: pv,
            grid: Grid::Tokens(groups((s.n_heads * s.head_dim / 2) as u64, 64)),
        },
    ];
    let prefill = if plan.barrier_free(2) {
        decode.clone()
    } else {
        prefill
    };
    Ok(Launches { decode, prefill })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn barrier_free_prefill_only_within_the_scores_budget() {
        let cpu = Plan::BarrierFree { prefill: true };
        // 256 tokens × 9 heads × 4097 slots × 4 bytes = 36 MiB: fits.
        assert_eq!(cpu.fit(256, 9, 4096), cpu);
        // 256 × 32 × 8193 × 4 = 256 MiB: prefill keeps the online-softmax kernel, decode stays.
        let big = cpu.fit(256, 32, 8192);
        assert_eq!(big, Plan::BarrierFree { prefill: false });
        assert_eq!(n_splits(256, 300, big), 1);
        assert_eq!(n_splits(1, 300, big), 2);
        assert_eq!(n_splits(256, 300, cpu), 2);
        assert_eq!(Plan::Splits(16).fit(256, 32, 8192), Plan::Splits(16));
        // Scratch covers the scores of every token only when prefill is barrier-free.
        assert_eq!(partial_len(256, 32, 64, 8192, big), 256 * 32 * 66);
        assert_eq!(partial_len(8, 2, 64, 100, cpu), 16 * 2 * 66);
        assert_eq!(partial_len(256, 2, 64, 100, cpu), 256 * 2 * 101);
    }
}
