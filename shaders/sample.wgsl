// op: choose the next token on the GPU so that a decode step reads back only a u32.
// Chain (llama.cpp's default order): repetition, frequency and presence penalties over `recent` → the
// token mask of structured output (masked logits become MASKED, below every real one) → greedy argmax if
// temperature ≤ 0,
// else thresholds for top-k, top-p and min-p on the penalized logits (found by bisection on the logit
// value: no sort), then a seeded draw from softmax(l / temperature) over the kept tokens (index order).
// bindings: 0 logits (storage, read), 1 work (storage, read_write, scratch [vocab]), 2 recent (storage,
//           read, (id, count) u32 pairs, deduplicated), 3 out (storage, read_write, u32 [1]), 4 params
//           (uniform), 5 mask (storage, read, u32 [ceil(vocab / 32)]: bit i % 32 of word i / 32 allows i;
//           read only when has_mask).
// A NaN or infinite logit anywhere makes the result 0xffffffff (webmoe_core::sampling::NON_FINITE), never
// a token; finiteness is tested on the bits, since WGSL compilers may assume floats are finite.
// dispatch: (1, 1, 1); workgroup = 256 threads.

struct Params {
    vocab: u32,
    n_recent: u32,
    top_k: u32,
    counter: u32,     // draw index, mixed into the random stream
    temperature: f32,
    top_p: f32,
    min_p: f32,
    penalty: f32,
    seed_lo: u32,
    seed_hi: u32,
    has_mask: u32,
    presence: f32,
    frequency: f32,
    pad0: u32,
    pad1: u32,
    pad2: u32,
}

const MASKED: f32 = -3.0e38;

@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read_write> work: array<f32>;
@group(0) @binding(2) var<storage, read> recent: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<u32>;
@group(0) @binding(4) var<uniform> p: Params;
@group(0) @binding(5) var<storage, read> mask: array<u32>;

const WG: u32 = 256u;
var<workgroup> red_f: array<f32, 256>;
var<workgroup> red_u: array<u32, 256>;
var<workgroup> any_bad_wg: u32;

fn reduce_sum(li: u32, v: f32) -> f32 {
    red_f[li] = v;
    workgroupBarrier();
    for (var off = WG / 2u; off > 0u; off >>= 1u) {
        if (li < off) { red_f[li] += red_f[li + off]; }
        workgroupBarrier();
    }
    let r = red_f[0];
    workgroupBarrier();
    return r;
}

fn reduce_min(li: u32, v: f32) -> f32 {
    red_f[li] = v;
    workgroupBarrier();
    for (var off = WG / 2u; off > 0u; off >>= 1u) {
        if (li < off) { red_f[li] = min(red_f[li], red_f[li + off]); }
        workgroupBarrier();
    }
    let r = red_f[0];
    workgroupBarrier();
    return r;
}

