// op: attention scores without workgroup barriers (CPU adapters, which run barriers as coroutines):
// s[t, h, i] = scale · q_(t,h) · k_(lo + i) for every key lo..=pos the query t at pos = pos0 + t sees (lo
// as in attention.wgsl), four keys per invocation so that each q load serves four keys.
// bindings: 0 q (storage, read, [T, n_heads, head_dim] f32 as pairs), 1 kc (storage, read, cache as u32),
//           2 s (storage, read_write, rows of max_pos + 1 per (t, h)), 3 params, 4 step.
// dispatch: (T * n_heads, ceil((pos0 + T) / 256), 1); workgroup = 64 threads. head_dim even.
// defines: KV_F16 (1: packed f16 cache, 0: f32 bit patterns).

#include "common/step.wgsl"

#include "common/attention_params.wgsl"
#include_for kc "common/kv_pair.wgsl"

@group(0) @binding(0) var<storage, read> q: array<vec2<f32>>;
@group(0) @binding(1) var<storage, read> kc: array<u32>;
@group(0) @binding(2) var<storage, read_write> s: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;
@group(0) @binding(4) var<uniform> step: Step;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let t = wg.x / p.n_heads;
    let h = wg.x - t * p.n_heads;
    let pos = step.pos0 + t;
    let lo = first_key(pos);
    let i0 = (wg.y * 64u + li) * 4u;
    let n = pos + 1u - lo;
    if (i0 >= n) { return; }
    let hd2 = p.head_dim / 2u;
    let words = select(p.head_dim, hd2, KV_F16 == 1u);
    let base = h / (p.n_heads / p.n_kv_heads) * p.max_pos;
    // Keys past the last one read whatever their slot holds; their scores are not written.
    let slot0 = (lo + i0) % p.max_pos;
    let kw = (base + vec4<u32>(slot0, wrap(slot0 + 1u), wrap(slot0 + 2u), wrap(slot0 + 3u))) * words;
    let qb = wg.x * hd2;
    var acc = vec4<f32>(0.0);
    for (var d2 = 0u; d2 < hd2; d2++) {
        let qv = q[qb + d2];
        acc += vec4<f32>(dot(qv, kv_pair_kc(kw.x, d2)), dot(qv, kv_pair_kc(kw.y, d2)),
                         dot(qv, kv_pair_kc(kw.z, d2)), dot(qv, kv_pair_kc(kw.w, d2)));
    }
    let sb = wg.x * (p.max_pos + 1u) + i0;
    for (var i = 0u; i < 4u; i++) {
        if (i0 + i < n) { s[sb + i] = acc[i] * p.scale; }
    }
}
