// op: write this call's k and v ([T, n_kv_heads, head_dim] f32) into the layer's KV cache at positions
// pos0.. . Cache layout [n_kv_heads][max_pos][head_dim], position p in slot p % max_pos (a ring for
// chunked-attention layers); f16 caches hold two halves per u32.
// bindings: 0 k (storage, read), 1 v (storage, read), 2 kc (storage, read_write, u32), 3 vc (same),
//           4 params, 5 step.
// dispatch: (ceil(n_kv_heads * head_dim / 2 / 64), n_tokens, 1); one thread per pair of elements.
// defines: KV_F16 (1: packed f16, 0: f32 bit patterns).

#include "common/step.wgsl"

struct Params {
    n_kv_heads: u32,
    head_dim: u32,
    max_pos: u32,
    pad: u32,
}

@group(0) @binding(0) var<storage, read> k: array<f32>;
@group(0) @binding(1) var<storage, read> v: array<f32>;
@group(0) @binding(2) var<storage, read_write> kc: array<u32>;
@group(0) @binding(3) var<storage, read_write> vc: array<u32>;
@group(0) @binding(4) var<uniform> p: Params;
@group(0) @binding(5) var<uniform> step: Step;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let t = gid.y;
    let pair = gid.x;
    let row = p.n_kv_heads * p.head_dim;
    if (t >= step.n_tokens || pair * 2u >= row) { return; }
    let e = pair * 2u;
    let h = e / p.head_dim;
    let d = e % p.head_dim;
    let src = t * row + e;
    let dst = (h * p.max_pos + (step.pos0 + t) % p.max_pos) * p.head_dim + d; // element index
    if (KV_F16 == 1u) {
        kc[dst / 2u] = pack2x16float(vec2<f32>(k[src], k[src + 1u]));
        vc[dst / 2u] = pack2x16float(vec2<f32>(v[src], v[src + 1u]));
    } else {
        kc[dst] = bitcast<u32>(k[src]); kc[dst + 1u] = bitcast<u32>(k[src + 1u]);
        vc[dst] = bitcast<u32>(v[src]); vc[dst + 1u] = bitcast<u32>(v[src + 1u]);
    }
}
