// RMSNorm folded into a decode mat-vec (matvec_qkv.wgsl, matvec_glu.wgsl): each workgroup computes the
// scale of its token's row of `x` itself (the same formula as rmsnorm.wgsl) and `xin` returns the
// normalized input, so no separate norm launch and no normalized copy are needed.
// The including shader declares `x: array<vec4<f32>>` and `norm_w: array<vec4<f32>>` and includes
// common/workgroup_sum.wgsl (WG = 64).

var<private> norm_scale: f32;
var<private> norm_row: u32;

// Sets the scale for the row of `n` elements that starts at vec4 `xb` (n a multiple of 4).
fn fold_norm(li: u32, xb: u32, n: u32, eps: f32) {
    var s = 0.0;
    for (var j = li; j < (n >> 2u); j += 64u) {
        let v = x[xb + j];
        s += dot(v, v);
    }
    norm_row = xb;
    norm_scale = 1.0 / sqrt(workgroup_sum64(li, s) / f32(n) + eps);
}

// Normalized input vec4 `j` of the row.
fn xin(j: u32) -> vec4<f32> {
    return x[norm_row + j] * norm_scale * norm_w[j];
}
