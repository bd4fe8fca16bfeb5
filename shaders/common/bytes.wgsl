// Byte-address helpers over a weight buffer bound as `w: array<u32>` (GGUF bytes as uploaded).
// Blocks are not always 4-byte aligned (Q4_0: 18 bytes, Q8_0: 34), so reads join two words when needed;
// `rw` offsets must be even (true of every ggml block field).
// The including shader defines ALIGNED (1u when every block of every row starts on a word boundary, so
// that the single-load path is chosen at compile time).

fn rw(off: u32) -> u32 {
    if (ALIGNED == 1u) {
        return w[off >> 2u];
    }
    // Every block and field of every type starts on an even byte, so a word is either aligned or
    // starts half-way. A select, not a branch; the common types' quants avoid these shifts altogether
    // (SwiftShader runs every shift lane by lane: see unorm4_at in dequant.wgsl).
    let a = off >> 2u;
    let lo = w[a];
    return select(lo, (lo >> 16u) | (w[a + 1u] << 16u), (off & 2u) != 0u);
}

fn rb(off: u32) -> u32 {
    return (w[off >> 2u] >> ((off & 3u) * 8u)) & 0xffu;
}

// The f16 at the even byte offset `off`: the half is picked with a select, without shifting.
fn rf16(off: u32) -> f32 {
    let v = unpack2x16float(w[off >> 2u]);
    return select(v.x, v.y, (off & 2u) != 0u);
}

// Sign-extends the 8-bit value in the low byte of `b`.
fn sx8(b: u32) -> f32 {
    return f32(i32(b << 24u) >> 24u);
}
