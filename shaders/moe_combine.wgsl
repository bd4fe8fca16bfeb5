// op: the two ends of a Mixture-of-Experts layer, on rows of n = hidden elements.
//   scale_input: xs[(t*K + j)*n + i] = weights[t*K + j] * x[t*n + i]    (Llama 4: weights scale the input)
//   combine:     y[t*n + i] += Σ_j c_j * o[(t*K + j)*n + i], c_j = weights[t*K + j] when use_weights = 1,
//                sigmoid(weights[t*K + j]) when use_weights = 2 (Qwen2-MoE shared expert gate), else 1
//                (the input was already weighted)                       (residual add of the routed output)
// bindings: 0 src (storage, read: x or o), 1 dst (storage, read_write: xs or y), 2 weights (storage, read),
//           3 params (uniform: n, K, use_weights), 4 step (uniform).
// dispatch: scale_input (ceil(n / 64), K, n_tokens); combine (ceil(n / 64), n_tokens, 1).

#include "common/step.wgsl"

struct Params {
    n: u32,
    k: u32,
    use_weights: u32,
    pad: u32,
}

@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;
@group(0) @binding(2) var<storage, read> weights: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;
@group(0) @binding(4) var<uniform> step: Step;

@compute @workgroup_size(64)
fn scale_input(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    let slot = gid.z * p.k + gid.y;
    if (i >= p.n || gid.z >= step.n_tokens) { return; }
    dst[slot * p.n + i] = weights[slot] * src[gid.z * p.n + i];
}

@compute @workgroup_size(64)
fn combine(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    let t = gid.y;
    if (i >= p.n || t >= step.n_tokens) { return; }
    var s = 0.0;
    for (var j = 0u; j < p.k; j++) {
        let slot = t * p.k + j;
        var c = 1.0;
        if (p.use_weights == 1u) { c = weights[slot]; }
        if (p.use_weights == 2u) { c = 1.0 / (1.0 + exp(-weights[slot])); }
        s += c * src[slot * p.n + i];
    }
    dst[t * p.n + i] = dst[t * p.n + i] + s;
}