fn pcg(v: u32) -> u32 {
    let s = v * 747796405u + 2891336453u;
    let w = ((s >> ((s >> 28u) + 4u)) ^ s) * 277803737u;
    return (w >> 22u) ^ w;
}

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) li: u32) {
    let n = p.vocab;
    for (var i = li; i < n; i += WG) { work[i] = logits[i]; }
    storageBarrier();
    workgroupBarrier();
    for (var i = li; i < p.n_recent; i += WG) {
        let id = recent[2u * i];
        if (id < n) {
            let v = work[id];
            let r = select(v * p.penalty, v / p.penalty, v > 0.0);
            work[id] = r - (f32(recent[2u * i + 1u]) * p.frequency + p.presence);
        }
    }
    storageBarrier();
    workgroupBarrier();
    if (p.has_mask != 0u) {
        for (var i = li; i < n; i += WG) {
            if (((mask[i / 32u] >> (i % 32u)) & 1u) == 0u) { work[i] = MASKED; }
        }
    }
    storageBarrier();
    workgroupBarrier();

    // Max and argmax (lowest id among equal maxima).
    var best = -3.4e38;
    var best_i = 0u;
    var lo_v = 3.4e38;
    var bad = 0u;
    for (var i = li; i < n; i += WG) {
        let v = work[i];
        if (v > best) { best = v; best_i = i; }
        if (v > MASKED) { lo_v = min(lo_v, v); }
        bad |= select(0u, 1u, (bitcast<u32>(v) & 0x7f800000u) == 0x7f800000u);
    }
    red_u[li] = bad;
    workgroupBarrier();
    for (var off = WG / 2u; off > 0u; off >>= 1u) {
        if (li < off) { red_u[li] = max(red_u[li], red_u[li + off]); }
        workgroupBarrier();
    }
    if (li == 0u) { any_bad_wg = red_u[0]; }
    // A uniform copy: every invocation leaves together, so later barriers stay in uniform control flow.
    let any_bad = workgroupUniformLoad(&any_bad_wg);
    if (any_bad != 0u) {
        if (li == 0u) { out[0] = 0xffffffffu; }
        return;
    }
    red_f[li] = best;
    red_u[li] = best_i;
    workgroupBarrier();
    for (var off = WG / 2u; off > 0u; off >>= 1u) {
        if (li < off) {
            let ov = red_f[li + off];
            let oi = red_u[li + off];
            if (ov > red_f[li] || (ov == red_f[li] && oi < red_u[li])) { red_f[li] = ov; red_u[li] = oi; }
        }
        workgroupBarrier();
    }
    let mx = red_f[0];
    let argmax = red_u[0];
    workgroupBarrier();
    if (p.temperature <= 0.0) {
        if (li == 0u) { out[0] = argmax; }
        return;
    }
    let mn = reduce_min(li, lo_v);

    // top-k: largest τ with count(l ≥ τ) ≥ k.
    var tau = mn;
    if (p.top_k > 0u && p.top_k < n) {
        var lo = mn;
        var hi = mx;
        for (var it = 0u; it < 40u; it++) {
            let mid = 0.5 * (lo + hi);
            var c = 0.0;
            for (var i = li; i < n; i += WG) { c += select(0.0, 1.0, work[i] >= mid); }
            if (reduce_sum(li, c) >= f32(p.top_k)) { lo = mid; } else { hi = mid; }
        }
        tau = lo;
    }
    // top-p over the top-k survivors: largest τ with Σ_{l ≥ τ} e^(l−max) ≥ top_p · Z.
    if (p.top_p < 1.0) {
        var z = 0.0;
        for (var i = li; i < n; i += WG) { let v = work[i]; if (v >= tau) { z += exp(v - mx); } }
        let goal = p.top_p * reduce_sum(li, z);
        var lo = tau;
        var hi = mx;
        for (var it = 0u; it < 40u; it++) {
            let mid = 0.5 * (lo + hi);
            var s = 0.0;
            for (var i = li; i < n; i += WG) { let v = work[i]; if (v >= mid) { s += exp(v - mx); } }
            if (reduce_sum(li, s) >= goal) { lo = mid; } else { hi = mid; }
        }
        tau = max(tau, lo);
    }
    // min-p: p_i / p_max ≥ min_p  ⇔  l ≥ max + ln(min_p).
    if (p.min_p > 0.0) { tau = max(tau, mx + log(p.min_p)); }
    tau = min(tau, mx); // the most likely token always survives

    // Draw: each thread owns a contiguous index range; prefix sums over threads find the owner.
    let per = (n + WG - 1u) / WG;
    let b0 = li * per;
    let b1 = min(b0 + per, n);
    var local = 0.0;
    for (var i = b0; i < b1; i++) { let v = work[i]; if (v >= tau) { local += exp((v - mx) / p.temperature); } }
    red_f[li] = local;
    workgroupBarrier();
    if (li == 0u) {
        var acc = 0.0;
        for (var i = 0u; i < WG; i++) { let v = red_f[i]; red_f[i] = acc; acc += v; }
        let r = pcg(pcg(p.seed_lo ^ pcg(p.seed_hi)) ^ p.counter);
        red_u[0] = bitcast<u32>(f32(r >> 8u) * (1.0 / 16777216.0) * acc);
        out[0] = argmax;
    }
    workgroupBarrier();
    let u = bitcast<f32>(red_u[0]);
    let before = red_f[li];
    if (u >= before && u < before + local) {
        var acc = before;
        var pick = argmax;
        for (var i = b0; i < b1; i++) {
            let v = work[i];
            if (v >= tau) {
                pick = i;
                acc += exp((v - mx) / p.temperature);
                if (acc > u) { break; }
            }
        }
        out[0] = pick;
    }
}
