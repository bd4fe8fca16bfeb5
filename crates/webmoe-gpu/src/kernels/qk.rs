//! Query/key adjustments between the projections and attention (`shaders/qk_norm.wgsl`): the q/k norms
//! of Qwen3 (per head), OLMoE (full width) and Llama 4 (weightless, after RoPE), and Llama 4's
//! attention temperature tuning.

use crate::op::{Grid, Op};
use crate::uniforms::QkNormParams;
use crate::{Gpu, GpuError};
use webmoe_core::model::AttnTemperature;

/// Which norm a launch applies.
#[derive(Debug, Clone, Copy)]
pub enum Norm<'a> {
    /// No norm (temperature only).
    None,
    /// Weighted RMSNorm with these weights for q and k.
    Weighted(&'a wgpu::Buffer, &'a wgpu::Buffer),
    /// Weightless RMS norm.
    Unit,
}

/// Row shapes of q and k: `rows` rows of `len` elements per token.
#[derive(Debug, Clone, Copy)]
pub struct Rows {
    /// Query rows per token.
    pub q_rows: usize,
    /// Query row length.
    pub q_len: usize,
    /// Key rows per token.
    pub k_rows: usize,
    /// Key row length.
    pub k_len: usize,
}

/// The in-place launch on `q` and `k`.
///
/// # Errors
/// [`GpuError`] if the pipeline cannot be built.
#[allow(clippy::too_many_arguments)]
pub fn build(
    gpu: &Gpu,
    q: &wgpu::Buffer,
    k: &wgpu::Buffer,
    rows: Rows,
    norm: Norm,
    eps: f32,
    temperature: Option<AttnTemperature>,
    step: &wgpu::Buffer,
) -> Result<Op, GpuError> {
    let p = gpu.pipeline("qk_norm.wgsl", "main", &[])?;
    let (mode, qw, kw) = match norm {
        Norm::None => (0, q, k),
        Norm::Weighted(qw, kw) => (1, qw, kw),
        Norm::Unit => (2, q, k),
    };
    // Unused weight slots are bound to a separate dummy so no buffer is bound twice.
    let dummy = gpu.storage("qk dummy weight", 4);
    let (qw, kw) = if mode == 1 {
        (qw, kw)
    } else {
        (&dummy, &dummy)
    };
    let t = temperature.unwrap_or(AttnTemperature {
        floor_scale: 0.0,
        scale: 0.0,
    });
    let params = gpu.uniform_of(&QkNormParams {
        q_rows: rows.q_rows as u32,
        k_rows: rows.k_rows as u32,
        q_len: rows.q_len as u32,
        k_len: rows.k_len as u32,
        mode,
        eps,
        floor_scale: t.floor_scale,
        attn_scale: t.scale,
    });
    Ok(Op {
        bind_group: gpu.bind(&p, &[q, k, qw, kw, &params, step]),
        pipeline: p,
        grid: Grid::Tokens((rows.q_rows + rows.k_rows) as u32),
    })
}
