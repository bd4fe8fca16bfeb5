// op: Mixture-of-Experts router top-k. For each token t, the K largest of its E router logits
// (ties: lower expert id), written in decreasing order to ids[t*K + j] with their weights:
//   mode 0: softmax over all E experts (f32) of the chosen ones, divided by their sum when renorm = 1
//           (Mixtral, Qwen-MoE, OLMoE: the weights scale the expert outputs);
//   mode 1: sigmoid(logit) of the chosen ones, never renormalized (Llama 4: they scale the expert input).
// One invocation per token (a workgroup of one): E ≤ 256 and K ≤ 8 make this a few thousand compares.
// E, K and the mode are compile-time constants: lavapipe re-specializes a shader whose loop bounds come
// from a uniform each time its bind group changes, which cost about 1 ms per layer here.
// bindings: 0 logits (storage, read, [T, E]), 1 ids (storage, read_write, u32 [T, K]),
//           2 weights (storage, read_write, f32 [T, K]), 3 step (uniform).
// dispatch: (n_tokens, 1, 1).
// defines: N_EXPERTS (E), K_USED (K), MODE (0/1), RENORM (0/1).

#include "common/step.wgsl"

@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read_write> ids: array<u32>;
@group(0) @binding(2) var<storage, read_write> weights: array<f32>;
@group(0) @binding(3) var<uniform> step: Step;

const NONE: u32 = 0xffffffffu;

@compute @workgroup_size(1)
fn main(@builtin(workgroup_id) wg: vec3<u32>) {
    let t = wg.x;
    if (t >= step.n_tokens) { return; }
    let base = t * N_EXPERTS;
    var m = logits[base];
    for (var e = 1u; e < N_EXPERTS; e++) { m = max(m, logits[base + e]); }
    var denom = 0.0;
    for (var e = 0u; e < N_EXPERTS; e++) { denom += exp(logits[base + e] - m); }
    // One bit per expert already chosen (E ≤ 256).
    var taken: array<u32, 8>;
    var total = 0.0;
    for (var j = 0u; j < K_USED; j++) {
        var best = NONE;
        var best_v = 0.0;
        for (var e = 0u; e < N_EXPERTS; e++) {
            if ((taken[e / 32u] & (1u << (e % 32u))) != 0u) { continue; }
            let v = logits[base + e];
            if (best == NONE || v > best_v) { best = e; best_v = v; }
        }
        taken[best / 32u] |= 1u << (best % 32u);
        var w: f32;
        if (MODE == 0u) { w = exp(best_v - m) / denom; } else { w = 1.0 / (1.0 + exp(-best_v)); }
        ids[t * K_USED + j] = best;
        weights[t * K_USED + j] = w;
        total += w;
    }
    if (MODE == 0u && RENORM == 1u) {
        for (var j = 0u; j < K_USED; j++) { weights[t * K_USED + j] = weights[t * K_USED + j] / total; }
    }
}
