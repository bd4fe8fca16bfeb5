//! RoPE angle tables, computed on the CPU in f64 for every executor (WGSL `sin`/`cos` are only
//! accurate near 0).

use crate::model::ModelConfig;

/// RoPE angle tables for positions `0..n_pos`: `(cos, sin)`, each `n_pos * rope_dim/2` f32, pair `i` of
/// position `p` at `p * rope_dim/2 + i`. Frequencies follow HF: `inv_freq` in f32, θ = `p * inv_freq`
/// in f32 (divided by the llama3 divisor when present), cos/sin evaluated in f64 and rounded. The math
/// functions are `libm`'s, so the tables are bit-identical on every target (native and wasm32).
pub fn rope_tables(c: &ModelConfig, start: usize, n_pos: usize) -> (Vec<f32>, Vec<f32>) {
    let half = c.rope_dim / 2;
    let inv: Vec<f32> = (0..half)
        .map(|i| {
            let base = 1.0f32 / libm::powf(c.rope_base, (2 * i) as f32 / c.rope_dim as f32);
            match &c.rope_freq_divisors {
                Some(d) => base / d[i],
                None => base,
            }
        })
        .collect();
    let mut cos = Vec::with_capacity(n_pos * half);
    let mut sin = Vec::with_capacity(n_pos * half);
    for p in start..start + n_pos {
        for &f in &inv {
            let theta = (p as f32 * f) as f64;
            cos.push(libm::cos(theta) as f32);
            sin.push(libm::sin(theta) as f32);
        }
    }
    (cos, sin)
}
