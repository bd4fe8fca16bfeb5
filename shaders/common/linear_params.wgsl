// Parameters of the linear-layer kernels (matvec.wgsl, matmul.wgsl), one uniform per weight shard.
struct Params {
    k: u32,          // row length (elements)
    n_rows: u32,     // rows in this shard
    row_bytes: u32,  // bytes per row
    out_row0: u32,   // first output row of this shard
    out_stride: u32, // elements per output token row
    x_stride: u32,   // elements per input token row
    x_offset: u32,   // first input element
    y_offset: u32,   // first output element
}
