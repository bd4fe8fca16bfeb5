// op: Y[t, r] (+)= Σ_k X[t, k] · W[r, k] for prefill, register-tiled: each thread owns a tile of
// ROWS consecutive weight rows × TOKENS tokens. Per 4-element step it dequantizes ROWS weight vectors
// (HDR/DQ4) and loads TOKENS activation vectors, then does ROWS·TOKENS dot products, so weights are read
// ceil(n_tokens / TOKENS) times and activations ceil(n_rows / ROWS) times. No barriers and no workgroup
// memory (CPU emulators such as lavapipe and SwiftShader pay heavily for both).
// bindings: 0 w (storage, read, raw bytes as u32), 1 x (storage, read, vec4 rows), 2 y (storage,
//           read_write), 3 params (uniform, common/linear_params.wgsl), 4 step (uniform).
// dispatch: (ceil(n_rows / (64 * ROWS)), ceil(n_tokens / TOKENS), 1); workgroup = 64 threads.
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

const ROWS: u32 = 4u;
const TOKENS: u32 = 4u;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let r0 = gid.x * ROWS;
    let t0 = gid.y * TOKENS;
    if (r0 >= p.n_rows) { return; }
    // Rows past the end repeat the last row; tokens past the end read rows that are never written
    // back (reads stay inside the binding: WebGPU clamps out-of-range accesses).
    let b0 = min(r0, p.n_rows - 1u) * p.row_bytes;
    let b1 = min(r0 + 1u, p.n_rows - 1u) * p.row_bytes;
    let b2 = min(r0 + 2u, p.n_rows - 1u) * p.row_bytes;
    let b3 = min(r0 + 3u, p.n_rows - 1u) * p.row_bytes;
    let xs = p.x_stride / 4u;
    let xb = p.x_offset / 4u + t0 * xs;
    var a0 = vec4<f32>(0.0); // row r0, tokens t0..t0+3
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
    for (var g = 0u; g < p.k / 32u; g++) {
        let h0 = HDR(b0, g);
        let h1 = HDR(b1, g);
        let h2 = HDR(b2, g);
        let h3 = HDR(b3, g);
        for (var i = 0u; i < 8u; i++) {
            let xo = xb + g * 8u + i;
            let x0 = x[xo];
            let x1 = x[xo + xs];
            let x2 = x[xo + 2u * xs];
            let x3 = x[xo + 3u * xs];
            let w0 = DQ4(b0, g, i, h0);
            let w1 = DQ4(b1, g, i, h1);
            let w2 = DQ4(b2, g, i, h2);
            let w3 = DQ4(b3, g, i, h3);
            a0 += vec4<f32>(dot(w0, x0), dot(w0, x1), dot(w0, x2), dot(w0, x3));
            a1 += vec4<f32>(dot(w1, x0), dot(w1, x1), dot(w1, x2), dot(w1, x3));
            a2 += vec4<f32>(dot(w2, x0), dot(w2, x1), dot(w2, x2), dot(w2, x3));
            a3 += vec4<f32>(dot(w3, x0), dot(w3, x1), dot(w3, x2), dot(w3, x3));
        }
    }
    let acc = mat4x4<f32>(a0, a1, a2, a3);
    for (var j = 0u; j < ROWS; j++) {
        for (var t = 0u; t < TOKENS; t++) {
            if (r0 + j < p.n_rows && t0 + t < step.n_tokens) {
                let o = p.y_offset + (t0 + t) * p.out_stride + p.out_row0 + r0 + j;
                if (ACCUMULATE == 1u) {
                    y[o] = y[o] + acc[j][t];
                } else {
                    y[o] = acc[j][t];
                }
            }
        }
    }
}
