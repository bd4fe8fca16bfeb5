// Parameters of the expert kernels (matvec_experts.wgsl, matmul_experts.wgsl), one uniform per shard of
// the stacked expert tensor.
struct Params {
    k: u32,               // row length (elements)
    rows_per_expert: u32, // R
    row_bytes: u32,
    shard_row0: u32,      // first stacked row in this shard
    shard_rows: u32,
    n_used: u32,          // K
    x_stride: u32,        // elements per x row
    pad: u32,
}
