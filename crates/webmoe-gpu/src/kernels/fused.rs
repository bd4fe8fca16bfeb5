//! Fused decode launches for real GPUs (the `fused` variant): the attention input projections
//! (`shaders/matvec_qkv.wgsl`) and the dense SwiGLU input (`shaders/matvec_glu.wgsl`), each with the
//! RMSNorm before it folded in. A dense layer then decodes in 8 launches instead of 14.

use super::{aligned, dq4_name, groups, hdr_name, subgroup_defines};
use crate::op::{Grid, Op};
use crate::uniforms::{GluParams, QkvParams};
use crate::weights::GpuTensor;
use crate::{Gpu, GpuError};

/// Threads per workgroup of the fused kernels (`common/workgroup_sum.wgsl` sums 64).
const WG: u32 = 64;

/// The folded RMSNorm: its weight and epsilon.
#[derive(Clone, Copy)]
pub struct FoldedNorm<'a> {
    /// The norm's weight (f32, one per input element).
    pub weight: &'a wgpu::Buffer,
    /// Epsilon inside the square root.
    pub eps: f32,
}

/// Whether the fused kernels can read `tensors` with input rows of `k` elements: each in one binding,
/// rows of `k` (a multiple of 32), and enough storage bindings per stage for the q/k/v kernel (8).
pub fn can_fuse(gpu: &Gpu, tensors: &[&GpuTensor], k: u64) -> bool {
    gpu.variants.fused
        && k.is_multiple_of(32)
        && gpu.limits.max_storage_buffers_per_shader_stage >= 8
        && tensors
            .iter()
            .all(|t| t.shards.len() == 1 && t.row_len() == k)
}

/// The type defines of weight binding `suffix` (`""` for `w`, `"_w_k"` ...).
fn type_defines(
    keys: [&'static str; 3],
    binding: &str,
    t: &GpuTensor,
) -> [(&'static str, String); 3] {
    [
        (keys[0], format!("{}{binding}", hdr_name(t.ty))),
        (keys[1], format!("{}{binding}", dq4_name(t.ty))),
        (keys[2], aligned(t.ty, t.row_bytes)),
    ]
}

fn lane_defines(gpu: &Gpu) -> Vec<(&'static str, String)> {
    let mut d = vec![
        ("WG", format!("{WG}u")),
        ("LANES", format!("{}u", gpu.tuning.lanes.min(WG))),
    ];
    d.extend(subgroup_defines(gpu));
    d
}

fn rows_per_workgroup(gpu: &Gpu) -> u64 {
    (WG / gpu.tuning.lanes.min(WG)) as u64
}

/// `q, k, v = rmsnorm(x) · {Wq, Wk, Wv}ᵀ` for one token per dispatch row, in one launch.
///
/// # Errors
/// [`GpuError::Invalid`] when the tensors cannot be fused ([`can_fuse`]); pipeline errors.
pub fn qkv(
    gpu: &Gpu,
    [wq, wk, wv]: [&GpuTensor; 3],
    norm: FoldedNorm,
    x: &wgpu::Buffer,
    [q, k, v]: [&wgpu::Buffer; 3],
) -> Result<Op, GpuError> {
    let hidden = wq.row_len();
    if !can_fuse(gpu, &[wq, wk, wv], hidden) || wk.n_rows() != wv.n_rows() {
        return Err(GpuError::Invalid(
            "the q, k and v projections cannot be fused here".into(),
        ));
    }
    let mut defines = Vec::new();
    defines.extend(type_defines(["HDR", "DQ4", "ALIGNED"], "", wq));
    defines.extend(type_defines(
        ["HDR_w_k", "DQ4_w_k", "ALIGNED_w_k"],
        "_w_k",
        wk,
    ));
    defines.extend(type_defines(
        ["HDR_w_v", "DQ4_w_v", "ALIGNED_w_v"],
        "_w_v",
        wv,
    ));
    defines.extend(lane_defines(gpu));
    let pipeline = gpu.pipeline("matvec_qkv.wgsl", "main", &defines)?;
    let per = rows_per_workgroup(gpu);
    let (gq, gkv) = (groups(wq.n_rows(), per), groups(wk.n_rows(), per));
    let params = gpu.uniform_of(&QkvParams {
        k: hidden as u32,
        eps: norm.eps,
        q_rows: wq.n_rows() as u32,
        kv_rows: wk.n_rows() as u32,
        q_row_bytes: wq.row_bytes as u32,
        k_row_bytes: wk.row_bytes as u32,
        v_row_bytes: wv.row_bytes as u32,
        q_groups: gq,
        kv_groups: gkv,
    });
    let buffers = [
        &wq.shards[0].buffer,
        x,
        q,
        &params,
        norm.weight,
        &wk.shards[0].buffer,
        &wv.shards[0].buffer,
        k,
        v,
    ];
    Ok(Op {
        bind_group: gpu.bind(&pipeline, &buffers),
        pipeline,
        grid: Grid::Tokens(gq + 2 * gkv),
    })
}

/// `y = silu(rmsnorm(x) · Gᵀ) · (rmsnorm(x) · Uᵀ)` for one token per dispatch row, in one launch.
///
/// # Errors
/// [`GpuError::Invalid`] when the tensors cannot be fused ([`can_fuse`]); pipeline errors.
pub fn glu(
    gpu: &Gpu,
    [gate, up]: [&GpuTensor; 2],
    norm: FoldedNorm,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
) -> Result<Op, GpuError> {
    let hidden = gate.row_len();
    if !can_fuse(gpu, &[gate, up], hidden) || gate.n_rows() != up.n_rows() {
        return Err(GpuError::Invalid(
            "the gate and up projections cannot be fused here".into(),
        ));
    }
    let mut defines = Vec::new();
    defines.extend(type_defines(["HDR", "DQ4", "ALIGNED"], "", gate));
    defines.extend(type_defines(
        ["HDR_w_up", "DQ4_w_up", "ALIGNED_w_up"],
        "_w_up",
        up,
    ));
    defines.extend(lane_defines(gpu));
    let pipeline = gpu.pipeline("matvec_glu.wgsl", "main", &defines)?;
    let params = gpu.uniform_of(&GluParams {
        k: hidden as u32,
        eps: norm.eps,
        rows: gate.n_rows() as u32,
        g_row_bytes: gate.row_bytes as u32,
        u_row_bytes: up.row_bytes as u32,
        ..Default::default()
    });
    let buffers = [
        &gate.shards[0].buffer,
        x,
        y,
        &params,
        norm.weight,
        &up.shards[0].buffer,
    ];
    Ok(Op {
        bind_group: gpu.bind(&pipeline, &buffers),
        pipeline,
        grid: Grid::Tokens(groups(gate.n_rows(), rows_per_workgroup(gpu))),
    })
}
