// Reading a KV cache bound as `w: array<u32>`; shaders include it once per cache with
// `#include_for kc "common/kv_pair.wgsl"` (giving `kv_pair_kc`, reading `kc`). Needs the KV_F16 define
// (1: packed f16 cache, 0: f32 bit patterns).

// Elements 2·d2 and 2·d2 + 1 of the cache row whose first word is `row`.
fn kv_pair(row: u32, d2: u32) -> vec2<f32> {
    if (KV_F16 == 1u) { return unpack2x16float(w[row + d2]); }
    return bitcast<vec2<f32>>(vec2<u32>(w[row + 2u * d2], w[row + 2u * d2 + 1u]));
}
