// op: the dense SwiGLU feed-forward input of one decode token in one launch, with the RMSNorm before
// it folded in: xn = rmsnorm(x[t]) · norm_w, then y[t, r] = silu(Σ_k xn[k] · G[r, k]) · Σ_k xn[k] · U[r, k].
// Replaces the norm, gate, up and SwiGLU launches; each input load serves both rows.
// bindings: 0 w (G, raw bytes as u32), 1 x (storage, read, vec4: the residual stream), 2 y (storage,
//           read_write), 3 params (uniform), 4 norm_w (storage, read, vec4), 5 w_up (U, raw bytes).
// dispatch: (ceil(rows / (WG / LANES)), n_tokens, 1); workgroup = WG = 64 threads.
// defines: HDR, DQ4, ALIGNED (G's type), HDR_w_up, DQ4_w_up, ALIGNED_w_up (U's), WG (64u), LANES,
//          SUBGROUPS, ENABLE_SUBGROUPS (0u/1u: the `enable` line browsers need).

#if ENABLE_SUBGROUPS
enable subgroups;
#endif

#include "common/bytes.wgsl"
#include "common/dequant.wgsl"
#include_for w_up "common/bytes.wgsl" "common/dequant.wgsl"
#include "common/workgroup_sum.wgsl"
#include "common/norm_fold.wgsl"
#include "common/lane_sum.wgsl"

struct Params {
    k: u32,          // input row length (the hidden size)
    eps: f32,        // RMSNorm epsilon
    rows: u32,       // rows of G and of U
    g_row_bytes: u32,
    u_row_bytes: u32,
    pad0: u32,
    pad1: u32,
    pad2: u32,
}

@group(0) @binding(0) var<storage, read> w: array<u32>;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;
@group(0) @binding(4) var<storage, read> norm_w: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read> w_up: array<u32>;

const ROWS_PER_WG: u32 = WG / LANES;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let t = wg.y;
    fold_norm(li, t * (p.k >> 2u), p.k, p.eps);
    let lane = li % LANES;
    let r = wg.x * ROWS_PER_WG + li / LANES;
    let rr = min(r, p.rows - 1u);
    let gb = rr * p.g_row_bytes;
    let ub = rr * p.u_row_bytes;
    var acc = vec4<f32>(0.0); // x: gate partial, y: up partial
    for (var g = lane; g < (p.k >> 5u); g += LANES) {
        let hg = HDR(gb, g);
        let hu = HDR_w_up(ub, g);
        for (var i = 0u; i < 8u; i++) {
            let xv = xin(g * 8u + i);
            acc += vec4<f32>(dot(DQ4(gb, g, i, hg), xv), dot(DQ4_w_up(ub, g, i, hu), xv), 0.0, 0.0);
        }
    }
    let s = lane_sum(li, acc);
    if (lane == 0u && r < p.rows) {
        y[t * p.rows + r] = s.x / (1.0 + exp(-s.x)) * s.y;
    }
}
