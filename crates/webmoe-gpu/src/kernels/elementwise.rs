//! Elementwise kernels (`shaders/elementwise.wgsl`): SwiGLU and bias add.

use super::groups;
use crate::op::{Grid, Op};
use crate::uniforms::ElementwiseParams;
use crate::{Gpu, GpuError};

/// Which elementwise op.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// `a = silu(a) * b`.
    SwiGlu,
    /// `a += b` (b broadcast over token rows).
    AddBias,
}

/// The launch of `kind` over rows of `n` elements of `a`.
///
/// # Errors
/// [`GpuError`] if the pipeline cannot be built.
pub fn build(
    gpu: &Gpu,
    kind: Kind,
    a: &wgpu::Buffer,
    b: &wgpu::Buffer,
    step: &wgpu::Buffer,
    n: u32,
) -> Result<Op, GpuError> {
    let entry = match kind {
        Kind::SwiGlu => "swiglu",
        Kind::AddBias => "add_bias",
    };
    let p = gpu.pipeline("elementwise.wgsl", entry, &[])?;
    let params = gpu.uniform_of(&ElementwiseParams {
        n,
        ..Default::default()
    });
    Ok(Op {
        bind_group: gpu.bind(&p, &[a, b, &params, step]),
        pipeline: p,
        grid: Grid::Tokens(groups(n as u64, 64)),
    })
}
