//! The whole forward pass in plain f32, walking the resolved layer plan ([`crate::plan`]).

use super::{
    attention_chunked, attn_temperature, matmul, moe_ffn, q8_round_trip, rms_norm, rms_norm_rows,
    rope, swiglu, ExpertWeights,
};
use crate::model::ModelDesc;
use crate::plan::{AttentionPlan, FfnPlan, LayerPlan};
use crate::rope::rope_tables;
use std::collections::{HashMap, HashSet};

/// A model with all weights dequantized to f32.
pub struct CpuModel {
    desc: ModelDesc,
    plan: Vec<LayerPlan>,
    weights: HashMap<String, Vec<f32>>,
    q8_inputs: HashSet<String>,
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
        let mut weights = HashMap::new();
        for (name, _) in desc.expected_tensors() {
            if let std::collections::hash_map::Entry::Vacant(e) = weights.entry(name) {
                let w = load(e.key())?;
                e.insert(w);
            }
        }
        Ok(CpuModel {
            plan: desc.layer_plans(),
            desc,
            weights,
            q8_inputs: HashSet::new(),
        })
    }

    /// Rounds the inputs of the matrices `names` as 8-bit activations ([`q8_round_trip`]) before
    /// multiplying: the numerics of llama.cpp's CPU path and of the CPU backend, for quantized weights.
    pub fn with_q8_inputs(mut self, names: impl IntoIterator<Item = String>) -> Self {
        self.q8_inputs = names.into_iter().collect();
        self
    }

    fn w(&self, name: &str) -> &[f32] {
        &self.weights[name]
    }

    /// `x · W(name)ᵀ` with `k` inputs per row, rounding `x` first when `name` takes 8-bit inputs.
    fn mm(&self, x: &[f32], name: &str, k: usize) -> Vec<f32> {
        if self.q8_inputs.contains(name) {
            matmul(&q8_round_trip(x), self.w(name), k)
        } else {
            matmul(x, self.w(name), k)
        }
    }

    /// Runs the whole sequence `ids` (positions 0..) and returns the logits of every position,
    /// `[ids.len(), vocab]`.
    pub fn forward(&self, ids: &[u32]) -> Vec<f32> {
        let c = &self.desc.config;
        let h = c.hidden;
        let embd = self.w(&self.desc.token_embd);
        let mut x: Vec<f32> = ids
            .iter()
            .flat_map(|&i| embd[i as usize * h..(i as usize + 1) * h].iter().copied())
            .collect();
        for l in &self.plan {
            let o = self.attention(&l.attention, &x, ids.len());
            x.iter_mut().zip(&o).for_each(|(x, o)| *x += o);
            let m = rms_norm(&x, self.w(&l.ffn_norm), c.rms_eps);
            let d = self.ffn(&l.ffn, &m);
            x.iter_mut().zip(&d).for_each(|(x, d)| *x += d);
        }
        let n = rms_norm(&x, self.w(&self.desc.output_norm), c.rms_eps);
        self.mm(&n, &self.desc.output, h)
    }

    fn attention(&self, p: &AttentionPlan, x: &[f32], t: usize) -> Vec<f32> {
        let c = &self.desc.config;
        let (h, nh, nkv, hd) = (c.hidden, c.n_heads, c.n_kv_heads, c.head_dim);
        let a = rms_norm(x, self.w(&p.norm), c.rms_eps);
        let mut q = self.mm(&a, &p.wq, h);
        let mut k = self.mm(&a, &p.wk, h);
        let mut v = self.mm(&a, &p.wv, h);
        if let Some([bq, bk, bv]) = &p.bias {
            for (y, b) in [(&mut q, bq), (&mut k, bk), (&mut v, bv)] {
                let b = self.w(b);
                for row in y.chunks_exact_mut(b.len()) {
                    row.iter_mut().zip(b).for_each(|(r, b)| *r += b);
                }
            }
        }
        if let Some(n) = &p.qk_norm {
            rms_norm_rows(&mut q, n.q_len, Some(self.w(&n.q)), c.rms_eps);
            rms_norm_rows(&mut k, n.k_len, Some(self.w(&n.k)), c.rms_eps);
        }
        if let Some(style) = p.rope {
            let (cos, sin) = rope_tables(c, 0, t);
            rope(&mut q, nh, hd, c.rope_dim, style, &cos, &sin);
            rope(&mut k, nkv, hd, c.rope_dim, style, &cos, &sin);
        }
        if p.l2_after_rope {
            rms_norm_rows(&mut q, hd, None, c.rms_eps);
            rms_norm_rows(&mut k, hd, None, c.rms_eps);
        }
        if let Some(temp) = &p.temperature {
            for (pos, row) in q.chunks_exact_mut(nh * hd).enumerate() {
                let f = attn_temperature(temp, pos);
                row.iter_mut().for_each(|v| *v *= f);
            }
        }
        let att = attention_chunked(&q, &k, &v, nh, nkv, hd, p.chunk);
        self.mm(&att, &p.wo, nh * hd)
    }

    fn ffn(&self, p: &FfnPlan, m: &[f32]) -> Vec<f32> {
        let h = self.desc.config.hidden;
        match p {
            FfnPlan::Dense {
                gate,
                up,
                down,
                width,
            } => {
                let g = self.mm(m, gate, h);
                let u = self.mm(m, up, h);
                self.mm(&swiglu(&g, &u), down, *width)
            }
            FfnPlan::Routed(r) => {
                let experts = ExpertWeights {
                    router: self.w(&r.router),
                    gate: self.w(&r.gate),
                    up: self.w(&r.up),
                    down: self.w(&r.down),
                    n_experts: r.n_experts,
                    k: r.k,
                    width: r.width,
                    q8_inputs: self.q8_inputs.contains(&r.gate),
                };
                let mut y = moe_ffn(m, h, &experts, r.routing);
                if let Some(sh) = &r.shared {
                    let g = self.mm(m, &sh.gate, h);
                    let u = self.mm(m, &sh.up, h);
                    let s = self.mm(&swiglu(&g, &u), &sh.down, sh.width);
                    let gates: Vec<f32> = match &sh.gate_inp {
                        Some(gi) => self
                            .mm(m, gi, h)
                            .iter()
                            .map(|g| 1.0 / (1.0 + (-g).exp()))
                            .collect(),
                        None => vec![1.0; m.len() / h],
                    };
                    for ((yr, sr), g) in y.chunks_mut(h).zip(s.chunks(h)).zip(gates) {
                        yr.iter_mut().zip(sr).for_each(|(y, s)| *y += g * s);
                    }
                }
                y
            }
        }
    }
}
