//! RoPE in place on q and k (`shaders/rope.wgsl`), with cos/sin tables built on the CPU.

use super::groups;
use crate::op::{Grid, Op};
use crate::uniforms::RopeParams;
use crate::{Gpu, GpuError};
use webmoe_core::model::{ModelConfig, RopeStyle};
use webmoe_core::rope::rope_tables;

/// Uploads the cos/sin tables for positions `0..max_pos` (cos table, then sin table).
pub fn tables(gpu: &Gpu, c: &ModelConfig, max_pos: usize) -> wgpu::Buffer {
    let (mut cos, sin) = rope_tables(c, 0, max_pos);
    cos.extend_from_slice(&sin);
    gpu.storage_init("rope tables", bytemuck::cast_slice(&cos))
}

/// The RoPE launch for one layer's q and k, pairing dimensions by `style`.
///
/// # Errors
/// [`GpuError`] if the pipeline cannot be built.
#[allow(clippy::too_many_arguments)]
pub fn build(
    gpu: &Gpu,
    c: &ModelConfig,
    style: RopeStyle,
    q: &wgpu::Buffer,
    k: &wgpu::Buffer,
    tables: &wgpu::Buffer,
    step: &wgpu::Buffer,
    max_pos: usize,
) -> Result<Op, GpuError> {
    let p = gpu.pipeline("rope.wgsl", "main", &[])?;
    let half = c.rope_dim as u32 / 2;
    let params = gpu.uniform_of(&RopeParams {
        n_heads: c.n_heads as u32,
        n_kv_heads: c.n_kv_heads as u32,
        head_dim: c.head_dim as u32,
        rope_dim: c.rope_dim as u32,
        neox: (style == RopeStyle::NeoX) as u32,
        table_len: max_pos as u32 * half,
        ..Default::default()
    });
    let pairs = (c.n_heads + c.n_kv_heads) as u64 * half as u64;
    Ok(Op {
        bind_group: gpu.bind(&p, &[q, k, tables, &params, step]),
        pipeline: p,
        grid: Grid::Tokens(groups(pairs, 64)),
    })
}
