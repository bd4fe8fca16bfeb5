// op: expert mat-vec of a Mixture-of-Experts layer. For token t and routing slot j the expert is
// e = ids[t*K + j]; each of its R rows r gives y[(t*K + j)*R + r] = Σ_k x[xrow, k] · W[e*R + r, k], with
// xrow = t (X_PER_SLOT = 0: gate/up read the token's hidden state) or t*K + j (X_PER_SLOT = 1: down reads
// the slot's SwiGLU output, Llama 4 gate/up read the slot's weighted input). Only the selected experts'
// rows are read. W is the stacked [E*R, k] expert tensor (GGUF `ffn_*_exps`); a tensor split across
// bindings gets one launch per shard, and each launch skips rows outside its shard.
// bindings: 0 w (storage, read, raw bytes as u32), 1 x (storage, read, vec4), 2 y (storage, read_write),
//           3 ids (storage, read, u32 [T, K]), 4 params (uniform), 5 step (uniform).
// dispatch: (ceil(R / (2 * WG)), K, n_tokens); two rows per invocation share the activation loads.
// defines: WG (threads per workgroup), HDR, DQ4, ALIGNED (as matvec.wgsl), X_PER_SLOT (0/1).

#include "common/bytes.wgsl"
#include "common/dequant.wgsl"
#include "common/step.wgsl"

#include "common/expert_params.wgsl"
#include "common/expert_rows.wgsl"

@group(0) @binding(0) var<storage, read> w: array<u32>;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read> ids: array<u32>;
@group(0) @binding(4) var<uniform> p: Params;
@group(0) @binding(5) var<uniform> step: Step;

// Elements 4i..4i+3 of group g of both rows against `xv`, called with a literal `i` (as in matvec.wgsl).
fn part(e: ExpertRows, g: u32, i: u32, h0: vec4<f32>, h1: vec4<f32>, xv: vec4<f32>) -> vec2<f32> {
    return vec2<f32>(dot(DQ4(e.row0, g, i, h0), xv), dot(DQ4(e.row1, g, i, h1), xv));
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let r = gid.x * 2u;
    if (r >= p.rows_per_expert || gid.z >= step.n_tokens) { return; }
    let e = expert_rows(r, gid.y, gid.z);
    if (!e.in0 && !e.in1) { return; }
    var acc = vec2<f32>(0.0);
    for (var g = 0u; g < (p.k >> 5u); g++) {
        let h0 = HDR(e.row0, g);
        let h1 = HDR(e.row1, g);
        let xo = e.xb + g * 8u;
        acc += part(e, g, 0u, h0, h1, x[xo]) + part(e, g, 1u, h0, h1, x[xo + 1u])
            + part(e, g, 2u, h0, h1, x[xo + 2u]) + part(e, g, 3u, h0, h1, x[xo + 3u])
            + part(e, g, 4u, h0, h1, x[xo + 4u]) + part(e, g, 5u, h0, h1, x[xo + 5u])
            + part(e, g, 6u, h0, h1, x[xo + 6u]) + part(e, g, 7u, h0, h1, x[xo + 7u]);
    }
    let o = e.slot * p.rows_per_expert;
    if (e.in0) { y[o + r] = acc.x; }
    if (e.in1) { y[o + r + 1u] = acc.y; }
}
