//! Mixture-of-Experts launches: router top-k (`shaders/moe_route.wgsl`), expert mat-vecs that read the
//! chosen expert ids from a GPU buffer (`shaders/matvec_experts.wgsl`), and the input scaling / weighted
//! combine at the ends of the layer (`shaders/moe_combine.wgsl`). Nothing is read back: a layer is
//! route → (scale input) → gate, up → SwiGLU → down → combine, all on the GPU.

use super::{aligned, dq4_name, groups, hdr_name};
use crate::op::{Grid, Op};
use crate::uniforms::{ExpertParams, MoeCombineParams, MoeGroupParams};
use crate::weights::{GpuTensor, Shard};
use crate::{Gpu, GpuError};
use webmoe_core::moe::Routing;

/// Most experts the router kernel handles.
pub const MAX_EXPERTS: usize = 256;
/// Most experts per token the router kernel handles.
pub const MAX_USED: usize = 8;

/// The routing buffers every launch of a MoE layer shares.
#[derive(Clone, Copy)]
pub struct Routed<'a> {
    /// Chosen expert ids, u32 `[T, k]`.
    pub ids: &'a wgpu::Buffer,
    /// Their weights, f32 `[T, k]`.
    pub weights: &'a wgpu::Buffer,
    /// The step uniform (token count).
    pub step: &'a wgpu::Buffer,
    /// Experts per token k.
    pub k: usize,
}

/// The router top-k launch: `logits` `[T, n_experts]` → `r.ids`, `r.weights` `[T, k]`.
///
/// # Errors
/// [`GpuError::Invalid`] for more than [`MAX_EXPERTS`] experts, `k` of 0, above [`MAX_USED`] or above
/// the expert count; pipeline errors.
pub fn route(
    gpu: &Gpu,
    logits: &wgpu::Buffer,
    r: Routed,
    n_experts: usize,
    routing: Routing,
) -> Result<Op, GpuError> {
    let k = r.k;
    if n_experts == 0 || n_experts > MAX_EXPERTS || k == 0 || k > MAX_USED || k > n_experts {
        return Err(GpuError::Invalid(format!(
            "{k} experts per token of {n_experts}: the router supports 1..={MAX_USED} of at most {MAX_EXPERTS}, and no more than there are"
        )));
    }
    let (mode, renorm) = match routing {
        Routing::Softmax { renorm } => (0, u32::from(renorm)),
        Routing::SigmoidInput => (1, 0),
    };
    let p = gpu.pipeline(
        "moe_route.wgsl",
        "main",
        &[
            ("N_EXPERTS", format!("{n_experts}u")),
            ("K_USED", format!("{k}u")),
            ("MODE", format!("{mode}u")),
            ("RENORM", format!("{renorm}u")),
        ],
    )?;
    Ok(Op {
        bind_group: gpu.bind(&p, &[logits, r.ids, r.weights, r.step]),
        pipeline: p,
        grid: Grid::PerToken,
    })
}

/// Checks that `w` holds whole experts of `rows_per_expert` rows with rows a multiple of 32 long.
fn check_experts(w: &GpuTensor, rows_per_expert: usize) -> Result<(), GpuError> {
    let k = w.row_len();
    if !k.is_multiple_of(32)
        || rows_per_expert == 0
        || !w.n_rows().is_multiple_of(rows_per_expert as u64)
    {
        return Err(GpuError::Invalid(format!(
            "expert tensor of {} rows × {k} does not hold whole experts of {rows_per_expert} rows with rows a multiple of 32 long",
            w.n_rows()
        )));
    }
    Ok(())
}

/// The parameter uniform (`common/expert_params.wgsl`) of shard `s` of `w`.
fn expert_params(
    gpu: &Gpu,
    w: &GpuTensor,
    s: &Shard,
    rows_per_expert: usize,
    r: Routed,
) -> wgpu::Buffer {
    let k = w.row_len() as u32;
    gpu.uniform_of(&ExpertParams {
        k,
        rows_per_expert: rows_per_expert as u32,
        row_bytes: w.row_bytes as u32,
        shard_row0: s.row0 as u32,
        shard_rows: s.n_rows as u32,
        n_used: r.k as u32,
        x_stride: k,
        pad: 0,
    })
}

/// The type defines of the expert kernels for `w` (and the decode kernels' workgroup size).
fn expert_defines(gpu: &Gpu, w: &GpuTensor, x_per_slot: bool) -> Vec<(&'static str, String)> {
    vec![
        ("WG", format!("{}u", gpu.tuning.workgroup())),
        ("HDR", hdr_name(w.ty)),
        ("DQ4", dq4_name(w.ty)),
        ("ALIGNED", aligned(w.ty, w.row_bytes)),
        ("X_PER_SLOT", if x_per_slot { "1u" } else { "0u" }.into()),
    ]
}

