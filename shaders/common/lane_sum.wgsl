// Sum over the LANES consecutive invocations that share a mat-vec row (LANES a power of two ≤ WG),
// every one of them getting the total. With SUBGROUPS (adapter feature `subgroups`, subgroups at
// least LANES wide, chosen at device creation) a butterfly of subgroup shuffles; otherwise through
// workgroup memory. Call from workgroup-uniform control flow.
// defines: WG, LANES, SUBGROUPS (0u/1u).

#if SUBGROUPS
fn lane_sum(li: u32, v: vec4<f32>) -> vec4<f32> {
    var s = v;
    for (var o = LANES >> 1u; o > 0u; o >>= 1u) {
        s += subgroupShuffleXor(s, o);
    }
    return s;
}
#else
var<workgroup> lane_parts: array<vec4<f32>, WG>;

fn lane_sum(li: u32, v: vec4<f32>) -> vec4<f32> {
    if (LANES == 1u) { return v; }
    lane_parts[li] = v;
    workgroupBarrier();
    let first = li - li % LANES;
    var s = vec4<f32>(0.0);
    for (var i = 0u; i < LANES; i++) { s += lane_parts[first + i]; }
    workgroupBarrier();
    return s;
}
#endif
