// op: y[t, :] = x[t, :] / sqrt(mean(x[t, :]²) + eps) * weight — RMSNorm in f32.
// bindings: 0 x (storage, read), 1 weight (storage, read, f32), 2 y (storage, read_write), 3 params, 4 step.
// dispatch: (n_rows, 1, 1) where n_rows = step.n_tokens, or 1 with `last_only` (normalizes only the last
// token's row into row 0 of y: the logits of a prefill need nothing else). Workgroup = 64 threads.

#include "common/step.wgsl"
#include "common/workgroup_sum.wgsl"

struct Params {
    n: u32,
    last_only: u32,
    eps: f32,
    pad: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> weight: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;
@group(0) @binding(4) var<uniform> step: Step;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    var src_row = wg.x;
    var dst_row = wg.x;
    if (p.last_only == 1u) { src_row = step.n_tokens - 1u; dst_row = 0u; }
    if (src_row >= step.n_tokens) { return; }
    let xb = src_row * p.n;
    var s = 0.0;
    for (var i = li; i < p.n; i += 64u) {
        let v = x[xb + i];
        s += v * v;
    }
    let scale = 1.0 / sqrt(workgroup_sum64(li, s) / f32(p.n) + p.eps);
    let yb = dst_row * p.n;
    for (var i = li; i < p.n; i += 64u) {
        y[yb + i] = x[xb + i] * scale * weight[i];
    }
}
