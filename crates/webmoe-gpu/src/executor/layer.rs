//! The launches of one transformer block, built once at load from its resolved plan
//! ([`webmoe_core::plan::LayerPlan`]): attention (norm, projections, biases, q/k norms, RoPE, cache
//! store, attention, output) and the feed-forward part (dense SwiGLU, or routed experts with an
//! optional shared expert).

use super::{Launch, Scratch};
use crate::kernels::attention::{self, Shape};
use crate::kernels::elementwise::{self, Kind};
use crate::kernels::kv::{self, LayerCache};
use crate::kernels::linear::{self, Layout};
use crate::kernels::moe::{self, Grouped, Routed, Weighting};
use crate::kernels::{fused, norm, qk, rope};
use crate::op::Op;
use crate::weights::WeightStore;
use crate::{Gpu, GpuError};
use webmoe_core::model::ModelConfig;
use webmoe_core::plan::{AttentionPlan, FfnPlan, LayerPlan};

/// What every layer's launches share.
pub(super) struct Shared<'a> {
    pub gpu: &'a Gpu,
    pub c: &'a ModelConfig,
    pub weights: &'a WeightStore,
    pub s: &'a Scratch,
    pub rope_tables: &'a wgpu::Buffer,
    /// Positions the RoPE tables hold.
    pub ctx: usize,
    pub f16: bool,
    pub attention_plan: attention::Plan,
}

const PLAIN: Layout = Layout {
    x_stride: 0,
    y_stride: 0,
    x_offset: 0,
    y_offset: 0,
    accumulate: false,
};
const RESIDUAL: Layout = Layout {
    accumulate: true,
    ..PLAIN
};

/// A launch that only prefill runs (decode folds it into the next one).
fn prefill_only(name: &'static str, op: Op) -> Launch {
    Launch {
        name,
        decode: Vec::new(),
        prefill: vec![op],
    }
}

/// The launches of one block, in order.
pub(super) fn build(
    sh: &Shared,
    l: &LayerPlan,
    cache: &LayerCache,
) -> Result<Vec<Launch>, GpuError> {
    let mut out = attention_part(sh, &l.attention, cache)?;
    out.extend(ffn_part(sh, &l.ffn_norm, &l.ffn)?);
    Ok(out)
}

