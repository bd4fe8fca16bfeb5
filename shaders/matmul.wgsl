// op: Y[t, r] (+)= Σ_k X[t, k] · W[r, k] for prefill. Each thread owns one weight row and a block of
// TOKENS tokens: it dequantizes each 4-element piece of its row once (HDR/DQ4) and uses it for all of
// its tokens, so weights are read ceil(n_tokens / TOKENS) times instead of n_tokens times. No barriers
// and no workgroup memory (CPU emulators such as lavapipe and SwiftShader pay heavily for both).
// bindings: 0 w (storage, read, raw bytes as u32), 1 x (storage, read, vec4 rows), 2 y (storage,
//           read_write), 3 params (uniform, same layout as matvec.wgsl), 4 step (uniform).
// dispatch: (ceil(n_rows / 64), ceil(n_tokens / TOKENS), 1); workgroup = 64 threads, one row each.
// defines: HDR, DQ4, ALIGNED, ACCUMULATE (0/1).

#include "common/bytes.wgsl"
#include "common/dequant.wgsl"
#include "common/step.wgsl"

#include "common/linear_params.wgsl"

@group(0) @binding(0) var<storage, read> w: array<u32>;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>; // offsets and strides are multiples of 4
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;
@group(0) @binding(4) var<uniform> step: Step;

const TOKENS: u32 = 8u;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let r = gid.x;
    let t0 = gid.y * TOKENS;
    if (r >= p.n_rows) { return; }
    let n_tok = min(TOKENS, step.n_tokens - t0);
    let row = r * p.row_bytes;
    let xs = p.x_stride / 4u;
    let xb = p.x_offset / 4u + t0 * xs;
    var acc: array<f32, TOKENS>;
    for (var g = 0u; g < p.k / 32u; g++) {
        let h = HDR(row, g);
        for (var i = 0u; i < 8u; i++) {
            let v = DQ4(row, g, i, h);
            let xo = xb + g * 8u + i;
            // Rows past the call's tokens are read but never written back (reads stay inside the
            // binding: WebGPU clamps out-of-range accesses).
            for (var t = 0u; t < TOKENS; t++) {
                acc[t] += dot(v, x[xo + t * xs]);
            }
        }
    }
    for (var t = 0u; t < n_tok; t++) {
        let o = p.y_offset + (t0 + t) * p.out_stride + p.out_row0 + r;
        if (ACCUMULATE == 1u) {
            y[o] = y[o] + acc[t];
        } else {
            y[o] = acc[t];
        }
    }
}
