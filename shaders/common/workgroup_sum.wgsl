// Sum over a 64-invocation workgroup of one value per invocation (tree reduction in workgroup memory).
// Call once per invocation from workgroup-uniform control flow; every invocation gets the total.

var<workgroup> wg_sums: array<f32, 64>;

fn workgroup_sum64(li: u32, v: f32) -> f32 {
    wg_sums[li] = v;
    workgroupBarrier();
    for (var off = 32u; off > 0u; off >>= 1u) {
        if (li < off) { wg_sums[li] += wg_sums[li + off]; }
        workgroupBarrier();
    }
    return wg_sums[0];
}