/// One launch per shard of the stacked expert tensor `w` with `shader` (`matvec_experts.wgsl`,
/// `matmul_experts.wgsl` or `matvec_experts_glu.wgsl`, which share their parameters) and `defines`; a
/// shard's bindings are its weights, `before`, the parameter uniform, `after`, then the same shard of
/// `paired` if given (the up tensor of the fused kernel, split like `w`).
#[allow(clippy::too_many_arguments)]
fn expert_launches(
    gpu: &Gpu,
    (shader, defines): (&str, &[(&str, String)]),
    w: &GpuTensor,
    paired: Option<&GpuTensor>,
    rows_per_expert: usize,
    r: Routed,
    grid: Grid,
    (before, after): (&[&wgpu::Buffer], &[&wgpu::Buffer]),
) -> Result<Vec<Op>, GpuError> {
    check_experts(w, rows_per_expert)?;
    let pipeline = gpu.pipeline(shader, "main", defines)?;
    Ok(w.shards
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let params = expert_params(gpu, w, s, rows_per_expert, r);
            let mut buffers = vec![&s.buffer];
            buffers.extend(before);
            buffers.push(&params);
            buffers.extend(after);
            buffers.extend(paired.map(|t| &t.shards[i].buffer));
            Op {
                bind_group: gpu.bind(&pipeline, &buffers),
                pipeline: pipeline.clone(),
                grid,
            }
        })
        .collect())
}

/// Whether [`experts_glu`] can fuse `gate` and `up`: the same type, shape and shard split.
pub fn can_fuse(gate: &GpuTensor, up: &GpuTensor) -> bool {
    gate.ty == up.ty
        && gate.dims == up.dims
        && gate.shards.len() == up.shards.len()
        && gate
            .shards
            .iter()
            .zip(&up.shards)
            .all(|(a, b)| a.row0 == b.row0 && a.n_rows == b.n_rows)
}

/// The fused gate+up decode launches (`shaders/matvec_experts_glu.wgsl`, one per shard pair): `y` gets
/// `silu(gate · x) · (up · x)` for each chosen expert's rows, replacing the gate and up mat-vecs and
/// the SwiGLU launch. Arguments as [`experts`].
///
/// # Errors
/// [`GpuError::Invalid`] when the tensors cannot be fused ([`can_fuse`]) or do not hold whole
/// experts; pipeline errors.
#[allow(clippy::too_many_arguments)]
pub fn experts_glu(
    gpu: &Gpu,
    gate: &GpuTensor,
    up: &GpuTensor,
    rows_per_expert: usize,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
    r: Routed,
    x_per_slot: bool,
) -> Result<Vec<Op>, GpuError> {
    if !can_fuse(gate, up) {
        return Err(GpuError::Invalid(
            "gate and up expert tensors differ in type, shape or split; they cannot be fused"
                .into(),
        ));
    }
    let mut defines = expert_defines(gpu, gate, x_per_slot);
    defines.push(("HDR_UP", format!("{}_w_up", hdr_name(up.ty))));
    defines.push(("DQ4_UP", format!("{}_w_up", dq4_name(up.ty))));
    defines.push(("ALIGNED_w_up", aligned(up.ty, up.row_bytes)));
    expert_launches(
        gpu,
        ("matvec_experts_glu.wgsl", &defines),
        gate,
        Some(up),
        rows_per_expert,
        r,
        decode_grid(gpu, rows_per_expert, r),
        (&[x, y, r.ids], &[r.step]),
    )
}

/// Decode grid of the expert mat-vecs: two rows per invocation, one row of workgroups per slot.
fn decode_grid(gpu: &Gpu, rows_per_expert: usize, r: Routed) -> Grid {
    let rows_per_group = 2 * gpu.tuning.workgroup() as u64;
    Grid::TokensZ(groups(rows_per_expert as u64, rows_per_group), r.k as u32)
}

/// The expert mat-vec launches (one per shard of `w`) for the experts in `r.ids`, with `w` the stacked
/// `[E * rows_per_expert, k]` tensor. `x_per_slot`: `x` holds one row per (token, slot) instead of one per token.
///
/// # Errors
/// [`GpuError::Invalid`] when the row length is not a multiple of 32 or the rows do not divide into
/// experts; pipeline errors.
pub fn experts(
    gpu: &Gpu,
    w: &GpuTensor,
    rows_per_expert: usize,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
    r: Routed,
    x_per_slot: bool,
) -> Result<Vec<Op>, GpuError> {
    expert_launches(
        gpu,
        ("matvec_experts.wgsl", &expert_defines(gpu, w, x_per_slot)),
        w,
        None,
        rows_per_expert,
        r,
        decode_grid(gpu, rows_per_expert, r),
        (&[x, y, r.ids], &[r.step]),
    )
}

