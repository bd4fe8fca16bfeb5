//! Token embedding lookup (`shaders/embed.wgsl`), one launch per shard of the table.

use super::{aligned, dq4_name, groups, hdr_name};
use crate::op::{Grid, Op};
use crate::uniforms::EmbedParams;
use crate::weights::GpuTensor;
use crate::{Gpu, GpuError};

/// Launches that write `x[t] = table[ids[t]]` for every token of the call.
///
/// # Errors
/// [`GpuError`] if the pipeline cannot be built.
pub fn build(
    gpu: &Gpu,
    table: &GpuTensor,
    ids: &wgpu::Buffer,
    x: &wgpu::Buffer,
    step: &wgpu::Buffer,
) -> Result<Vec<Op>, GpuError> {
    let hidden = table.row_len() as u32;
    let p = gpu.pipeline(
        "embed.wgsl",
        "main",
        &[
            ("HDR", hdr_name(table.ty)),
            ("DQ4", dq4_name(table.ty)),
            ("ALIGNED", aligned(table.ty, table.row_bytes)),
        ],
    )?;
    Ok(table
        .shards
        .iter()
        .map(|s| {
            let params = gpu.uniform_of(&EmbedParams {
                hidden,
                row_bytes: table.row_bytes as u32,
                row0: s.row0 as u32,
                n_rows: s.n_rows as u32,
            });
            Op {
                bind_group: gpu.bind(&p, &[&s.buffer, ids, x, &params, step]),
                pipeline: p.clone(),
                grid: Grid::Tokens(groups(hidden as u64 / 32, 64)),
            }
        })
        .collect())
}
