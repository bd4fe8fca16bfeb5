// Parameters of attention.wgsl and attention_reduce.wgsl (one uniform serves both).
struct Params {
    n_heads: u32,
    n_kv_heads: u32,
    head_dim: u32,
    max_pos: u32,
    scale: f32,
    chunk: u32, // chunked attention size (0: full causal)
    pad1: u32,
    pad2: u32,
}

// The first key the query at `pos` sees: 0, or with chunked attention its chunk's start. (Shaders that
// include this bind their Params as `p`.)
fn first_key(pos: u32) -> u32 {
    if (p.chunk > 0u) { return pos / p.chunk * p.chunk; }
    return 0u;
}

// Cache slot `s` (< 2·max_pos) reduced once by the ring length.
fn wrap(s: u32) -> u32 {
    return select(s, s - p.max_pos, s >= p.max_pos);
}
