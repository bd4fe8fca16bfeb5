//! Mixture-of-Experts routing semantics (`spec/models.md` §2–3) and its CPU reference: which experts a
//! token goes to and with what weight.
//!
//! - Mixtral, Qwen2-MoE, Qwen3-MoE, OLMoE: softmax over all experts in f32, the top k, optionally
//!   renormalized over the k; the weights scale the experts' **outputs**.
//! - Llama 4: the top k of the raw logits, weight `sigmoid(logit)`, never renormalized; the weights
//!   scale the experts' **input**.
//!
//! Ties in the logits go to the lower expert id.

/// How router logits become expert weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routing {
    /// Softmax over all experts, top k, renormalized over the k when `renorm`; weights scale outputs.
    Softmax {
        /// Divide the k weights by their sum (`norm_topk_prob`).
        renorm: bool,
    },
    /// Top k of the raw logits, weight `sigmoid(logit)`, applied to the expert input (Llama 4).
    SigmoidInput,
}

impl Routing {
    /// Whether the weights scale the expert input (else the output).
    pub fn weights_input(self) -> bool {
        matches!(self, Routing::SigmoidInput)
    }
}

/// Routes each token: `logits` is `[tokens, n_experts]`; returns `(ids, weights)`, each `[tokens, k]`,
/// experts in order of decreasing logit (ties: lower id first).
///
/// # Panics
/// If `k` is 0 or greater than `n_experts`, or `logits` is not a multiple of `n_experts` long.
pub fn route(logits: &[f32], n_experts: usize, k: usize, routing: Routing) -> (Vec<u32>, Vec<f32>) {
    assert!(k >= 1 && k <= n_experts && logits.len().is_multiple_of(n_experts));
    let mut ids = Vec::new();
    let mut weights = Vec::new();
    for row in logits.chunks(n_experts) {
        let mut order: Vec<usize> = (0..n_experts).collect();
        // Stable sort: equal logits keep the lower id first.
        order.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
        let top = &order[..k];
        let w: Vec<f32> = match routing {
            Routing::Softmax { renorm } => {
                let m = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
                let denom: f32 = row.iter().map(|&v| (v - m).exp()).sum();
                let mut w: Vec<f32> = top.iter().map(|&e| (row[e] - m).exp() / denom).collect();
                if renorm {
                    let s: f32 = w.iter().sum();
                    w.iter_mut().for_each(|v| *v /= s);
                }
                w
            }
            Routing::SigmoidInput => top.iter().map(|&e| 1.0 / (1.0 + (-row[e]).exp())).collect(),
        };
        ids.extend(top.iter().map(|&e| e as u32));
        weights.extend(w);
    }
    (ids, weights)
}

/// The stacked expert weights of one MoE layer, dequantized (CPU reference).
pub struct ExpertWeights<'a> {
    /// Router `[E, H]`.
    pub router: &'a [f32],
    /// Gates `[E * I, H]`.
    pub gate: &'a [f32],
    /// Ups `[E * I, H]`.
    pub up: &'a [f32],
    /// Downs `[E * H, I]`.
    pub down: &'a [f32],
    /// Experts E.
    pub n_experts: usize,
    /// Experts per token k.
    pub k: usize,
    /// Expert width I.
    pub width: usize,
}

/// The routed output of a MoE layer for `x` `[T, H]` (shared experts are added by the caller):
/// `Σ_j w_j · down_e(silu(gate_e x') · up_e x')` with `x' = x` and output weighting, or `x' = w_j · x`
/// and unit output weights for input-weighted routing.
pub fn moe_ffn(x: &[f32], hidden: usize, m: &ExpertWeights, routing: Routing) -> Vec<f32> {
    use crate::reference::{matmul, swiglu};
    let (i_w, h) = (m.width, hidden);
    let logits = matmul(x, m.router, h);
    let (ids, weights) = route(&logits, m.n_experts, m.k, routing);
    let mut out = vec![0f32; x.len()];
    for (t, xt) in x.chunks(h).enumerate() {
        for j in 0..m.k {
            let (e, w) = (ids[t * m.k + j] as usize, weights[t * m.k + j]);
            let xin: Vec<f32> = if routing.weights_input() {
                xt.iter().map(|v| v * w).collect()
            } else {
                xt.to_vec()
            };
            let rows = |a: &[f32], n: usize, len: usize| a[e * n * len..(e + 1) * n * len].to_vec();
            let g = matmul(&xin, &rows(m.gate, i_w, h), h);
            let u = matmul(&xin, &rows(m.up, i_w, h), h);
            let y = matmul(&swiglu(&g, &u), &rows(m.down, h, i_w), i_w);
            let c = if routing.weights_input() { 1.0 } else { w };
            out[t * h..(t + 1) * h]
                .iter_mut()
                .zip(&y)
                .for_each(|(o, v)| *o += c * v);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_routing_picks_the_largest_and_breaks_ties_by_lower_id() {
        let logits = [0.5, 2.0, 2.0, -1.0];
        let (ids, w) = route(&logits, 4, 2, Routing::Softmax { renorm: false });
        assert_eq!(ids, [1, 2]);
        let denom: f32 = logits.iter().map(|v| (v - 2.0f32).exp()).sum();
        assert!((w[0] - 1.0 / denom).abs() < 1e-7 && w[0] == w[1]);
        let (_, w) = route(&logits, 4, 2, Routing::Softmax { renorm: true });
        assert!((w[0] - 0.5).abs() < 1e-7 && (w[1] - 0.5).abs() < 1e-7);
    }

    #[test]
    fn sigmoid_routing_weights_are_not_renormalized() {
        let (ids, w) = route(&[0.0, 3.0, 1.0], 3, 2, Routing::SigmoidInput);
        assert_eq!(ids, [1, 2]);
        assert!((w[0] - 1.0 / (1.0 + (-3.0f32).exp())).abs() < 1e-7);
        assert!((w[1] - 1.0 / (1.0 + (-1.0f32).exp())).abs() < 1e-7);
    }
}
