// op: rotary position embedding in place on q [T, n_heads, head_dim] and k [T, n_kv_heads, head_dim].
// cos/sin come from CPU-built tables [max_pos, rope_dim/2] (WGSL sin/cos are inaccurate far from 0).
// bindings: 0 q (storage, read_write), 1 k (storage, read_write), 2 cos_sin (storage, read: cos table then
//           sin table), 3 params, 4 step.
// dispatch: (ceil((n_heads + n_kv_heads) * rope_dim/2 / 64), n_tokens, 1); one thread per rotated pair.
// params.neox selects pairs (i, i + d/2) instead of (2i, 2i + 1).

#include "common/step.wgsl"

struct Params {
    n_heads: u32,
    n_kv_heads: u32,
    head_dim: u32,
    rope_dim: u32,
    neox: u32,
    table_len: u32, // entries per table (max_pos * rope_dim/2)
    pad0: u32,
    pad1: u32,
}

@group(0) @binding(0) var<storage, read_write> q: array<f32>;
@group(0) @binding(1) var<storage, read_write> k: array<f32>;
@group(0) @binding(2) var<storage, read> cs: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;
@group(0) @binding(4) var<uniform> step: Step;

fn rot(base: u32, i: u32, c: f32, s: f32, is_q: bool) {
    var a = base + 2u * i;
    var b = a + 1u;
    if (p.neox == 1u) { a = base + i; b = base + i + p.rope_dim / 2u; }
    if (is_q) {
        let x0 = q[a]; let x1 = q[b];
        q[a] = x0 * c - x1 * s; q[b] = x0 * s + x1 * c;
    } else {
        let x0 = k[a]; let x1 = k[b];
        k[a] = x0 * c - x1 * s; k[b] = x0 * s + x1 * c;
    }
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let half = p.rope_dim / 2u;
    let t = gid.y;
    let head = gid.x / half;
    let i = gid.x % half;
    if (t >= step.n_tokens || head >= p.n_heads + p.n_kv_heads) { return; }
    let ti = (step.pos0 + t) * half + i;
    let c = cs[ti];
    let s = cs[p.table_len + ti];
    if (head < p.n_heads) {
        rot((t * p.n_heads + head) * p.head_dim, i, c, s, true);
    } else {
        rot((t * p.n_kv_heads + head - p.n_heads) * p.head_dim, i, c, s, false);
    }
}
