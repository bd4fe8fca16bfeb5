// op: causal GQA attention over the KV cache, split along the key axis (flash-decoding style).
// Each workgroup owns one (query token, head) and one key range (split), walks it in tiles of 64 keys with
// an online softmax, and writes unnormalized partials (o[head_dim], max, sum) for attention_reduce.wgsl.
// Query t sits at position pos0 + t and sees keys 0..=pos0 + t.
// bindings: 0 q (storage, read, [T, n_heads, head_dim] f32), 1 kc, 2 vc (storage, read, cache as u32),
//           3 part (storage, read_write, [T * n_heads * n_splits][head_dim + 2]), 4 params, 5 step.
// dispatch: (n_tokens * n_heads, n_splits, 1); workgroup = 64 threads. head_dim ≤ 256.
// defines: KV_F16 (1: packed f16 cache, 0: f32 bit patterns).

#include "common/step.wgsl"

struct Params {
    n_heads: u32,
    n_kv_heads: u32,
    head_dim: u32,
    max_pos: u32,
    scale: f32,
    pad0: u32,
    pad1: u32,
    pad2: u32,
}

@group(0) @binding(0) var<storage, read> q: array<f32>;
@group(0) @binding(1) var<storage, read> kc: array<u32>;
@group(0) @binding(2) var<storage, read> vc: array<u32>;
@group(0) @binding(3) var<storage, read_write> part: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;
@group(0) @binding(5) var<uniform> step: Step;

var<workgroup> qs: array<f32, 256>;
var<workgroup> sc: array<f32, 64>;

fn cache_at(is_k: bool, e: u32) -> f32 {
    if (KV_F16 == 1u) {
        var word: u32;
        if (is_k) { word = kc[e / 2u]; } else { word = vc[e / 2u]; }
        let v = unpack2x16float(word);
        return select(v.x, v.y, (e & 1u) == 1u);
    }
    if (is_k) { return bitcast<f32>(kc[e]); }
    return bitcast<f32>(vc[e]);
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let hd = p.head_dim;
    let t = wg.x / p.n_heads;
    let h = wg.x % p.n_heads;
    let g = h / (p.n_heads / p.n_kv_heads);
    let split = wg.y;
    let kv_len = step.pos0 + t + 1u;
    let chunk = (kv_len + step.n_splits - 1u) / step.n_splits;
    let start = min(split * chunk, kv_len);
    let end = min(start + chunk, kv_len);
    let qb = (t * p.n_heads + h) * hd;
    for (var d = li; d < hd; d += 64u) { qs[d] = q[qb + d] * p.scale; }
    workgroupBarrier();

    let cache_base = g * p.max_pos * hd;
    var m = -1e30;
    var l = 0.0;
    var o: array<f32, 4>;
    for (var j0 = start; j0 < end; j0 += 64u) {
        let j = j0 + li;
        var s = -1e30;
        if (j < end) {
            s = 0.0;
            let kb = cache_base + j * hd;
            for (var d = 0u; d < hd; d++) { s += qs[d] * cache_at(true, kb + d); }
        }
        sc[li] = s;
        workgroupBarrier();
        var tmax = -1e30;
        let n = min(64u, end - j0);
        for (var i = 0u; i < n; i++) { tmax = max(tmax, sc[i]); }
        let m_new = max(m, tmax);
        let corr = exp(m - m_new);
        l *= corr;
        for (var c = 0u; c < 4u; c++) { o[c] *= corr; }
        for (var i = 0u; i < n; i++) {
            let pr = exp(sc[i] - m_new);
            l += pr;
            let vb = cache_base + (j0 + i) * hd;
            for (var c = 0u; c < 4u; c++) {
                let d = li + 64u * c;
                if (d < hd) { o[c] += pr * cache_at(false, vb + d); }
            }
        }
        m = m_new;
        workgroupBarrier();
    }
    let pb = ((t * p.n_heads + h) * step.n_splits + split) * (hd + 2u);
    for (var c = 0u; c < 4u; c++) {
        let d = li + 64u * c;
        if (d < hd) { part[pb + d] = o[c]; }
    }
    if (li == 0u) {
        part[pb + hd] = m;
        part[pb + hd + 1u] = l;
    }
}
