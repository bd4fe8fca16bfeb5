// op: Y[t, r] (+)= Σ_k X[t, k] · W[r, k], tiled for prefill: a workgroup computes a tile of TILE_R rows ×
// TILE_T tokens, staging 32-wide slices of W (dequantized through HDR/DQ4) and X in workgroup memory.
// bindings: 0 w (storage, read, raw bytes as u32), 1 x (storage, read), 2 y (storage, read_write),
//           3 params (uniform, same layout as matvec.wgsl), 4 step (uniform: n_tokens).
// dispatch: (ceil(n_rows / 32), ceil(n_tokens / 16), 1); workgroup = 64 threads, each 2 rows × 4 tokens.
// defines: HDR, DQ4, ACCUMULATE (0/1).

#include "common/bytes.wgsl"
#include "common/dequant.wgsl"

struct Params {
    k: u32,
    n_rows: u32,
    row_bytes: u32,
    out_row0: u32,
    out_stride: u32,
    x_stride: u32,
    x_offset: u32,
    y_offset: u32,
}

#include "common/step.wgsl"

@group(0) @binding(0) var<storage, read> w: array<u32>;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;
@group(0) @binding(4) var<uniform> step: Step;

const TILE_R: u32 = 32u;
const TILE_T: u32 = 16u;
var<workgroup> ws: array<f32, 1024>; // [TILE_R][32]
var<workgroup> xs: array<f32, 512>;  // [TILE_T][32]

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let r0 = wg.x * TILE_R;
    let t0 = wg.y * TILE_T;
    let n_tok = step.n_tokens;
    // Thread (rr, tt) owns rows r0 + 2*rr + {0,1} and tokens t0 + 4*tt + {0..3}.
    let rr = li % 16u;
    let tt = li / 16u;
    var acc: array<f32, 8>;
    for (var g = 0u; g < p.k / 32u; g++) {
        if (li < TILE_R) {
            let r = r0 + li;
            let row = r * p.row_bytes;
            var h = vec4<f32>(0.0);
            if (r < p.n_rows) { h = HDR(row, g); }
            for (var i = 0u; i < 8u; i++) {
                var v = vec4<f32>(0.0);
                if (r < p.n_rows) { v = DQ4(row, g, i, h); }
                ws[li * 32u + 4u * i] = v.x;
                ws[li * 32u + 4u * i + 1u] = v.y;
                ws[li * 32u + 4u * i + 2u] = v.z;
                ws[li * 32u + 4u * i + 3u] = v.w;
            }
        } else {
            // 32 threads load 16 tokens × 32 values: 16 values each.
            let j = li - TILE_R;
            let t = t0 + j / 2u;
            let half = (j % 2u) * 16u;
            for (var i = 0u; i < 16u; i++) {
                var xv = 0.0;
                if (t < n_tok) { xv = x[p.x_offset + t * p.x_stride + g * 32u + half + i]; }
                xs[(j / 2u) * 32u + half + i] = xv;
            }
        }
        workgroupBarrier();
        for (var i = 0u; i < 32u; i++) {
            let w0 = ws[(2u * rr) * 32u + i];
            let w1 = ws[(2u * rr + 1u) * 32u + i];
            for (var a = 0u; a < 4u; a++) {
                let xv = xs[(4u * tt + a) * 32u + i];
                acc[a] += w0 * xv;
                acc[4u + a] += w1 * xv;
            }
        }
        workgroupBarrier();
    }
    for (var b = 0u; b < 2u; b++) {
        let r = r0 + 2u * rr + b;
        for (var a = 0u; a < 4u; a++) {
            let t = t0 + 4u * tt + a;
            if (r < p.n_rows && t < n_tok) {
                let o = p.y_offset + t * p.out_stride + p.out_row0 + r;
                if (ACCUMULATE == 1u) {
                    y[o] = y[o] + acc[4u * b + a];
                } else {
                    y[o] = acc[4u * b + a];
                }
            }
        }
    }
}
