//! The oracle: plain f32 ops over dequantized weights (here), the MoE feed-forward (`moe`) and the whole
//! forward pass walking the layer plan (`model`). Small, slow and obviously right; every GPU and CPU
//! kernel and every model is checked against it. Semantics: `docs/models.md` §1.

mod model;
mod moe;

pub use model::CpuModel;
pub use moe::{moe_ffn, ExpertWeights};

use crate::model::RopeStyle;

/// `y[t, r] = Σ_k x[t, k] · w[r, k]` for `x: [t, k]`, `w: [rows, k]`.
pub fn matmul(x: &[f32], w: &[f32], k: usize) -> Vec<f32> {
    let rows = w.len() / k;
    let t = x.len() / k;
    let mut y = vec![0f32; t * rows];
    for i in 0..t {
        let xi = &x[i * k..(i + 1) * k];
        for r in 0..rows {
            let wr = &w[r * k..(r + 1) * k];
            y[i * rows + r] = xi.iter().zip(wr).map(|(a, b)| a * b).sum();
        }
    }
    y
}

/// `x` (rows of `k`, `k` a multiple of 32) rounded as 8-bit activations: per block of 32,
/// `d = max|x| / 127`, `x' = d · round(x / d)` (f32 `d`). The CPU backend multiplies quantized weights
/// with such activations (as llama.cpp does); the oracle applies the same rounding when asked to.
pub fn q8_round_trip(x: &[f32]) -> Vec<f32> {
    let mut y = x.to_vec();
    for blk in y.chunks_mut(32) {
        let amax = blk.iter().fold(0f32, |a, v| a.max(v.abs()));
        let d = amax / 127.0;
        let id = if d > 0.0 { 1.0 / d } else { 0.0 };
        blk.iter_mut().for_each(|v| *v = d * (*v * id).round());
    }
    y
}

/// RMSNorm of each row of `x` (`[t, n]`) with weight `w` (`[n]`).
pub fn rms_norm(x: &[f32], w: &[f32], eps: f32) -> Vec<f32> {
    let n = w.len();
    let mut y = vec![0f32; x.len()];
    for (xr, yr) in x.chunks_exact(n).zip(y.chunks_exact_mut(n)) {
        let ms = xr.iter().map(|v| v * v).sum::<f32>() / n as f32;
        let s = 1.0 / (ms + eps).sqrt();
        for i in 0..n {
            yr[i] = xr[i] * s * w[i];
        }
    }
    y
}

/// Applies RoPE in place to `x: [t, heads, head_dim]` at positions `pos0..pos0+t`, with angle tables
/// `cos`/`sin` of `rope_dim/2` entries per position (starting at position `pos0`).
pub fn rope(
    x: &mut [f32],
    heads: usize,
    head_dim: usize,
    rope_dim: usize,
    style: RopeStyle,
    cos: &[f32],
    sin: &[f32],
) {
    let half = rope_dim / 2;
    for (t, tok) in x.chunks_exact_mut(heads * head_dim).enumerate() {
        for h in tok.chunks_exact_mut(head_dim) {
            for i in 0..half {
                let (c, s) = (cos[t * half + i], sin[t * half + i]);
                let (a, b) = match style {
                    RopeStyle::Interleaved => (2 * i, 2 * i + 1),
                    RopeStyle::NeoX => (i, i + half),
                };
                let (x0, x1) = (h[a], h[b]);
                h[a] = x0 * c - x1 * s;
                h[b] = x0 * s + x1 * c;
            }
        }
    }
}

/// Causal GQA attention. `q: [t, nh, hd]` at positions `kv_len - t ..kv_len`; `k`, `v`: `[kv_len, nkv, hd]`.
/// Returns `[t, nh, hd]`.
pub fn attention(q: &[f32], k: &[f32], v: &[f32], nh: usize, nkv: usize, hd: usize) -> Vec<f32> {
    attention_chunked(q, k, v, nh, nkv, hd, None)
}

/// [`attention`] where, with `chunk = Some(c)`, the query at position `i` sees only keys `j` with
/// `floor(j / c) == floor(i / c)` (Llama 4 chunked local attention).
pub fn attention_chunked(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    nh: usize,
    nkv: usize,
    hd: usize,
    chunk: Option<usize>,
) -> Vec<f32> {
    let t = q.len() / (nh * hd);
    let kv_len = k.len() / (nkv * hd);
    let scale = 1.0 / (hd as f32).sqrt();
    let mut out = vec![0f32; q.len()];
    for i in 0..t {
        let pos = kv_len - t + i;
        for h in 0..nh {
            let g = h / (nh / nkv);
            let qv = &q[(i * nh + h) * hd..][..hd];
            let first = chunk.map_or(0, |c| pos / c * c);
            let scores: Vec<f32> = (first..=pos)
                .map(|j| {
                    qv.iter()
                        .zip(&k[(j * nkv + g) * hd..][..hd])
                        .map(|(a, b)| a * b)
                        .sum::<f32>()
                        * scale
                })
                .collect();
            let m = scores.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            let e: Vec<f32> = scores.iter().map(|s| (s - m).exp()).collect();
            let sum: f32 = e.iter().sum();
            let o = &mut out[(i * nh + h) * hd..][..hd];
            for (j, p) in (first..).zip(&e) {
                let vv = &v[(j * nkv + g) * hd..][..hd];
                for d in 0..hd {
                    o[d] += p / sum * vv[d];
                }
            }
        }
    }
    out
}

/// RMSNorm in place over rows of `n` elements of `x`, with `w` (`[n]`) or unit weights.
pub fn rms_norm_rows(x: &mut [f32], n: usize, w: Option<&[f32]>, eps: f32) {
    for row in x.chunks_exact_mut(n) {
        let ms = row.iter().map(|v| v * v).sum::<f32>() / n as f32;
        let s = 1.0 / (ms + eps).sqrt();
        for (i, v) in row.iter_mut().enumerate() {
            *v *= s * w.map_or(1.0, |w| w[i]);
        }
    }
}

/// Llama 4 temperature tuning factor of the query at position `pos`.
pub fn attn_temperature(t: &crate::model::AttnTemperature, pos: usize) -> f32 {
    1.0 + t.scale * libm::logf(((pos as f32 + 1.0) / t.floor_scale).floor() + 1.0)
}

/// `silu(gate) * up`, elementwise.
pub fn swiglu(gate: &[f32], up: &[f32]) -> Vec<f32> {
    gate.iter()
        .zip(up)
        .map(|(g, u)| g / (1.0 + (-g).exp()) * u)
        .collect()
}
