// op: quantization on load. Rows of an F32, F16 or BF16 tensor (read through SRC, the source type's
// dequant4 function) become Q8_0, Q4_0 or Q4_K blocks in the weight buffer, bit for bit as the CPU
// reference quantizers in webmoe-core's quant.rs make them (same folds in the same order, f16 scales
// rounded to nearest-even, rounding half away from zero).
// The rows of a call form one run of blocks (rows are stored back to back). One invocation writes one
// unit of blocks that ends on a 4-byte boundary (Q8_0 and Q4_0: 2 blocks, Q4_K: 1), so no two
// invocations share a word.
// bindings: 0 w (storage, read: the source rows), 1 dst (storage, read_write: the weight shard),
//           2 params (uniform).
// dispatch: (min(units, 65535 * 64) / 64 rounded up, ceil(units / (65535 * 64)), 1); workgroup = 64.
// defines: SRC (dq4_f32, dq4_f16 or dq4_bf16), ALIGNED (1u), TARGET (0 Q8_0, 1 Q4_0, 2 Q4_K).

#include "common/bytes.wgsl"
#include "common/dequant.wgsl"

struct Params {
    k: u32,             // elements per row
    src_row_bytes: u32, // bytes per source row
    n_blocks: u32,      // blocks in this call
    dst_word0: u32,     // first destination word (the call's first block starts there)
}

@group(0) @binding(0) var<storage, read> w: array<u32>;
@group(0) @binding(1) var<storage, read_write> dst: array<u32>;
@group(0) @binding(2) var<uniform> p: Params;

// The unit being written, as words.
var<private> o: array<u32, 36>;

fn put(i: u32, v: u32) {
    o[i >> 2u] |= (v & 0xffu) << ((i & 3u) * 8u);
}

fn put16(i: u32, v: u32) {
    put(i, v);
    put(i + 1u, v >> 8u);
}

// Elements 4i..4i+3 of the 32-element group `g` of the flattened rows (g counts groups from the first
// row of the call).
fn src4(g: u32, i: u32) -> vec4<f32> {
    let per_row = p.k / 32u;
    return SRC((g / per_row) * p.src_row_bytes, g % per_row, i, vec4<f32>(0.0));
}

// f32 to f16 bits, rounding to nearest-even (as the `half` crate does).
fn f16_bits(x: f32) -> u32 {
    let b = bitcast<u32>(x);
    let sign = (b >> 16u) & 0x8000u;
    let e = i32((b >> 23u) & 0xffu);
    let m = b & 0x7fffffu;
    if (e == 255) {
        return sign | 0x7c00u | select(0u, 0x200u | (m >> 13u), m != 0u);
    }
    let he = e - 112;
    if (he >= 31) { return sign | 0x7c00u; }
    if (he <= 0) {
        if (he < -10) { return sign; }
        let full = m | 0x800000u;
        let shift = u32(14 - he);
        let r = full >> shift;
        let rem = full & ((1u << shift) - 1u);
        let half = 1u << (shift - 1u);
        return sign | (r + select(0u, 1u, rem > half || (rem == half && (r & 1u) == 1u)));
    }
    let r = (u32(he) << 10u) | (m >> 13u);
    let rem = m & 0x1fffu;
    return sign | (r + select(0u, 1u, rem > 0x1000u || (rem == 0x1000u && (r & 1u) == 1u)));
}

// f16 bits to f32.
fn f16_value(h: u32) -> f32 {
    return unpack2x16float(h).x;
}

// Rounds half away from zero (Rust's f32::round).
fn round_away(v: f32) -> f32 {
    let t = trunc(v);
    return select(t, t + sign(v), abs(v - t) >= 0.5);
}

// Q8_0 block `b` at byte `at` of the unit.
fn q8_0(b: u32, at: u32) {
    var amax = 0.0;
    for (var i = 0u; i < 8u; i++) {
        let v = abs(src4(b, i));
        amax = max(max(max(max(amax, v.x), v.y), v.z), v.w);
    }
    let d = amax / 127.0;
    let id = select(0.0, 1.0 / d, d != 0.0);
    put16(at, f16_bits(d));
    for (var i = 0u; i < 8u; i++) {
        let v = src4(b, i) * id;
        for (var c = 0u; c < 4u; c++) { put(at + 2u + 4u * i + c, u32(i32(round_away(v[c])))); }
    }
}

fn q4_0_code(v: f32, id: f32) -> u32 {
    return u32(clamp(i32(v * id + 8.5), 0, 15));
}

