//! RMSNorm (`shaders/rmsnorm.wgsl`).

use crate::op::{Grid, Op};
use crate::uniforms::RmsNormParams;
use crate::{Gpu, GpuError};

/// What an RMSNorm launch normalizes.
#[derive(Debug, Clone, Copy)]
pub struct Rms {
    /// Elements per row.
    pub n: u32,
    /// Epsilon inside the square root.
    pub eps: f32,
    /// Only the call's last row, written to row 0 of the output (the logits need nothing else).
    pub last_only: bool,
}

/// RMSNorm of the token rows of `x` into `y`.
///
/// # Errors
/// [`GpuError`] if the pipeline cannot be built.
pub fn build(
    gpu: &Gpu,
    x: &wgpu::Buffer,
    weight: &wgpu::Buffer,
    y: &wgpu::Buffer,
    step: &wgpu::Buffer,
    r: Rms,
) -> Result<Op, GpuError> {
    let p = gpu.pipeline("rmsnorm.wgsl", "main", &[])?;
    let params = gpu.uniform_of(&RmsNormParams {
        n: r.n,
        last_only: r.last_only as u32,
        eps: r.eps,
        pad: 0,
    });
    Ok(Op {
        bind_group: gpu.bind(&p, &[x, weight, y, &params, step]),
        pipeline: p,
        grid: if r.last_only {
            Grid::Fixed([1, 1, 1])
        } else {
            Grid::PerToken
        },
    })
}
