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
