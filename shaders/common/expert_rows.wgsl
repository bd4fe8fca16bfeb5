// The rows of one decode invocation of the expert mat-vecs (matvec_experts.wgsl,
// matvec_experts_glu.wgsl): rows r and r + 1 of the expert chosen for (token t, slot j), as byte offsets
// inside this shard. A row outside the shard (or past the expert's end) reads a row inside it instead
// and is flagged, so its result is not written. Needs `p` (expert_params.wgsl), `ids` and X_PER_SLOT.

struct ExpertRows {
    row0: u32,   // byte offset of row r in this shard
    row1: u32,   // byte offset of row r + 1
    in0: bool,   // row r is in this shard
    in1: bool,   // row r + 1 is in this shard and in the expert
    slot: u32,   // t * K + j
    xb: u32,     // first vec4 of the input row
}

fn expert_rows(r: u32, j: u32, t: u32) -> ExpertRows {
    let slot = t * p.n_used + j;
    let first = ids[slot] * p.rows_per_expert;
    let r1 = min(r + 1u, p.rows_per_expert - 1u);
    let s0 = first + r;
    let s1 = first + r1;
    let in0 = s0 >= p.shard_row0 && s0 < p.shard_row0 + p.shard_rows;
    let in1 = s1 >= p.shard_row0 && s1 < p.shard_row0 + p.shard_rows;
    var l0 = s0 - p.shard_row0;
    var l1 = s1 - p.shard_row0;
    if (!in0) { l0 = l1; }
    if (!in1) { l1 = l0; }
    var xrow = t;
    if (X_PER_SLOT == 1u) { xrow = slot; }
    return ExpertRows(l0 * p.row_bytes, l1 * p.row_bytes, in0, in1 && r + 1u < p.rows_per_expert, slot,
                      (xrow * p.x_stride) >> 2u);
}