fn attention_part(
    sh: &Shared,
    l: &AttentionPlan,
    cache: &LayerCache,
) -> Result<Vec<Launch>, GpuError> {
    let (g, c, s) = (sh.gpu, sh.c, sh.s);
    let w = |n: &str| sh.weights.get(n);
    let (qd, kvd) = (c.n_heads * c.head_dim, c.n_kv_heads * c.head_dim);
    let rms = norm::Rms {
        n: c.hidden as u32,
        eps: c.rms_eps,
        last_only: false,
    };
    let lin = |name, t: &str, x, y, lay| -> Result<Launch, GpuError> {
        Ok(Launch::lin(
            name,
            linear::build(g, w(t)?, x, y, &s.step, lay)?,
        ))
    };
    let norm_w = &w(&l.norm)?.shards[0].buffer;
    let norm_op = norm::build(g, &s.x, norm_w, &s.xn, &s.step, rms)?;
    let (wq, wk, wv) = (w(&l.wq)?, w(&l.wk)?, w(&l.wv)?);
    let mut out = if fused::can_fuse(g, &[wq, wk, wv], c.hidden as u64) {
        // Decode: norm and projections in one launch; prefill keeps the norm and three mat-muls.
        let folded = fused::FoldedNorm {
            weight: norm_w,
            eps: c.rms_eps,
        };
        let mut prefill = lin("q", &l.wq, &s.xn, &s.q, PLAIN)?.prefill;
        prefill.extend(lin("k", &l.wk, &s.xn, &s.k, PLAIN)?.prefill);
        prefill.extend(lin("v", &l.wv, &s.xn, &s.v, PLAIN)?.prefill);
        vec![
            prefill_only("rmsnorm", norm_op),
            Launch {
                name: "qkv",
                decode: vec![fused::qkv(
                    g,
                    [wq, wk, wv],
                    folded,
                    &s.x,
                    [&s.q, &s.k, &s.v],
                )?],
                prefill,
            },
        ]
    } else {
        vec![
            Launch::op("rmsnorm", norm_op),
            lin("q", &l.wq, &s.xn, &s.q, PLAIN)?,
            lin("k", &l.wk, &s.xn, &s.k, PLAIN)?,
            lin("v", &l.wv, &s.xn, &s.v, PLAIN)?,
        ]
    };
    if let Some([bq, bk, bv]) = &l.bias {
        for (buf, name, n) in [(&s.q, bq, qd), (&s.k, bk, kvd), (&s.v, bv, kvd)] {
            let b = &w(name)?.shards[0].buffer;
            out.push(Launch::op(
                "bias",
                elementwise::build(g, Kind::AddBias, buf, b, &s.step, n as u32)?,
            ));
        }
    }
    let per_head = qk::Rows {
        q_rows: c.n_heads,
        q_len: c.head_dim,
        k_rows: c.n_kv_heads,
        k_len: c.head_dim,
    };
    let qk_op = |rows, norm, temp| qk::build(g, &s.q, &s.k, rows, norm, c.rms_eps, temp, &s.step);
    if let Some(n) = &l.qk_norm {
        let rows = qk::Rows {
            q_rows: qd / n.q_len,
            q_len: n.q_len,
            k_rows: kvd / n.k_len,
            k_len: n.k_len,
        };
        let norm = qk::Norm::Weighted(&w(&n.q)?.shards[0].buffer, &w(&n.k)?.shards[0].buffer);
        out.push(Launch::op("qk_norm", qk_op(rows, norm, None)?));
    }
    if let Some(style) = l.rope {
        out.push(Launch::op(
            "rope",
            rope::build(g, c, style, &s.q, &s.k, sh.rope_tables, &s.step, sh.ctx)?,
        ));
    }
    if l.l2_after_rope {
        out.push(Launch::op(
            "qk_norm",
            qk_op(per_head, qk::Norm::Unit, None)?,
        ));
    }
    if let Some(t) = l.temperature {
        out.push(Launch::op(
            "qk_norm",
            qk_op(per_head, qk::Norm::None, Some(t))?,
        ));
    }
    let shape = Shape {
        n_heads: c.n_heads,
        n_kv_heads: c.n_kv_heads,
        head_dim: c.head_dim,
        max_pos: cache.max_pos,
        chunk: l.chunk,
        scale: 1.0 / (c.head_dim as f32).sqrt(),
        f16: sh.f16,
    };
    out.push(Launch::op(
        "kv_store",
        kv::build_store(g, &s.k, &s.v, cache, &s.step)?,
    ));
    let att = attention::build(
        g,
        shape,
        sh.attention_plan,
        &s.q,
        cache,
        &s.part,
        &s.att,
        &s.step,
    )?;
    out.push(Launch {
        name: "attention",
        decode: att.decode,
        prefill: att.prefill,
    });
    out.push(lin("o", &l.wo, &s.att, &s.x, RESIDUAL)?);
    Ok(out)
}

