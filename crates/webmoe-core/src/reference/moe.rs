//! The routed feed-forward of a MoE layer in plain f32 (routing itself is `crate::moe::route`).

use super::{matmul, q8_round_trip, swiglu};
use crate::model::Routing;
use crate::moe::route;

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
    /// Round the expert inputs as 8-bit activations first ([`q8_round_trip`]).
    pub q8_inputs: bool,
}

/// The routed output of a MoE layer for `x` `[T, H]` (shared experts are added by the caller):
/// `Σ_j w_j · down_e(silu(gate_e x') · up_e x')` with `x' = x` and output weighting, or `x' = w_j · x`
/// and unit output weights for input-weighted routing.
pub fn moe_ffn(x: &[f32], hidden: usize, m: &ExpertWeights, routing: Routing) -> Vec<f32> {
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
            let round = |v: Vec<f32>| if m.q8_inputs { q8_round_trip(&v) } else { v };
            let xin = round(xin);
            let g = matmul(&xin, &rows(m.gate, i_w, h), h);
            let u = matmul(&xin, &rows(m.up, i_w, h), h);
            let y = matmul(&round(swiglu(&g, &u)), &rows(m.down, h, i_w), i_w);
            let c = if routing.weights_input() { 1.0 } else { w };
            out[t * h..(t + 1) * h]
                .iter_mut()
                .zip(&y)
                .for_each(|(o, v)| *o += c * v);
        }
    }
    out
}
