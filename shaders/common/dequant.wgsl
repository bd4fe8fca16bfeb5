// Dequantization for every supported ggml type, 4 elements at a time without private arrays (which CPU
// emulators such as lavapipe spill to memory) or integer divisions. SwiftShader's Subzero backend
// executes divisions and every shift (even by a constant) lane by lane, so the common types (Q4_0, Q4_1,
// Q8_0, Q4_K, Q6_K) read their bytes in place with `unpack4x8unorm` (see `unorm4_at`); the others use
// shifts and masks. Callers pass a literal `i` where they can.
// For the 32-element group `g` of the row starting at byte `row`, `hdr_<type>(row, g)` loads the group's
// scales once and `dq4_<type>(row, g, i, h)` returns elements 4i..4i+3. The preprocessor maps HDR and
// DQ4 to one type's pair.
// Formats: docs/models.md §5 (ggml-common.h / ggml-quants.c).

// The four bytes of `v`, each masked with `mask`, as floats (byte 0 first).
fn bytes4(v: u32, mask: u32) -> vec4<f32> {
    return vec4<f32>(f32(v & mask), f32((v >> 8u) & mask), f32((v >> 16u) & mask), f32((v >> 24u) & mask));
}

// Bits 0..3 of `v` as floats.
fn bits4(v: u32) -> vec4<f32> {
    return vec4<f32>(f32(v & 1u), f32((v >> 1u) & 1u), f32((v >> 2u) & 1u), f32((v >> 3u) & 1u));
}

// Bytes as floats without shifts by amounts given in the shader: `unpack4x8unorm` is built in (CPU
// emulators implement it with immediate shifts, while a WGSL `>>` by a constant becomes a per-lane
// shift on SwiftShader's Subzero backend). unorm·255 is the byte to within an ulp, so types scale by 255
// in their header (dequantized values are then within a few ulps of the exact ones).

// The four bytes at the even byte offset `off`, each masked with `mask` and then xored with `flip`, as
// unorm floats (byte/255). A word-aligned offset is one load; one half-way also reads the next word.
fn unorm4_at(off: u32, mask: u32, flip: u32) -> vec4<f32> {
    let a = off >> 2u;
    if (ALIGNED == 1u) {
        return unpack4x8unorm((w[a] & mask) ^ flip);
    }
    // Half-way: the top half of word a and the bottom half of the next, joined as (next.lo, a.hi) so
    // that one unpack and a swizzle give the bytes in order.
    let lo = w[a];
    let half = (off & 2u) != 0u;
    let v = select(lo, (lo & 0xffff0000u) | (w[a + 1u] & 0xffffu), half);
    let u = unpack4x8unorm((v & mask) ^ flip);
    return select(u, u.zwxy, half);
}

fn hdr_f32(row: u32, g: u32) -> vec4<f32> {
    return vec4<f32>(0.0);
}

fn dq4_f32(row: u32, g: u32, i: u32, h: vec4<f32>) -> vec4<f32> {
    let o = row + g * 128u + 16u * i;
    return bitcast<vec4<f32>>(vec4<u32>(rw(o), rw(o + 4u), rw(o + 8u), rw(o + 12u)));
}

fn hdr_f16(row: u32, g: u32) -> vec4<f32> {
    return vec4<f32>(0.0);
}

fn dq4_f16(row: u32, g: u32, i: u32, h: vec4<f32>) -> vec4<f32> {
    let o = row + g * 64u + 8u * i;
    return vec4<f32>(unpack2x16float(rw(o)), unpack2x16float(rw(o + 4u)));
}

fn hdr_bf16(row: u32, g: u32) -> vec4<f32> {
    return vec4<f32>(0.0);
}

fn dq4_bf16(row: u32, g: u32, i: u32, h: vec4<f32>) -> vec4<f32> {
    let o = row + g * 64u + 8u * i;
    let a = rw(o);
    let b = rw(o + 4u);
    return bitcast<vec4<f32>>(vec4<u32>(a << 16u, a & 0xffff0000u, b << 16u, b & 0xffff0000u));
}

// `v >> 4` when `high`, else `v`.
fn hi_nibbles(v: u32, high: bool) -> u32 {
    return select(v, v >> 4u, high);
}

// Nibbles of the 16 quant bytes at `qs`: elements 0..15 are low nibbles, 16..31 high nibbles.
fn nib4(qs: u32, i: u32) -> vec4<f32> {
    return bytes4(hi_nibbles(rw(qs + 4u * (i & 3u)), i >= 4u), 15u);
}

// Q4_0/Q4_1 nibbles read in place as unorm: a low nibble q reads as q/255, a high one as 16·q/255, so
// the header holds 255·d and 255·d/16.
fn nib4_unorm(qs: u32, i: u32) -> vec4<f32> {
    return unorm4_at(qs + 4u * (i & 3u), select(0x0f0f0f0fu, 0xf0f0f0f0u, i >= 4u), 0u);
}

