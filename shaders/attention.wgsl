// op: causal GQA attention over the KV cache, split along the key axis (flash-decoding style).
// Each workgroup owns one (query token, head) and one key range (split), walks it in tiles of 64 keys with
// an online softmax, and writes unnormalized partials (o[head_dim], max, sum) for attention_reduce.wgsl.
// Query t sits at position pos0 + t and sees keys 0..=pos0 + t, or with params.chunk = C > 0 only keys of
// its own chunk, C·floor(pos / C)..=pos. Key j lives in cache slot j % max_pos (a ring when the cache is
// shorter than the context: chunked layers keep only what a chunk can see).
// bindings: 0 q (storage, read, [T, n_heads, head_dim] f32), 1 kc, 2 vc (storage, read, cache as u32),
//           3 part (storage, read_write, [T * n_heads * n_splits][head_dim + 2]), 4 params, 5 step.
// dispatch: (n_tokens * n_heads, n_splits, 1); workgroup = 64 threads. head_dim ≤ 256.
// defines: KV_F16 (1: packed f16 cache, 0: f32 bit patterns).

#include "common/step.wgsl"

#include "common/attention_params.wgsl"
#include_for kc "common/kv_pair.wgsl"
#include_for vc "common/kv_pair.wgsl"

@group(0) @binding(0) var<storage, read> q: array<f32>;
@group(0) @binding(1) var<storage, read> kc: array<u32>;
@group(0) @binding(2) var<storage, read> vc: array<u32>;
@group(0) @binding(3) var<storage, read_write> part: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;
@group(0) @binding(5) var<uniform> step: Step;

var<workgroup> qs: array<f32, 256>;
var<workgroup> sc: array<f32, 64>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let hd = p.head_dim;
    let t = wg.x / p.n_heads;
    let h = wg.x % p.n_heads;
    let g = h / (p.n_heads / p.n_kv_heads);
    let split = wg.y;
    let pos = step.pos0 + t;
    let kv_len = pos + 1u;
    // Chunked local attention: only keys of the query's own chunk (and the cache is a ring of max_pos).
    let lo = first_key(pos);
    let span = kv_len - lo;
    let per_split = (span + step.n_splits - 1u) / step.n_splits;
    let start = lo + min(split * per_split, span);
    let end = min(start + per_split, kv_len);
    let qb = (t * p.n_heads + h) * hd;
    for (var d = li; d < hd; d += 64u) { qs[d] = q[qb + d] * p.scale; }
    workgroupBarrier();

    let cache_base = g * p.max_pos * hd;
    var m = -1e30;
    var l = 0.0;
    // Thread li accumulates output dimensions 2·li and 2·li + 1 (and +128 for head_dim > 128).
    var o0 = vec2<f32>(0.0);
    var o1 = vec2<f32>(0.0);
    for (var j0 = start; j0 < end; j0 += 64u) {
        let j = j0 + li;
        // Cache slot of key j0 + i: a tile spans at most max_pos keys (the ring holds all a query can
        // see), so it wraps at most once; one division per tile (SwiftShader divides lane by lane).
        let slot0 = j0 % p.max_pos;
        var s = -1e30;
        if (j < end) {
            var acc = 0.0;
            let kb = cache_base + wrap(slot0 + li) * hd;
            for (var d = 0u; d < hd; d += 2u) {
                acc += dot(vec2<f32>(qs[d], qs[d + 1u]), kv_pair_kc(0u, (kb + d) >> 1u));
            }
            s = acc;
        }
        sc[li] = s;
        workgroupBarrier();
        let n = min(64u, end - j0);
        var tmax = -1e30;
        for (var i = 0u; i < n; i++) { tmax = max(tmax, sc[i]); }
        let m_new = max(m, tmax);
        workgroupBarrier();
        sc[li] = select(0.0, exp(s - m_new), j < end);
        workgroupBarrier();
        let corr = exp(m - m_new);
        l *= corr;
        o0 *= corr;
        o1 *= corr;
        let d0 = 2u * li;
        for (var i = 0u; i < n; i++) {
            let pr = sc[i];
            l += pr;
            let vb = cache_base + wrap(slot0 + i) * hd;
            if (d0 < hd) { o0 += pr * kv_pair_vc(0u, (vb + d0) >> 1u); }
            if (d0 + 128u < hd) { o1 += pr * kv_pair_vc(0u, (vb + d0 + 128u) >> 1u); }
        }
        m = m_new;
        workgroupBarrier();
    }
    let pb = ((t * p.n_heads + h) * step.n_splits + split) * (hd + 2u);
    let d0 = 2u * li;
    if (d0 < hd) { part[pb + d0] = o0.x; part[pb + d0 + 1u] = o0.y; }
    if (d0 + 128u < hd) { part[pb + d0 + 128u] = o1.x; part[pb + d0 + 129u] = o1.y; }
    if (li == 0u) {
        part[pb + hd] = m;
        part[pb + hd + 1u] = l;
    }
}