/// A prefill's routing slots grouped by expert (`shaders/moe_group.wgsl`): offsets `[E + 1]` and the
/// slots of each expert in `sorted` `[T * k]`.
#[derive(Clone, Copy)]
pub struct Grouped<'a> {
    /// u32 `[E + 1]`.
    pub offsets: &'a wgpu::Buffer,
    /// u32 `[T * k]`.
    pub sorted: &'a wgpu::Buffer,
    /// Experts E.
    pub n_experts: usize,
}

/// The launch that groups `r.ids` by expert into `g`.
///
/// # Errors
/// [`GpuError::Invalid`] for more than [`MAX_EXPERTS`] experts; pipeline errors.
pub fn group(gpu: &Gpu, r: Routed, g: Grouped) -> Result<Op, GpuError> {
    if g.n_experts == 0 || g.n_experts > MAX_EXPERTS {
        return Err(GpuError::Invalid(format!(
            "{} experts: grouping supports 1..={MAX_EXPERTS}",
            g.n_experts
        )));
    }
    let p = gpu.pipeline("moe_group.wgsl", "main", &[])?;
    let params = gpu.uniform_of(&MoeGroupParams {
        n_experts: g.n_experts as u32,
        k: r.k as u32,
        ..Default::default()
    });
    Ok(Op {
        bind_group: gpu.bind(&p, &[r.ids, g.offsets, g.sorted, &params, r.step]),
        pipeline: p,
        grid: Grid::Fixed([1, 1, 1]),
    })
}

/// The grouped expert mat-mul launches (one per shard of `w`): every expert's weights are read once
/// per tile of its slots (`shaders/matmul_experts.wgsl`). Arguments as [`experts`]; `g` holds the
/// grouping made by [`group`].
///
/// # Errors
/// As [`experts`]; also when `w` does not hold exactly `g.n_experts` experts.
#[allow(clippy::too_many_arguments)]
pub fn experts_grouped(
    gpu: &Gpu,
    w: &GpuTensor,
    rows_per_expert: usize,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
    r: Routed,
    g: Grouped,
    x_per_slot: bool,
) -> Result<Vec<Op>, GpuError> {
    if w.n_rows() != (g.n_experts * rows_per_expert) as u64 {
        return Err(GpuError::Invalid(format!(
            "expert tensor of {} rows is not {} experts of {rows_per_expert} rows",
            w.n_rows(),
            g.n_experts
        )));
    }
    let grid = Grid::TileZ(groups(rows_per_expert as u64, 256), g.n_experts as u32, 4);
    expert_launches(
        gpu,
        ("matmul_experts.wgsl", &expert_defines(gpu, w, x_per_slot)),
        w,
        None,
        rows_per_expert,
        r,
        grid,
        (&[x, y, g.offsets, g.sorted], &[]),
    )
}

/// `xs[t, j] = r.weights[t, j] · x[t]` over rows of `n` (Llama 4 weights the expert input).
///
/// # Errors
/// Pipeline errors.
pub fn scale_input(
    gpu: &Gpu,
    x: &wgpu::Buffer,
    xs: &wgpu::Buffer,
    r: Routed,
    n: usize,
) -> Result<Op, GpuError> {
    let p = gpu.pipeline("moe_combine.wgsl", "scale_input", &[])?;
    let params = gpu.uniform_of(&MoeCombineParams {
        n: n as u32,
        k: r.k as u32,
        use_weights: 1,
        pad: 0,
    });
    Ok(Op {
        bind_group: gpu.bind(&p, &[x, xs, r.weights, &params, r.step]),
        pipeline: p,
        grid: Grid::TokensZ(groups(n as u64, 64), r.k as u32),
    })
}

/// How [`combine`] weights each slot's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Weighting {
    /// 1 (the input was already weighted).
    Unit,
    /// The routing weight.
    Weights,
    /// The sigmoid of the value in the weights buffer (Qwen2-MoE shared-expert gate).
    Sigmoid,
}

/// `y[t] += Σ_j c_j · o[t, j]` over rows of `n`, `c_j` from `r.weights` as `weighting` says.
///
/// # Errors
/// Pipeline errors.
pub fn combine(
    gpu: &Gpu,
    o: &wgpu::Buffer,
    y: &wgpu::Buffer,
    r: Routed,
    n: usize,
    weighting: Weighting,
) -> Result<Op, GpuError> {
    let p = gpu.pipeline("moe_combine.wgsl", "combine", &[])?;
    let mode = match weighting {
        Weighting::Unit => 0,
        Weighting::Weights => 1,
        Weighting::Sigmoid => 2,
    };
    let params = gpu.uniform_of(&MoeCombineParams {
        n: n as u32,
        k: r.k as u32,
        use_weights: mode,
        pad: 0,
    });
    Ok(Op {
        bind_group: gpu.bind(&p, &[o, y, r.weights, &params, r.step]),
        pipeline: p,
        grid: Grid::Tokens(groups(n as u64, 64)),
    })
}
