// op: y[t, r] (+)= Σ_k x[t, k] · W[r, k] for one token per dispatch row (decode mat-vec).
// W is a GGUF tensor (one shard of rows) read through HDR/DQ4; x, y are f32.
// Each thread owns RPT rows and a LANES-th of their 32-element groups, so every activation load is
// reused for RPT rows; the LANES partial sums of a row meet in common/lane_sum.wgsl (workgroup memory,
// or subgroup shuffles with SUBGROUPS).
// bindings: 0 w (storage, read, raw bytes as u32), 1 x (storage, read, vec4), 2 y (storage, read_write),
//           3 params (uniform).
// dispatch: (ceil(n_rows / (RPT * WG / LANES)), n_tokens, 1); workgroup = WG threads.
// defines: HDR, DQ4, ALIGNED, WG (8 or 64), LANES (power of two ≤ WG), RPT (rows per thread, 1..4),
//          ACCUMULATE (0/1), SUBGROUPS, ENABLE_SUBGROUPS (0u/1u: the `enable` line browsers need).

#if ENABLE_SUBGROUPS
enable subgroups;
#endif

#include "common/bytes.wgsl"
#include "common/dequant.wgsl"

#include "common/linear_params.wgsl"
#include "common/lane_sum.wgsl"

@group(0) @binding(0) var<storage, read> w: array<u32>;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>; // offsets and strides are multiples of 4
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

const GROUPS_PER_WG: u32 = WG / LANES;

// Elements 4i..4i+3 of group g of up to four rows against the activations `xv`. Called with literal
// `i` so that, once inlined, every offset, mask and select inside DQ4 that depends on `i` is a
// constant (SwiftShader's Subzero backend computes per-invocation values lane by lane).
fn part(rows: vec4<u32>, g: u32, i: u32, h0: vec4<f32>, h1: vec4<f32>, h2: vec4<f32>, h3: vec4<f32>,
        xv: vec4<f32>) -> vec4<f32> {
    var a = vec4<f32>(dot(DQ4(rows.x, g, i, h0), xv), 0.0, 0.0, 0.0);
    if (RPT > 1u) { a.y = dot(DQ4(rows.y, g, i, h1), xv); }
    if (RPT > 2u) { a.z = dot(DQ4(rows.z, g, i, h2), xv); }
    if (RPT > 3u) { a.w = dot(DQ4(rows.w, g, i, h3), xv); }
    return a;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let lane = li % LANES;
    let r0 = (wg.x * GROUPS_PER_WG + li / LANES) * RPT;
    let t = wg.y;
    // Rows past the end repeat the last row (their results are discarded) so the loop has no branch.
    let last = p.n_rows - 1u;
    let rows = vec4<u32>(min(r0, last), min(r0 + 1u, last), min(r0 + 2u, last), min(r0 + 3u, last))
        * p.row_bytes;
    var acc = vec4<f32>(0.0);
    if (r0 < p.n_rows) {
        let xb = (p.x_offset + t * p.x_stride) >> 2u;
        let n_groups = p.k >> 5u;
        for (var g = lane; g < n_groups; g += LANES) {
            let xo = xb + g * 8u;
            let h0 = HDR(rows.x, g);
            var h1 = h0; var h2 = h0; var h3 = h0;
            if (RPT > 1u) { h1 = HDR(rows.y, g); }
            if (RPT > 2u) { h2 = HDR(rows.z, g); }
            if (RPT > 3u) { h3 = HDR(rows.w, g); }
            acc += part(rows, g, 0u, h0, h1, h2, h3, x[xo]) + part(rows, g, 1u, h0, h1, h2, h3, x[xo + 1u])
                + part(rows, g, 2u, h0, h1, h2, h3, x[xo + 2u]) + part(rows, g, 3u, h0, h1, h2, h3, x[xo + 3u])
                + part(rows, g, 4u, h0, h1, h2, h3, x[xo + 4u]) + part(rows, g, 5u, h0, h1, h2, h3, x[xo + 5u])
                + part(rows, g, 6u, h0, h1, h2, h3, x[xo + 6u]) + part(rows, g, 7u, h0, h1, h2, h3, x[xo + 7u]);
        }
    }
    let s = lane_sum(li, acc);
    if (lane == 0u) {
        let ob = p.y_offset + t * p.out_stride + p.out_row0;
        for (var j = 0u; j < RPT; j++) {
            if (r0 + j < p.n_rows) {
                let o = ob + r0 + j;
                if (ACCUMULATE == 1u) { y[o] = y[o] + s[j]; } else { y[o] = s[j]; }
            }
        }
    }
}