fn ffn_part(sh: &Shared, ffn_norm: &str, ffn: &FfnPlan) -> Result<Vec<Launch>, GpuError> {
    let (g, c, s) = (sh.gpu, sh.c, sh.s);
    let w = |n: &str| sh.weights.get(n);
    let rms = norm::Rms {
        n: c.hidden as u32,
        eps: c.rms_eps,
        last_only: false,
    };
    let norm_w = &w(ffn_norm)?.shards[0].buffer;
    let norm_op = norm::build(g, &s.x, norm_w, &s.xn, &s.step, rms)?;
    let lin = |name, t: &str, x, y, lay| -> Result<Launch, GpuError> {
        Ok(Launch::lin(
            name,
            linear::build(g, w(t)?, x, y, &s.step, lay)?,
        ))
    };
    let swiglu = |n: usize| -> Result<Launch, GpuError> {
        Ok(Launch::op(
            "swiglu",
            elementwise::build(g, Kind::SwiGlu, &s.gate, &s.up, &s.step, n as u32)?,
        ))
    };
    let m = match ffn {
        FfnPlan::Dense {
            gate,
            up,
            down,
            width,
        } => {
            let (wg, wu) = (w(gate)?, w(up)?);
            let mut out = if fused::can_fuse(g, &[wg, wu], c.hidden as u64) {
                // Decode: norm, gate, up and SwiGLU in one launch; prefill keeps them apart.
                let folded = fused::FoldedNorm {
                    weight: norm_w,
                    eps: c.rms_eps,
                };
                let mut prefill = lin("gate", gate, &s.xn, &s.gate, PLAIN)?.prefill;
                prefill.extend(lin("up", up, &s.xn, &s.up, PLAIN)?.prefill);
                vec![
                    prefill_only("rmsnorm", norm_op),
                    Launch {
                        name: "gate_up",
                        decode: vec![fused::glu(g, [wg, wu], folded, &s.x, &s.gate)?],
                        prefill,
                    },
                    Launch {
                        decode: Vec::new(),
                        ..swiglu(*width)?
                    },
                ]
            } else {
                vec![
                    Launch::op("rmsnorm", norm_op),
                    lin("gate", gate, &s.xn, &s.gate, PLAIN)?,
                    lin("up", up, &s.xn, &s.up, PLAIN)?,
                    swiglu(*width)?,
                ]
            };
            out.push(lin("down", down, &s.gate, &s.x, RESIDUAL)?);
            return Ok(out);
        }
        FfnPlan::Routed(m) => m,
    };
    let mut out = vec![Launch::op("rmsnorm", norm_op)];
    let ms = s
        .moe
        .as_ref()
        .ok_or_else(|| GpuError::Invalid("a routed layer in a model without experts".into()))?;
    let l = m;
    let r = Routed {
        ids: &ms.ids,
        weights: &ms.weights,
        step: &s.step,
        k: m.k,
    };
    let i = m.width;
    out.push(lin("router", &m.router, &s.xn, &ms.logits, PLAIN)?);
    out.push(Launch::op(
        "route",
        moe::route(g, &ms.logits, r, m.n_experts, m.routing)?,
    ));
    // Prefill groups the slots by expert so that each expert's weights are read once per tile of its
    // tokens; decode reads the chosen experts' rows directly.
    let grouped = Grouped {
        offsets: &ms.offsets,
        sorted: &ms.sorted,
        n_experts: m.n_experts,
    };
    out.push(Launch {
        name: "group",
        decode: Vec::new(),
        prefill: vec![moe::group(g, r, grouped)?],
    });
    // Llama 4 scales each slot's input by its weight; the others scale the outputs in the combine.
    let (x_in, per_slot, weighting) = match &ms.xs {
        Some(xs) => {
            out.push(Launch::op(
                "scale_input",
                moe::scale_input(g, &s.xn, xs, r, c.hidden)?,
            ));
            (xs, true, Weighting::Unit)
        }
        None => (&s.xn, false, Weighting::Weights),
    };
    let experts = |name, t: &str, rows, x, y, per_slot| -> Result<Launch, GpuError> {
        Ok(Launch {
            name,
            decode: moe::experts(g, w(t)?, rows, x, y, r, per_slot)?,
            prefill: moe::experts_grouped(g, w(t)?, rows, x, y, r, grouped, per_slot)?,
        })
    };
    let (gate, up) = (w(&l.gate)?, w(&l.up)?);
    if moe::can_fuse(gate, up) {
        // Decode: one fused gate+up+SwiGLU launch; prefill keeps the grouped mat-muls and SwiGLU.
        out.push(Launch {
            name: "gate_up",
            decode: moe::experts_glu(g, gate, up, i, x_in, &s.gate, r, per_slot)?,
            prefill: moe::experts_grouped(g, gate, i, x_in, &s.gate, r, grouped, per_slot)?,
        });
        out.push(Launch {
            name: "up",
            decode: Vec::new(),
            prefill: moe::experts_grouped(g, up, i, x_in, &s.up, r, grouped, per_slot)?,
        });
        out.push(Launch {
            decode: Vec::new(),
            ..swiglu(m.k * i)?
        });
    } else {
        out.push(experts("gate", &l.gate, i, x_in, &s.gate, per_slot)?);
        out.push(experts("up", &l.up, i, x_in, &s.up, per_slot)?);
        out.push(swiglu(m.k * i)?);
    }
    out.push(experts("down", &l.down, c.hidden, &s.gate, &ms.out, true)?);
    out.push(Launch::op(
        "combine",
        moe::combine(g, &ms.out, &s.x, r, c.hidden, weighting)?,
    ));
    if let Some(se) = &l.shared {
        out.push(lin("shared", &se.gate, &s.xn, &s.gate, PLAIN)?);
        out.push(lin("shared", &se.up, &s.xn, &s.up, PLAIN)?);
        out.push(swiglu(se.width)?);
        match &se.gate_inp {
            // Qwen2-MoE: x += sigmoid(xn · w_sg) · shared(xn), through the combine with one slot.
            Some(gi) => {
                out.push(lin("shared", &se.down, &s.gate, &ms.out, PLAIN)?);
                out.push(lin("shared", gi, &s.xn, &ms.shared_gate, PLAIN)?);
                let one = Routed {
                    weights: &ms.shared_gate,
                    k: 1,
                    ..r
                };
                out.push(Launch::op(
                    "combine",
                    moe::combine(g, &ms.out, &s.x, one, c.hidden, Weighting::Sigmoid)?,
                ));
            }
            None => out.push(lin("shared", &se.down, &s.gate, &s.x, RESIDUAL)?),
        }
    }
    Ok(out)
}
