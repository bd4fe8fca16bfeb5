// One weight row's partial dot product with the normalized input (common/norm_fold.wgsl `xin`) over
// this lane's 32-element groups (groups LANES apart), for the fused decode mat-vecs. `#include_for`
// copies it for another weight binding (`row_dot_<binding>`, reading HDR_<binding>/DQ4_<binding>).
// defines: LANES, HDR, DQ4 (and ALIGNED through common/bytes.wgsl).

fn row_dot(row: u32, lane: u32, n_groups: u32) -> vec4<f32> {
    var acc = vec4<f32>(0.0);
    for (var g = lane; g < n_groups; g += LANES) {
        let h = HDR(row, g);
        let j = g * 8u;
        acc += DQ4(row, g, 0u, h) * xin(j) + DQ4(row, g, 1u, h) * xin(j + 1u)
            + DQ4(row, g, 2u, h) * xin(j + 2u) + DQ4(row, g, 3u, h) * xin(j + 3u)
            + DQ4(row, g, 4u, h) * xin(j + 4u) + DQ4(row, g, 5u, h) * xin(j + 5u)
            + DQ4(row, g, 6u, h) * xin(j + 6u) + DQ4(row, g, 7u, h) * xin(j + 7u);
    }
    return acc;
}
