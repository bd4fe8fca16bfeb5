// op: grouped expert mat-mul for prefill. Expert e owns the slots sorted[offsets[e] .. offsets[e+1]]
// (moe_group.wgsl); for each such slot s (token t = s / K) and each of the expert's R rows r:
// y[s*R + r] = Σ_k x[xrow, k] · W[e*R + r, k], xrow = t (X_PER_SLOT = 0) or s (X_PER_SLOT = 1).
// Register-tiled like matmul.wgsl: a thread owns ROWS rows × SLOTS slots of one expert, so each expert's
// weights are read once per SLOTS of its slots instead of once per slot. Experts with no slot cost one
// early-exiting workgroup per tile. A tensor split across bindings gets one launch per shard; rows
// outside the shard are skipped.
// bindings: 0 w (storage, read, raw bytes as u32), 1 x (storage, read, vec4), 2 y (storage, read_write),
//           3 offsets (storage, read, u32 [E + 1]), 4 sorted (storage, read, u32 [T*K]), 5 params.
// dispatch: (ceil(R / (64 * ROWS)), E, ceil(n_tokens / SLOTS)); an expert has at most one slot per token.
// defines: HDR, DQ4, ALIGNED (as matvec.wgsl), X_PER_SLOT (0/1).

#include "common/bytes.wgsl"
#include "common/dequant.wgsl"

#include "common/expert_params.wgsl"

@group(0) @binding(0) var<storage, read> w: array<u32>;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read> offsets: array<u32>;
@group(0) @binding(4) var<storage, read> sorted: array<u32>;
@group(0) @binding(5) var<uniform> p: Params;

const ROWS: u32 = 4u;
const SLOTS: u32 = 4u;

// Byte offset of expert row r (clamped into the expert) inside this shard, and whether it is there.
fn row_at(e: u32, r: u32) -> vec2<u32> {
    let s = e * p.rows_per_expert + min(r, p.rows_per_expert - 1u);
    let inside = s >= p.shard_row0 && s < p.shard_row0 + p.shard_rows && r < p.rows_per_expert;
    let local = clamp(s, p.shard_row0, p.shard_row0 + p.shard_rows - 1u) - p.shard_row0;
    return vec2<u32>(local * p.row_bytes, u32(inside));
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let e = gid.y;
    let r0 = gid.x * ROWS;
    let base = offsets[e];
    let n_e = offsets[e + 1u] - base;
    let i0 = gid.z * SLOTS;
    if (i0 >= n_e || r0 >= p.rows_per_expert) { return; }
    let first = e * p.rows_per_expert + r0;
    if (first + ROWS <= p.shard_row0 || first >= p.shard_row0 + p.shard_rows) { return; }
    let q0 = row_at(e, r0);
    let q1 = row_at(e, r0 + 1u);
    let q2 = row_at(e, r0 + 2u);
    let q3 = row_at(e, r0 + 3u);
    // Slots past the expert's end repeat its last slot (their results are not written).
    let last = n_e - 1u;
    let s0 = sorted[base + i0];
    let s1 = sorted[base + min(i0 + 1u, last)];
    let s2 = sorted[base + min(i0 + 2u, last)];
    let s3 = sorted[base + min(i0 + 3u, last)];
    var x0 = s0 / p.n_used;
    var x1 = s1 / p.n_used;
    var x2 = s2 / p.n_used;
    var x3 = s3 / p.n_used;
    if (X_PER_SLOT == 1u) { x0 = s0; x1 = s1; x2 = s2; x3 = s3; }
    let xs = p.x_stride / 4u;
    let xb = vec4<u32>(x0, x1, x2, x3) * xs;
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
    for (var g = 0u; g < p.k / 32u; g++) {
        let h0 = HDR(q0.x, g);
        let h1 = HDR(q1.x, g);
        let h2 = HDR(q2.x, g);
        let h3 = HDR(q3.x, g);
        for (var i = 0u; i < 8u; i++) {
            let o = g * 8u + i;
            let v0 = x[xb.x + o];
            let v1 = x[xb.y + o];
            let v2 = x[xb.z + o];
            let v3 = x[xb.w + o];
            let w0 = DQ4(q0.x, g, i, h0);
            let w1 = DQ4(q1.x, g, i, h1);
            let w2 = DQ4(q2.x, g, i, h2);
            let w3 = DQ4(q3.x, g, i, h3);
            a0 += vec4<f32>(dot(w0, v0), dot(w0, v1), dot(w0, v2), dot(w0, v3));
            a1 += vec4<f32>(dot(w1, v0), dot(w1, v1), dot(w1, v2), dot(w1, v3));
            a2 += vec4<f32>(dot(w2, v0), dot(w2, v1), dot(w2, v2), dot(w2, v3));
            a3 += vec4<f32>(dot(w3, v0), dot(w3, v1), dot(w3, v2), dot(w3, v3));
        }
    }
    let acc = mat4x4<f32>(a0, a1, a2, a3);
    let inside = vec4<u32>(q0.y, q1.y, q2.y, q3.y);
    let slots = vec4<u32>(s0, s1, s2, s3);
    for (var j = 0u; j < ROWS; j++) {
        for (var t = 0u; t < SLOTS; t++) {
            if (inside[j] == 1u && i0 + t < n_e) {
                y[slots[t] * p.rows_per_expert + r0 + j] = acc[j][t];
            }
        }
    }
}
