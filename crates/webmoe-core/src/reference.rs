//! CPU reference forward pass: plain f32 over dequantized weights. Small, slow and obviously right; the
//! oracle for every GPU kernel and for whole models. Semantics: `spec/models.md` §1.

use crate::model::{rope_tables, ModelDesc, QkNorm, RopeStyle};

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
    1.0 + t.scale * (((pos as f32 + 1.0) / t.floor_scale).floor() + 1.0).ln()
}

/// `silu(gate) * up`, elementwise.
pub fn swiglu(gate: &[f32], up: &[f32]) -> Vec<f32> {
    gate.iter()
        .zip(up)
        .map(|(g, u)| g / (1.0 + (-g).exp()) * u)
        .collect()
}

/// A model with all weights dequantized to f32.
pub struct CpuModel {
    desc: ModelDesc,
    weights: std::collections::HashMap<String, Vec<f32>>,
}

impl CpuModel {
    /// Loads every tensor the model reads through `load` (name → dequantized f32 values).
    ///
    /// # Errors
    /// Whatever `load` returns.
    pub fn new<E>(
        desc: ModelDesc,
        mut load: impl FnMut(&str) -> Result<Vec<f32>, E>,
    ) -> Result<Self, E> {
        let mut weights = std::collections::HashMap::new();
        for (name, _) in desc.expected_tensors() {
            if let std::collections::hash_map::Entry::Vacant(e) = weights.entry(name) {
                let w = load(e.key())?;
                e.insert(w);
            }
        }
        Ok(CpuModel { desc, weights })
    }

    fn w(&self, name: &str) -> &[f32] {
        &self.weights[name]
    }

    /// Runs the whole sequence `ids` (positions 0..) and returns the logits of every position,
    /// `[ids.len(), vocab]`.
    pub fn forward(&self, ids: &[u32]) -> Vec<f32> {
        let c = &self.desc.config;
        let (h, t) = (c.hidden, ids.len());
        let (nh, nkv, hd) = (c.n_heads, c.n_kv_heads, c.head_dim);
        let embd = self.w(&self.desc.token_embd);
        let mut x: Vec<f32> = ids
            .iter()
            .flat_map(|&i| embd[i as usize * h..(i as usize + 1) * h].iter().copied())
            .collect();
        let (cos, sin) = rope_tables(c, 0, t);
        for l in &self.desc.layers {
            let a = rms_norm(&x, self.w(&l.attn_norm), c.rms_eps);
            let mut q = matmul(&a, self.w(&l.wq), h);
            let mut k = matmul(&a, self.w(&l.wk), h);
            let mut v = matmul(&a, self.w(&l.wv), h);
            if let Some([bq, bk, bv]) = &l.bias {
                for (y, b) in [(&mut q, bq), (&mut k, bk), (&mut v, bv)] {
                    let b = self.w(b);
                    for row in y.chunks_exact_mut(b.len()) {
                        row.iter_mut().zip(b).for_each(|(r, b)| *r += b);
                    }
                }
            }
            if let Some([qn, kn]) = &l.qk_norm {
                let (nq, nk) = match c.qk_norm {
                    QkNorm::Full => (nh * hd, nkv * hd),
                    _ => (hd, hd),
                };
                rms_norm_rows(&mut q, nq, Some(self.w(qn)), c.rms_eps);
                rms_norm_rows(&mut k, nk, Some(self.w(kn)), c.rms_eps);
            }
            if l.rope {
                rope(&mut q, nh, hd, c.rope_dim, c.rope_style, &cos, &sin);
                rope(&mut k, nkv, hd, c.rope_dim, c.rope_style, &cos, &sin);
                if c.qk_norm == QkNorm::L2AfterRope {
                    rms_norm_rows(&mut q, hd, None, c.rms_eps);
                    rms_norm_rows(&mut k, hd, None, c.rms_eps);
                }
            } else if let Some(temp) = &c.temperature {
                for (p, row) in q.chunks_exact_mut(nh * hd).enumerate() {
                    let f = attn_temperature(temp, p);
                    row.iter_mut().for_each(|v| *v *= f);
                }
            }
            let chunk = if l.rope { c.attn_chunk } else { None };
            let att = attention_chunked(&q, &k, &v, nh, nkv, hd, chunk);
            let o = matmul(&att, self.w(&l.wo), nh * hd);
            x.iter_mut().zip(&o).for_each(|(x, o)| *x += o);
            let m = rms_norm(&x, self.w(&l.ffn_norm), c.rms_eps);
            let d = match (&l.router, &c.moe) {
                (Some(router), Some(moe)) => {
                    let experts = crate::moe::ExpertWeights {
                        router: self.w(router),
                        gate: self.w(&l.gate),
                        up: self.w(&l.up),
                        down: self.w(&l.down),
                        n_experts: moe.n_experts,
                        k: moe.n_used,
                        width: moe.expert_ffn_dim,
                    };
                    let mut y = crate::moe::moe_ffn(&m, h, &experts, moe.routing);
                    if let Some(sh) = &l.shared {
                        let g = matmul(&m, self.w(&sh.gate), h);
                        let u = matmul(&m, self.w(&sh.up), h);
                        let s = matmul(&swiglu(&g, &u), self.w(&sh.down), sh.width);
                        let gates: Vec<f32> = match &sh.gate_inp {
                            Some(gi) => matmul(&m, self.w(gi), h)
                                .iter()
                                .map(|g| 1.0 / (1.0 + (-g).exp()))
                                .collect(),
                            None => vec![1.0; t],
                        };
                        for ((yr, sr), g) in y.chunks_mut(h).zip(s.chunks(h)).zip(gates) {
                            yr.iter_mut().zip(sr).for_each(|(y, s)| *y += g * s);
                        }
                    }
                    y
                }
                _ => {
                    let g = matmul(&m, self.w(&l.gate), h);
                    let u = matmul(&m, self.w(&l.up), h);
                    matmul(&swiglu(&g, &u), self.w(&l.down), c.ffn_dim)
                }
            };
            x.iter_mut().zip(&d).for_each(|(x, d)| *x += d);
        }
        let n = rms_norm(&x, self.w(&self.desc.output_norm), c.rms_eps);
        matmul(&n, self.w(&self.desc.output), h)
    }
}
