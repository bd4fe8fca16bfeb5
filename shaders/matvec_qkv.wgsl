// op: the attention input projections of one decode token in one launch, with the RMSNorm before them
// folded in: xn = rmsnorm(x[t]) · norm_w, then q[t, r] = Σ_k xn[k] · Wq[r, k], and likewise k and v.
// Workgroups [0, gq) compute q rows, [gq, gq + gkv) k rows, the rest v rows (a workgroup-uniform
// choice); within one, LANES threads share a row and meet in common/lane_sum.wgsl.
// bindings: 0 w (Wq, raw bytes as u32), 1 x (storage, read, vec4: the residual stream), 2 q (storage,
//           read_write), 3 params (uniform), 4 norm_w (storage, read, vec4), 5 w_k, 6 w_v (raw bytes),
//           7 k, 8 v (storage, read_write).
// dispatch: (gq + 2 * gkv, n_tokens, 1) with gq = ceil(q_rows / (WG / LANES)), gkv likewise for
//           kv_rows; workgroup = WG = 64 threads.
// defines: HDR, DQ4, ALIGNED (Wq's type), HDR_w_k, DQ4_w_k, ALIGNED_w_k, HDR_w_v, DQ4_w_v, ALIGNED_w_v
//          (`hdr_<type>_w_k` ...), WG (64u), LANES, SUBGROUPS, ENABLE_SUBGROUPS (0u/1u: the `enable` line browsers need).

#if ENABLE_SUBGROUPS
enable subgroups;
#endif

#include "common/bytes.wgsl"
#include "common/dequant.wgsl"
#include "common/workgroup_sum.wgsl"
#include "common/norm_fold.wgsl"
#include "common/matvec_row.wgsl"
#include_for w_k "common/bytes.wgsl" "common/dequant.wgsl" "common/matvec_row.wgsl"
#include_for w_v "common/bytes.wgsl" "common/dequant.wgsl" "common/matvec_row.wgsl"
#include "common/lane_sum.wgsl"

struct Params {
    k: u32,           // input row length (the hidden size)
    eps: f32,         // RMSNorm epsilon
    q_rows: u32,
    kv_rows: u32,     // rows of Wk and of Wv
    q_row_bytes: u32,
    k_row_bytes: u32,
    v_row_bytes: u32,
    q_groups: u32,    // workgroups of q rows (gq); of k and of v: kv_groups
    kv_groups: u32,
}

@group(0) @binding(0) var<storage, read> w: array<u32>;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> q: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;
@group(0) @binding(4) var<storage, read> norm_w: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read> w_k: array<u32>;
@group(0) @binding(6) var<storage, read> w_v: array<u32>;
@group(0) @binding(7) var<storage, read_write> k: array<f32>;
@group(0) @binding(8) var<storage, read_write> v: array<f32>;

const ROWS_PER_WG: u32 = WG / LANES;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let t = wg.y;
    fold_norm(li, t * (p.k >> 2u), p.k, p.eps);
    let lane = li % LANES;
    let n_groups = p.k >> 5u;
    var acc = vec4<f32>(0.0);
    var r = 0u;
    var n_rows = p.kv_rows;
    var which = 0u;
    if (wg.x < p.q_groups) {
        r = wg.x * ROWS_PER_WG + li / LANES;
        n_rows = p.q_rows;
        acc = row_dot(min(r, n_rows - 1u) * p.q_row_bytes, lane, n_groups);
    } else if (wg.x < p.q_groups + p.kv_groups) {
        r = (wg.x - p.q_groups) * ROWS_PER_WG + li / LANES;
        which = 1u;
        acc = row_dot_w_k(min(r, n_rows - 1u) * p.k_row_bytes, lane, n_groups);
    } else {
        r = (wg.x - p.q_groups - p.kv_groups) * ROWS_PER_WG + li / LANES;
        which = 2u;
        acc = row_dot_w_v(min(r, n_rows - 1u) * p.v_row_bytes, lane, n_groups);
    }
    let s = lane_sum(li, acc);
    if (lane == 0u && r < n_rows) {
        let y = s.x + s.y + s.z + s.w;
        let o = t * n_rows + r;
        if (which == 0u) { q[o] = y; } else if (which == 1u) { k[o] = y; } else { v[o] = y; }
    }
}
