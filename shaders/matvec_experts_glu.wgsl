// op: fused gate+up expert mat-vec for decode (SwiGLU experts). For token t and slot j (expert
// e = ids[t*K + j]) and each of the expert's R rows r:
//   y[(t*K + j)*R + r] = silu(Σ_k x[xrow, k] · G[e*R + r, k]) · Σ_k x[xrow, k] · U[e*R + r, k],
// xrow as in matvec_experts.wgsl. G and U are the stacked gate and up tensors (same type, shape and
// shard split, so shard s of one holds the same rows as shard s of the other). Four rows (two of each)
// share every activation load, and no separate SwiGLU launch is needed.
// bindings: 0 w (gate shard), 1 x (storage, read, vec4), 2 y (storage, read_write), 3 ids, 4 params
//           (uniform, the gate shard's), 5 step (uniform), 6 w_up (the up shard).
// dispatch: (ceil(R / (2 * WG)), K, n_tokens).
// defines: WG (threads per workgroup), HDR, DQ4, ALIGNED (as matvec.wgsl), HDR_UP, DQ4_UP (the same
//          type's functions for w_up: `hdr_<type>_w_up`, `dq4_<type>_w_up`), X_PER_SLOT (0/1).

#include "common/bytes.wgsl"
#include "common/dequant.wgsl"
#include_for w_up "common/bytes.wgsl" "common/dequant.wgsl"
#include "common/step.wgsl"

#include "common/expert_params.wgsl"
#include "common/expert_rows.wgsl"

@group(0) @binding(0) var<storage, read> w: array<u32>;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read> ids: array<u32>;
@group(0) @binding(4) var<uniform> p: Params;
@group(0) @binding(5) var<uniform> step: Step;
@group(0) @binding(6) var<storage, read> w_up: array<u32>;

fn silu_times(g: f32, u: f32) -> f32 {
    return g / (1.0 + exp(-g)) * u;
}

// Elements 4i..4i+3 of group g of the four rows against `xv`, called with a literal `i` (as in
// matvec.wgsl).
fn part(e: ExpertRows, g: u32, i: u32, hg0: vec4<f32>, hg1: vec4<f32>, hu0: vec4<f32>, hu1: vec4<f32>,
        xv: vec4<f32>) -> vec4<f32> {
    return vec4<f32>(dot(DQ4(e.row0, g, i, hg0), xv), dot(DQ4(e.row1, g, i, hg1), xv),
                     dot(DQ4_UP(e.row0, g, i, hu0), xv), dot(DQ4_UP(e.row1, g, i, hu1), xv));
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let r = gid.x * 2u;
    if (r >= p.rows_per_expert || gid.z >= step.n_tokens) { return; }
    let e = expert_rows(r, gid.y, gid.z);
    if (!e.in0 && !e.in1) { return; }
    var acc = vec4<f32>(0.0); // gate row r, gate row r + 1, up row r, up row r + 1
    for (var g = 0u; g < (p.k >> 5u); g++) {
        let hg0 = HDR(e.row0, g);
        let hg1 = HDR(e.row1, g);
        let hu0 = HDR_UP(e.row0, g);
        let hu1 = HDR_UP(e.row1, g);
        let xo = e.xb + g * 8u;
        acc += part(e, g, 0u, hg0, hg1, hu0, hu1, x[xo]) + part(e, g, 1u, hg0, hg1, hu0, hu1, x[xo + 1u])
            + part(e, g, 2u, hg0, hg1, hu0, hu1, x[xo + 2u]) + part(e, g, 3u, hg0, hg1, hu0, hu1, x[xo + 3u])
            + part(e, g, 4u, hg0, hg1, hu0, hu1, x[xo + 4u]) + part(e, g, 5u, hg0, hg1, hu0, hu1, x[xo + 5u])
            + part(e, g, 6u, hg0, hg1, hu0, hu1, x[xo + 6u]) + part(e, g, 7u, hg0, hg1, hu0, hu1, x[xo + 7u]);
    }
    let o = e.slot * p.rows_per_expert;
    if (e.in0) { y[o + r] = silu_times(acc.x, acc.z); }
    if (e.in1) { y[o + r + 1u] = silu_times(acc.y, acc.w); }
}