fn hdr_q4_0(row: u32, g: u32) -> vec4<f32> {
    let d = rf16(row + g * 18u);
    return vec4<f32>(d * 255.0, d * (255.0 / 16.0), d * 8.0, 0.0);
}

fn dq4_q4_0(row: u32, g: u32, i: u32, h: vec4<f32>) -> vec4<f32> {
    return nib4_unorm(row + g * 18u + 2u, i) * select(h.x, h.y, i >= 4u) - h.z;
}

fn hdr_q4_1(row: u32, g: u32) -> vec4<f32> {
    let dm = unpack2x16float(rw(row + g * 20u));
    return vec4<f32>(dm.x * 255.0, dm.x * (255.0 / 16.0), dm.y, 0.0);
}

fn dq4_q4_1(row: u32, g: u32, i: u32, h: vec4<f32>) -> vec4<f32> {
    return nib4_unorm(row + g * 20u + 4u, i) * select(h.x, h.y, i >= 4u) + h.z;
}

// 5th bits of Q5_0/Q5_1: bit j of the 32-bit `qh` belongs to element j.
fn qh4(h: u32, i: u32) -> vec4<f32> {
    return bits4(h >> (4u * i)) * 16.0; // i is a literal at every call site that matters (matvec)
}

fn hdr_q5_0(row: u32, g: u32) -> vec4<f32> {
    return vec4<f32>(rf16(row + g * 22u), 0.0, 0.0, 0.0);
}

fn dq4_q5_0(row: u32, g: u32, i: u32, h: vec4<f32>) -> vec4<f32> {
    let b = row + g * 22u;
    return (nib4(b + 6u, i) + qh4(rw(b + 2u), i) - 16.0) * h.x;
}

fn hdr_q5_1(row: u32, g: u32) -> vec4<f32> {
    return vec4<f32>(unpack2x16float(rw(row + g * 24u)), 0.0, 0.0);
}

fn dq4_q5_1(row: u32, g: u32, i: u32, h: vec4<f32>) -> vec4<f32> {
    let b = row + g * 24u;
    return (nib4(b + 8u, i) + qh4(rw(b + 4u), i)) * h.x + h.y;
}

// Q8_0 quants are signed: byte ^ 0x80 is q + 128, read as unorm (q + 128)/255.
fn hdr_q8_0(row: u32, g: u32) -> vec4<f32> {
    let d = rf16(row + g * 34u);
    return vec4<f32>(d * 255.0, d * 128.0, 0.0, 0.0);
}

fn dq4_q8_0(row: u32, g: u32, i: u32, h: vec4<f32>) -> vec4<f32> {
    return unorm4_at(row + g * 34u + 2u + 4u * i, 0xffffffffu, 0x80808080u) * h.x - h.y;
}

// 6-bit scale and min of sub-block j of a Q4_K/Q5_K block whose 12 scale bytes start at `s`.
fn scale_min_k4(s: u32, j: u32) -> vec2<f32> {
    if (j < 4u) {
        return vec2<f32>(f32(rb(s + j) & 63u), f32(rb(s + j + 4u) & 63u));
    }
    let sc = (rb(s + j + 4u) & 15u) | ((rb(s + j - 4u) >> 6u) << 4u);
    let mn = (rb(s + j + 4u) >> 4u) | ((rb(s + j) >> 6u) << 4u);
    return vec2<f32>(f32(sc), f32(mn));
}

// Q4_K sub-blocks come in pairs sharing 32 quant bytes: the even one takes low nibbles, the odd one high
// nibbles, read in place as unorm (the header folds in 255 or 255/16).
fn hdr_q4_k(row: u32, g: u32) -> vec4<f32> {
    let b = row + (g >> 3u) * 144u;
    let dm = unpack2x16float(rw(b));
    let sm = scale_min_k4(b + 4u, g & 7u);
    let to_q = select(255.0, 255.0 / 16.0, (g & 1u) == 1u);
    return vec4<f32>(dm.x * sm.x * to_q, dm.y * sm.y, 0.0, 0.0);
}

fn dq4_q4_k(row: u32, g: u32, i: u32, h: vec4<f32>) -> vec4<f32> {
    let sub = g & 7u;
    let off = row + (g >> 3u) * 144u + 16u + 32u * (sub >> 1u) + 4u * i;
    return unorm4_at(off, select(0x0f0f0f0fu, 0xf0f0f0f0u, (sub & 1u) == 1u), 0u) * h.x - h.y;
}

fn hdr_q5_k(row: u32, g: u32) -> vec4<f32> {
    let b = row + (g >> 3u) * 176u;
    let dm = unpack2x16float(rw(b));
    let sm = scale_min_k4(b + 4u, g & 7u);
    return vec4<f32>(dm.x * sm.x, dm.y * sm.y, 0.0, 0.0);
}

