// op: y[t, r] (+)= Σ_k x[t, k] · W[r, k] for one token t per workgroup row (decode mat-vec).
// W is a GGUF tensor (one shard of rows) read through HDR/DQ4; x, y are f32.
// bindings: 0 w (storage, read, raw bytes as u32), 1 x (storage, read), 2 y (storage, read_write),
//           3 params (uniform).
// dispatch: (ceil(n_rows / ROWS_PER_WG), n_tokens, 1); workgroup = 64 threads = ROWS_PER_WG rows × LANES lanes.
// defines: HDR and DQ4 (dequant functions), LANES (threads per row, power of two ≤ 64), ACCUMULATE (0/1).

#include "common/bytes.wgsl"
#include "common/dequant.wgsl"

struct Params {
    k: u32,          // row length (elements)
    n_rows: u32,     // rows in this shard
    row_bytes: u32,  // bytes per row
    out_row0: u32,   // first output row of this shard
    out_stride: u32, // elements per output token row
    x_stride: u32,   // elements per input token row
    x_offset: u32,   // first input element
    y_offset: u32,   // first output element
}

@group(0) @binding(0) var<storage, read> w: array<u32>;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>; // offsets and strides are multiples of 4
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

const ROWS_PER_WG: u32 = 64u / LANES;
var<workgroup> partial: array<f32, 64>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let lane = li % LANES;
    let r = wg.x * ROWS_PER_WG + li / LANES;
    let t = wg.y;
    var acc = 0.0;
    if (r < p.n_rows) {
        let xb = (p.x_offset + t * p.x_stride) / 4u;
        let row = r * p.row_bytes;
        for (var g = lane; g < p.k / 32u; g += LANES) {
            let xo = xb + g * 8u;
            let h = HDR(row, g);
            for (var i = 0u; i < 8u; i++) {
                acc += dot(DQ4(row, g, i, h), x[xo + i]);
            }
        }
    }
    partial[li] = acc;
    workgroupBarrier();
    if (lane == 0u && r < p.n_rows) {
        var s = 0.0;
        for (var i = 0u; i < LANES; i++) {
            s += partial[li + i];
        }
        let o = p.y_offset + t * p.out_stride + p.out_row0 + r;
        if (ACCUMULATE == 1u) {
            y[o] = y[o] + s;
        } else {
            y[o] = s;
        }
    }
}
