// op: Y[t, r] (+)= Σ_k X[t, k] · W[r, k] for prefill on GPUs, tiled through workgroup memory: a
// workgroup of 128 threads owns 64 weight rows × 32 tokens. For each 32-element group of k it
// dequantizes the 64 × 32 weight tile and loads the 32 × 32 activation tile into workgroup memory once,
// then every thread accumulates a 4-row × 4-token block from there, so weights are read from memory
// ceil(n_tokens / 32) times (matmul.wgsl: ceil(n_tokens / 4)). With WT = f16 (adapter feature
// `shader-f16`, quantized and F16 weights only) the weight tile is stored in half precision.
// bindings: 0 w (storage, read, raw bytes as u32), 1 x (storage, read, vec4 rows), 2 y (storage,
//           read_write), 3 params (uniform, common/linear_params.wgsl), 4 step (uniform).
// dispatch: (ceil(n_rows / 64), ceil(n_tokens / 32), 1); workgroup = 128 threads.
// defines: HDR, DQ4, ALIGNED, ACCUMULATE (0/1), F16 (0u/1u), WT (f32 or f16).

#if F16
enable f16;
#endif

#include "common/bytes.wgsl"
#include "common/dequant.wgsl"
#include "common/step.wgsl"

#include "common/linear_params.wgsl"

@group(0) @binding(0) var<storage, read> w: array<u32>;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>; // offsets and strides are multiples of 4
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;
@group(0) @binding(4) var<uniform> step: Step;

const TILE_ROWS: u32 = 64u;
const TILE_TOKENS: u32 = 32u;
// vec4s per tile line: 8 hold one 32-element group, the 9th staggers lines across memory banks.
const LINE: u32 = 9u;

var<workgroup> wt: array<vec4<WT>, 576>; // TILE_ROWS * LINE
var<workgroup> xt: array<vec4<f32>, 288>; // TILE_TOKENS * LINE

@compute @workgroup_size(128)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let r0 = wg.x * TILE_ROWS;
    let t0 = wg.y * TILE_TOKENS;
    // Loading: thread li dequantizes half a group (4 vec4s) of tile row li / 2 and loads a quarter
    // (2 vec4s) of the group of tile token li / 4. Rows and tokens past the end repeat the last one.
    let lr = li >> 1u;
    let half = (li & 1u) * 4u;
    let wrow = min(r0 + lr, p.n_rows - 1u) * p.row_bytes;
    let lt = li >> 2u;
    let quarter = (li & 3u) * 2u;
    let xs = p.x_stride >> 2u;
    let xrow = (p.x_offset >> 2u) + min(t0 + lt, step.n_tokens - 1u) * xs;
    // Computing: rows rb + 16 j and tokens tb + 8 u of the tile (strided, so that neighbouring threads
    // read neighbouring lines).
    let rb = li & 15u;
    let tb = li >> 4u;
    var a0 = vec4<f32>(0.0); // row rb, tokens tb, tb + 8, tb + 16, tb + 24
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
    for (var g = 0u; g < (p.k >> 5u); g++) {
        let h = HDR(wrow, g);
        for (var i = 0u; i < 4u; i++) {
            wt[lr * LINE + half + i] = vec4<WT>(DQ4(wrow, g, half + i, h));
        }
        xt[lt * LINE + quarter] = x[xrow + g * 8u + quarter];
        xt[lt * LINE + quarter + 1u] = x[xrow + g * 8u + quarter + 1u];
        workgroupBarrier();
        for (var i = 0u; i < 8u; i++) {
            let x0 = xt[tb * LINE + i];
            let x1 = xt[(tb + 8u) * LINE + i];
            let x2 = xt[(tb + 16u) * LINE + i];
            let x3 = xt[(tb + 24u) * LINE + i];
            let w0 = vec4<f32>(wt[rb * LINE + i]);
            let w1 = vec4<f32>(wt[(rb + 16u) * LINE + i]);
            let w2 = vec4<f32>(wt[(rb + 32u) * LINE + i]);
            let w3 = vec4<f32>(wt[(rb + 48u) * LINE + i]);
            a0 += vec4<f32>(dot(w0, x0), dot(w0, x1), dot(w0, x2), dot(w0, x3));
            a1 += vec4<f32>(dot(w1, x0), dot(w1, x1), dot(w1, x2), dot(w1, x3));
            a2 += vec4<f32>(dot(w2, x0), dot(w2, x1), dot(w2, x2), dot(w2, x3));
            a3 += vec4<f32>(dot(w3, x0), dot(w3, x1), dot(w3, x2), dot(w3, x3));
        }
        workgroupBarrier();
    }
    let acc = mat4x4<f32>(a0, a1, a2, a3);
    for (var j = 0u; j < 4u; j++) {
        let r = r0 + rb + 16u * j;
        for (var u = 0u; u < 4u; u++) {
            let t = t0 + tb + 8u * u;
            if (r < p.n_rows && t < step.n_tokens) {
                let o = p.y_offset + t * p.out_stride + p.out_row0 + r;
                if (ACCUMULATE == 1u) {
                    y[o] = y[o] + acc[j][u];
                } else {
                    y[o] = acc[j][u];
                }
            }
        }
    }
}