fn dq4_q5_k(row: u32, g: u32, i: u32, h: vec4<f32>) -> vec4<f32> {
    let b = row + (g >> 3u) * 176u;
    let sub = g & 7u;
    let q = bytes4(hi_nibbles(rw(b + 48u + 32u * (sub >> 1u) + 4u * i), (sub & 1u) == 1u), 15u);
    let hb = bytes4(rw(b + 16u + 4u * i) >> sub, 1u) * 16.0;
    return (q + hb) * h.x - h.y;
}

// Q6_K: sub-block `sub` = 4n + m of a block takes the low (m < 2) or high nibbles of 32 `ql` bytes and
// bits 2m, 2m+1 of 32 `qh` bytes, both read in place as unorm; the header holds the two 16-element
// scales and the factors that turn each unorm into its share of the 6-bit code.
fn hdr_q6_k(row: u32, g: u32) -> vec4<f32> {
    let b = row + (g >> 3u) * 210u;
    let sub = g & 7u;
    let m = sub & 3u;
    let s = b + 192u + 8u * (sub >> 2u) + 2u * m;
    let d = rf16(b + 208u);
    let lo = select(255.0, 255.0 / 16.0, m >= 2u);
    let hi = select(select(255.0 * 16.0, 255.0 * 4.0, m == 1u), select(255.0, 255.0 / 4.0, m == 3u), m >= 2u);
    return vec4<f32>(d * sx8(rb(s)), d * sx8(rb(s + 1u)), lo, hi);
}

fn dq4_q6_k(row: u32, g: u32, i: u32, h: vec4<f32>) -> vec4<f32> {
    let b = row + (g >> 3u) * 210u;
    let sub = g & 7u;
    let n = sub >> 2u;
    let m = sub & 3u;
    let lo = unorm4_at(b + 64u * n + 32u * (m & 1u) + 4u * i, select(0x0f0f0f0fu, 0xf0f0f0f0u, m >= 2u), 0u);
    let hi_mask = select(select(0x03030303u, 0x0c0c0c0cu, m == 1u), select(0x30303030u, 0xc0c0c0c0u, m == 3u),
                         m >= 2u);
    let hi = unorm4_at(b + 128u + 32u * n + 4u * i, hi_mask, 0u);
    return (lo * h.z + hi * h.w - 32.0) * select(h.y, h.x, i < 4u);
}

fn hdr_q2_k(row: u32, g: u32) -> vec4<f32> {
    let b = row + (g >> 3u) * 84u;
    let sub = g & 7u;
    let s = b + 8u * (sub >> 2u) + 2u * (sub & 3u);
    let dm = unpack2x16float(rw(b + 80u));
    let s0 = rb(s);
    let s1 = rb(s + 1u);
    return vec4<f32>(dm.x * f32(s0 & 15u), dm.y * f32(s0 >> 4u), dm.x * f32(s1 & 15u), dm.y * f32(s1 >> 4u));
}

fn dq4_q2_k(row: u32, g: u32, i: u32, h: vec4<f32>) -> vec4<f32> {
    let sub = g & 7u;
    let q = bytes4(rw(row + (g >> 3u) * 84u + 16u + 32u * (sub >> 2u) + 4u * i) >> (2u * (sub & 3u)), 3u);
    if (i < 4u) { return q * h.x - h.y; }
    return q * h.z - h.w;
}

fn q3k_scale(sb: u32, i: u32) -> f32 {
    var lo: u32;
    if (i < 8u) { lo = rb(sb + i) & 15u; } else { lo = rb(sb + i - 8u) >> 4u; }
    let hi = (rb(sb + 8u + (i & 3u)) >> (2u * (i >> 2u))) & 3u;
    return f32(i32(lo | (hi << 4u)) - 32);
}

fn hdr_q3_k(row: u32, g: u32) -> vec4<f32> {
    let b = row + (g >> 3u) * 110u;
    let sub = g & 7u;
    let d = rf16(b + 108u);
    let si = 8u * (sub >> 2u) + 2u * (sub & 3u);
    return vec4<f32>(d * q3k_scale(b + 96u, si), d * q3k_scale(b + 96u, si + 1u), 0.0, 0.0);
}

fn dq4_q3_k(row: u32, g: u32, i: u32, h: vec4<f32>) -> vec4<f32> {
    let b = row + (g >> 3u) * 110u;
    let sub = g & 7u;
    let n = sub >> 2u;
    let jj = sub & 3u;
    let q = bytes4(rw(b + 32u + 32u * n + 4u * i) >> (2u * jj), 3u);
    let hm = bytes4(rw(b + 4u * i) >> (4u * n + jj), 1u);
    return (q - 4.0 + 4.0 * hm) * select(h.y, h.x, i < 4u);
}
