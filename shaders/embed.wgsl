// op: x[t, :] = dequant(E[ids[t], :]) — token embedding lookup from a quantized table (one shard of rows).
// bindings: 0 w (storage, read, raw bytes), 1 ids (storage, read, u32), 2 x (storage, read_write, f32),
//           3 params (uniform), 4 step (uniform).
// dispatch: (ceil(hidden / 32 / 64), n_tokens, 1); one thread per 32-element group. Tokens whose id is
// outside this shard's rows are skipped (another shard's dispatch writes them).
// defines: HDR, DQ4.

#include "common/bytes.wgsl"
#include "common/dequant.wgsl"
#include "common/step.wgsl"

struct Params {
    hidden: u32,
    row_bytes: u32,
    row0: u32,   // first token id held by this shard
    n_rows: u32, // ids held by this shard
}

@group(0) @binding(0) var<storage, read> w: array<u32>;
@group(0) @binding(1) var<storage, read> ids: array<u32>;
@group(0) @binding(2) var<storage, read_write> x: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;
@group(0) @binding(4) var<uniform> step: Step;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let g = gid.x;
    let t = gid.y;
    if (g >= p.hidden / 32u || t >= step.n_tokens) { return; }
    let id = ids[t];
    if (id < p.row0 || id >= p.row0 + p.n_rows) { return; }
    let o = t * p.hidden + g * 32u;
    let row = (id - p.row0) * p.row_bytes;
    let h = HDR(row, g);
    for (var i = 0u; i < 8u; i++) {
        let v = DQ4(row, g, i, h);
        x[o + 4u * i] = v.x;
        x[o + 4u * i + 1u] = v.y;
        x[o + 4u * i + 2u] = v.z;
        x[o + 4u * i + 3u] = v.w;
    }
}
