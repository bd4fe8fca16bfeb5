// Byte-address helpers over a weight buffer bound as `w: array<u32>` (GGUF bytes as uploaded).
// Blocks are not always 4-byte aligned (Q4_0: 18 bytes, Q8_0: 34), so reads join two words when needed.
// The including shader defines ALIGNED (1u when every block of every row starts on a word boundary, so
// that the single-load path is chosen at compile time).

fn rw(off: u32) -> u32 {
    if (ALIGNED == 1u) {
        return w[off >> 2u];
    }
    let a = off >> 2u;
    let s = (off & 3u) * 8u;
    if (s == 0u) {
        return w[a];
    }
    return (w[a] >> s) | (w[a + 1u] << (32u - s));
}

fn rb(off: u32) -> u32 {
    return (w[off >> 2u] >> ((off & 3u) * 8u)) & 0xffu;
}

fn rh(off: u32) -> u32 {
    return rw(off) & 0xffffu;
}

fn rf16(off: u32) -> f32 {
    return unpack2x16float(rh(off)).x;
}

// Sign-extends the 8-bit value in the low byte of `b`.
fn sx8(b: u32) -> f32 {
    return f32(i32(b << 24u) >> 24u);
}
