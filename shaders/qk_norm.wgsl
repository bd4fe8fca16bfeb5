// op: per-row adjustments of queries and keys in place, between the q/k projections and attention.
//   mode 1 (weighted):   row = row / sqrt(mean(row²) + eps) * w[i]     (Qwen3 per head, OLMoE full width)
//   mode 2 (weightless): row = row / sqrt(mean(row²) + eps)            (Llama 4 L2 norm after RoPE)
//   temperature (q only, floor_scale > 0): q *= 1 + attn_scale * ln(1 + floor((pos + 1) / floor_scale))
// q is [T, q_rows, q_len] and k is [T, k_rows, k_len] (a row is a head, or the whole projection).
// bindings: 0 q (storage, read_write), 1 k (storage, read_write), 2 q_weight, 3 k_weight (storage, read,
//           f32 [q_len] / [k_len]; unread in mode 2), 4 params, 5 step.
// dispatch: (q_rows + k_rows, n_tokens, 1); workgroup = 64 threads, one row each.

#include "common/step.wgsl"
#include "common/workgroup_sum.wgsl"

struct Params {
    q_rows: u32,
    k_rows: u32,
    q_len: u32,
    k_len: u32,
    mode: u32, // 0: no norm, 1: weighted RMSNorm, 2: weightless
    eps: f32,
    floor_scale: f32, // 0: no temperature tuning
    attn_scale: f32,
}

@group(0) @binding(0) var<storage, read_write> q: array<f32>;
@group(0) @binding(1) var<storage, read_write> k: array<f32>;
@group(0) @binding(2) var<storage, read> qw: array<f32>;
@group(0) @binding(3) var<storage, read> kw: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;
@group(0) @binding(5) var<uniform> step: Step;

fn load(is_q: bool, i: u32) -> f32 {
    if (is_q) { return q[i]; }
    return k[i];
}

fn weight(is_q: bool, i: u32) -> f32 {
    if (p.mode != 1u) { return 1.0; }
    if (is_q) { return qw[i]; }
    return kw[i];
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let t = wg.y;
    let is_q = wg.x < p.q_rows;
    if (t >= step.n_tokens) { return; }
    var n = p.k_len;
    var base = (t * p.k_rows + wg.x - p.q_rows) * p.k_len;
    if (is_q) {
        n = p.q_len;
        base = (t * p.q_rows + wg.x) * p.q_len;
    }
    var scale = 1.0;
    if (p.mode != 0u) {
        var s = 0.0;
        for (var i = li; i < n; i += 64u) {
            let v = load(is_q, base + i);
            s += v * v;
        }
        scale = 1.0 / sqrt(workgroup_sum64(li, s) / f32(n) + p.eps);
    }
    if (is_q && p.floor_scale > 0.0) {
        let pos = f32(step.pos0 + t);
        scale *= 1.0 + p.attn_scale * log(floor((pos + 1.0) / p.floor_scale) + 1.0);
    }
    for (var i = li; i < n; i += 64u) {
        if (is_q) {
            q[base + i] = q[base + i] * scale * weight(true, i);
        } else {
            k[base + i] = k[base + i] * scale * weight(false, i);
        }
    }
}
