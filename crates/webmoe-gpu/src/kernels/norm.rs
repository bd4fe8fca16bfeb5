//! RMSNorm (`shaders/rmsnorm.wgsl`).

use crate::op::{Grid, Op};
use crate::{Gpu, GpuError};

/// RMSNorm of every token row of `x` (n elements) into `y`; with `last_only`, only the call's last row,
/// written to row 0 of `y`.
///
/// # Errors
/// [`GpuError`] if the pipeline cannot be built.
pub fn build(
    gpu: &Gpu,
    x: &wgpu::Buffer,
    weight: &wgpu::Buffer,
    y: &wgpu::Buffer,
    step: &wgpu::Buffer,
    n: u32,
    eps: f32,
    last_only: bool,
) -> Result<Op, GpuError> {
    let p = gpu.pipeline("rmsnorm.wgsl", "main", &[])?;
    let params = gpu.uniform(&[n, last_only as u32, eps.to_bits(), 0]);
    Ok(Op {
        bind_group: gpu.bind(&p, &[x, weight, y, &params, step]),
        pipeline: p,
        grid: if last_only {
            Grid::Fixed([1, 1, 1])
        } else {
            Grid::PerToken
        },
    })
}