// Q4_0 block `b` at byte `at` of the unit.
fn q4_0(b: u32, at: u32) {
    var mx = 0.0;
    for (var i = 0u; i < 8u; i++) {
        let v = src4(b, i);
        for (var c = 0u; c < 4u; c++) { if (abs(v[c]) > abs(mx)) { mx = v[c]; } }
    }
    let d = mx / -8.0;
    let id = select(0.0, 1.0 / d, d != 0.0);
    put16(at, f16_bits(d));
    for (var i = 0u; i < 4u; i++) {
        let lo = src4(b, i);
        let hi = src4(b, i + 4u);
        for (var c = 0u; c < 4u; c++) {
            put(at + 2u + 4u * i + c, q4_0_code(lo[c], id) | (q4_0_code(hi[c], id) << 4u));
        }
    }
}

fn q6(v: f32, unit: f32) -> u32 {
    if (unit > 0.0) { return u32(clamp(i32(round_away(v / unit)), 0, 63)); }
    return 0u;
}

// Q4_K block `b` (256 elements: groups 8b..8b+7) at byte 0 of the unit.
fn q4_k(b: u32) {
    var scale: array<f32, 8>;
    var mn: array<f32, 8>;
    var smax = 0.0;
    var mmax = 0.0;
    for (var j = 0u; j < 8u; j++) {
        var lo = src4(8u * b + j, 0u).x;
        var hi = lo;
        for (var i = 0u; i < 8u; i++) {
            let v = src4(8u * b + j, i);
            lo = min(min(min(min(lo, v.x), v.y), v.z), v.w);
            hi = max(max(max(max(hi, v.x), v.y), v.z), v.w);
        }
        lo = min(lo, 0.0);
        scale[j] = (hi - lo) / 15.0;
        mn[j] = -lo;
        // Strict compares keep the fold's +0 start when a sub-block is all zeros (mn = -0), as on the CPU.
        if (scale[j] > smax) { smax = scale[j]; }
        if (mn[j] > mmax) { mmax = mn[j]; }
    }
    let dh = f16_bits(smax / 63.0);
    let mh = f16_bits(mmax / 63.0);
    let d = f16_value(dh);
    let dmin = f16_value(mh);
    put16(0u, dh);
    put16(2u, mh);
    var sc: array<u32, 8>;
    var mq: array<u32, 8>;
    for (var j = 0u; j < 8u; j++) {
        sc[j] = q6(scale[j], d);
        mq[j] = q6(mn[j], dmin);
    }
    for (var j = 0u; j < 4u; j++) {
        put(4u + j, sc[j] | ((sc[j + 4u] >> 4u) << 6u));
        put(8u + j, mq[j] | ((mq[j + 4u] >> 4u) << 6u));
        put(12u + j, (sc[j + 4u] & 15u) | ((mq[j + 4u] & 15u) << 4u));
    }
    for (var g = 0u; g < 4u; g++) {
        let a = 2u * g;
        let step_a = d * f32(sc[a]);
        let step_b = d * f32(sc[a + 1u]);
        let off_a = dmin * f32(mq[a]);
        let off_b = dmin * f32(mq[a + 1u]);
        for (var i = 0u; i < 8u; i++) {
            let va = src4(8u * b + a, i);
            let vb = src4(8u * b + a + 1u, i);
            for (var c = 0u; c < 4u; c++) {
                var qa = 0u;
                var qb = 0u;
                if (step_a > 0.0) { qa = u32(clamp(i32(round_away((va[c] + off_a) / step_a)), 0, 15)); }
                if (step_b > 0.0) { qb = u32(clamp(i32(round_away((vb[c] + off_b) / step_b)), 0, 15)); }
                put(16u + 32u * g + 4u * i + c, qa | (qb << 4u));
            }
        }
    }
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let unit = gid.y * 65535u * 64u + gid.x;
    var per_unit = 2u;  // blocks
    var unit_bytes = 68u;
    if (TARGET == 1u) { unit_bytes = 36u; }
    if (TARGET == 2u) { per_unit = 1u; unit_bytes = 144u; }
    let b0 = unit * per_unit;
    if (b0 >= p.n_blocks) { return; }
    for (var i = 0u; i < 36u; i++) { o[i] = 0u; }
    var bytes = unit_bytes;
    if (TARGET == 2u) {
        q4_k(b0);
    } else {
        let block_bytes = unit_bytes / 2u;
        if (TARGET == 0u) { q8_0(b0, 0u); } else { q4_0(b0, 0u); }
        if (b0 + 1u < p.n_blocks) {
            if (TARGET == 0u) { q8_0(b0 + 1u, block_bytes); } else { q4_0(b0 + 1u, block_bytes); }
        } else {
            bytes = block_bytes;
        }
    }
    let base = p.dst_word0 + unit * (unit_bytes / 4u);
    for (var i = 0u; i < (bytes + 3u) / 4u; i++) { dst[base + i] = o[i]; }
}
