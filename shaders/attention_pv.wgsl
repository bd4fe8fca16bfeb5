// op: attention output from the softmax weights of attention_softmax.wgsl:
// out[t, h · head_dim + d] = Σ_i s[t, h, i] · v_(lo + i)[d] · s[t, h, max_pos]. One thread per output
// pair (d even), no workgroup barriers.
// bindings: 0 s (storage, read), 1 vc (storage, read, cache as u32), 2 out (storage, read_write,
//           [T, n_heads · head_dim / 2] pairs), 3 params (attention.wgsl's), 4 step.
// dispatch: (ceil(n_heads · head_dim / 2 / 64), T, 1).
// defines: KV_F16 (1: packed f16 cache, 0: f32 bit patterns).

#include "common/step.wgsl"

#include "common/attention_params.wgsl"
#include_for vc "common/kv_pair.wgsl"

@group(0) @binding(0) var<storage, read> s: array<f32>;
@group(0) @binding(1) var<storage, read> vc: array<u32>;
@group(0) @binding(2) var<storage, read_write> out: array<vec2<f32>>;
@group(0) @binding(3) var<uniform> p: Params;
@group(0) @binding(4) var<uniform> step: Step;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let hd2 = p.head_dim / 2u;
    let e = gid.x;
    let t = gid.y;
    if (e >= p.n_heads * hd2) { return; }
    let h = e / hd2;
    let d2 = e - h * hd2;
    let pos = step.pos0 + t;
    let lo = first_key(pos);
    let n = pos + 1u - lo;
    let words = select(p.head_dim, hd2, KV_F16 == 1u);
    let base = h / (p.n_heads / p.n_kv_heads) * p.max_pos;
    let sb = (t * p.n_heads + h) * (p.max_pos + 1u);
    var slot = lo % p.max_pos;
    var o = vec2<f32>(0.0);
    for (var i = 0u; i < n; i++) {
        o += s[sb + i] * kv_pair_vc((base + slot) * words, d2);
        slot += 1u;
        slot = select(slot, 0u, slot == p.max_pos);
    }
    out[t * p.n_heads * hd2 + e] = o * s[sb + p.max_pos];
}
