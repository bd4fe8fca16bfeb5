//! The resolved per-layer plan: every family switch of a [`ModelDesc`] interpreted once, here, into what
//! one transformer block does. The CPU reference, the GPU executor and the CPU backend all walk this
//! plan instead of re-deriving the rules (NoPE layers have no chunk and take the temperature, `Full`
//! q/k norms span all heads, the weightless L2 norm follows RoPE).

use crate::model::{
    AttnTemperature, LayerNames, ModelDesc, QkNorm, RopeStyle, Routing, SharedExpert,
};

/// A weighted RMSNorm of queries and keys before RoPE: `q` in rows of `q_len`, `k` in rows of `k_len`.
#[derive(Debug, Clone, PartialEq)]
pub struct QkWeightedNorm {
    /// Query norm weight (`q_len` values).
    pub q: String,
    /// Key norm weight (`k_len` values).
    pub k: String,
    /// Elements per normalized query row (`head_dim`, or all heads for OLMoE).
    pub q_len: usize,
    /// Elements per normalized key row.
    pub k_len: usize,
}

/// The attention half of a block.
#[derive(Debug, Clone, PartialEq)]
pub struct AttentionPlan {
    /// Input RMSNorm weight.
    pub norm: String,
    /// Projections q, k, v, o.
    pub wq: String,
    /// Key projection.
    pub wk: String,
    /// Value projection.
    pub wv: String,
    /// Output projection (added to the residual).
    pub wo: String,
    /// Biases of q, k, v.
    pub bias: Option<[String; 3]>,
    /// Weighted q/k norm before RoPE.
    pub qk_norm: Option<QkWeightedNorm>,
    /// RoPE with this pairing (`None`: a NoPE layer).
    pub rope: Option<RopeStyle>,
    /// Weightless RMS norm of each q/k head after RoPE (Llama 4 RoPE layers).
    pub l2_after_rope: bool,
    /// Queries see only keys of their own chunk of this many positions.
    pub chunk: Option<usize>,
    /// Query temperature tuning by position (Llama 4 NoPE layers).
    pub temperature: Option<AttnTemperature>,
}

/// The routed experts of a MoE block.
#[derive(Debug, Clone, PartialEq)]
pub struct RoutedPlan {
    /// Router `[E, H]`.
    pub router: String,
    /// Stacked gates `[E * I, H]`.
    pub gate: String,
    /// Stacked ups `[E * I, H]`.
    pub up: String,
    /// Stacked downs `[E * H, I]`.
    pub down: String,
    /// Experts E.
    pub n_experts: usize,
    /// Experts per token k.
    pub k: usize,
    /// Expert width I.
    pub width: usize,
    /// How router logits become weights (and whether they scale inputs or outputs).
    pub routing: Routing,
    /// The always-on shared expert.
    pub shared: Option<SharedExpert>,
}

/// The feed-forward half of a block.
#[derive(Debug, Clone, PartialEq)]
pub enum FfnPlan {
    /// One SwiGLU of `width`.
    Dense {
        /// Gate `[I, H]`.
        gate: String,
        /// Up `[I, H]`.
        up: String,
        /// Down `[H, I]`.
        down: String,
        /// I.
        width: usize,
    },
    /// Routed experts.
    Routed(RoutedPlan),
}

/// One transformer block.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerPlan {
    /// Attention half.
    pub attention: AttentionPlan,
    /// Feed-forward input RMSNorm weight.
    pub ffn_norm: String,
    /// Feed-forward half.
    pub ffn: FfnPlan,
}

impl AttentionPlan {
    /// KV cache slots this layer needs for a context of `ctx` positions: all of them, or for chunked
    /// attention a ring of `chunk + prefill_chunk` (a prefill call writes all its keys before any of its
    /// queries reads, and the oldest key a query needs is at most `chunk - 1` positions back). Position
    /// `p` lives in slot `p % slots`.
    pub fn cache_slots(&self, ctx: usize, prefill_chunk: usize) -> usize {
        cache_slots(ctx, self.chunk, prefill_chunk)
    }
}

/// The rule of [`AttentionPlan::cache_slots`] for a layer with attention chunk `chunk`.
pub fn cache_slots(ctx: usize, chunk: Option<usize>, prefill_chunk: usize) -> usize {
    match chunk {
        Some(c) => ctx.min(c + prefill_chunk),
        None => ctx,
    }
}

impl LayerPlan {
    /// Resolves block `l` of `desc`.
    pub fn new(desc: &ModelDesc, l: &LayerNames) -> Self {
        let c = &desc.config;
        let (qd, kvd) = (c.n_heads * c.head_dim, c.n_kv_heads * c.head_dim);
        let qk_norm = l.qk_norm.as_ref().map(|[q, k]| {
            let (q_len, k_len) = match c.qk_norm {
                QkNorm::Full => (qd, kvd),
                _ => (c.head_dim, c.head_dim),
            };
            QkWeightedNorm {
                q: q.clone(),
                k: k.clone(),
                q_len,
                k_len,
            }
        });
        let attention = AttentionPlan {
            norm: l.attn_norm.clone(),
            wq: l.wq.clone(),
            wk: l.wk.clone(),
            wv: l.wv.clone(),
            wo: l.wo.clone(),
            bias: l.bias.clone(),
            qk_norm,
            rope: l.rope.then_some(c.rope_style),
            l2_after_rope: l.rope && c.qk_norm == QkNorm::L2AfterRope,
            chunk: if l.rope { c.attn_chunk } else { None },
            temperature: if l.rope { None } else { c.temperature },
        };
        let ffn = match (&l.router, &c.moe) {
            (Some(router), Some(m)) => FfnPlan::Routed(RoutedPlan {
                router: router.clone(),
                gate: l.gate.clone(),
                up: l.up.clone(),
                down: l.down.clone(),
                n_experts: m.n_experts,
                k: m.n_used,
                width: m.expert_ffn_dim,
                routing: m.routing,
                shared: l.shared.clone(),
            }),
            _ => FfnPlan::Dense {
                gate: l.gate.clone(),
                up: l.up.clone(),
                down: l.down.clone(),
                width: c.ffn_dim,
            },
        };
        LayerPlan {
            attention,
            ffn_norm: l.ffn_norm.clone(),
            ffn,
        }
    }
}

impl ModelDesc {
    /// The resolved plan of every block, in order.
    pub fn layer_plans(&self) -> Vec<LayerPlan> {
        self.layers
            .iter()
            .map(|l| LayerPlan::new(self, l))
            .collect()
    }

    /// Elements per token of the widest SwiGLU intermediate any block needs (dense width, k expert
    /// widths, or a shared expert's width): the size of the feed-forward scratch of every executor.
    pub fn ffn_scratch_width(&self) -> usize {
        self.layer_plans()
            .iter()
            .map(|p| match &p.ffn {
                FfnPlan::Dense { width, .. } => *width,
                FfnPlan::Routed(r) => (r.k * r.width).max(r.shared.as_ref().map_or(0, |s| s.width)),
            })
            .max()
            .unwrap_or(0)
            .max(self.config.ffn_dim)
    }
}
