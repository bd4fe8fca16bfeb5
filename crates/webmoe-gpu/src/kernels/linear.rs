//! Linear layers `y = x · Wᵀ` over any supported weight type: a mat-vec kernel for decode
//! (`shaders/matvec.wgsl`) and a tiled mat-mul for prefill, one launch per shard. The mat-mul is
//! `shaders/matmul_tiled.wgsl` (workgroup-memory tiles) with the `tiled_prefill` variant, else
//! `shaders/matmul.wgsl` (register tiles without barriers, for CPU emulators).

use super::{aligned, dq4_name, groups, hdr_name, on, subgroup_defines};
use crate::op::{Grid, Op};
use crate::uniforms::LinearParams;
use crate::weights::GpuTensor;
use crate::{Gpu, GpuError};
use webmoe_core::quant::GgmlType;

/// Where the input rows come from and the output rows go.
#[derive(Debug, Clone, Copy, Default)]
pub struct Layout {
    /// Elements between consecutive input token rows (default: the row length).
    pub x_stride: u32,
    /// Elements between consecutive output token rows (default: the number of rows).
    pub y_stride: u32,
    /// First input element.
    pub x_offset: u32,
    /// First output element.
    pub y_offset: u32,
    /// Add to `y` instead of overwriting it (residual connections).
    pub accumulate: bool,
}

/// The launches of one linear layer.
pub struct Linear {
    /// Decode: one token per dispatch row (`matvec.wgsl`).
    pub decode: Vec<Op>,
    /// Prefill: tiled over tokens and rows (`matmul.wgsl`).
    pub prefill: Vec<Op>,
}

/// Builds the launches for `w` reading `x` and writing `y`.
///
/// # Errors
/// [`GpuError`] if a pipeline cannot be built or the row length is not a multiple of 32.
pub fn build(
    gpu: &Gpu,
    w: &GpuTensor,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
    step: &wgpu::Buffer,
    l: Layout,
) -> Result<Linear, GpuError> {
    let k = w.row_len() as u32;
    if !k.is_multiple_of(32) {
        return Err(GpuError::Invalid(format!(
            "linear layer row length {k} is not a multiple of 32"
        )));
    }
    let n_out = w.n_rows() as u32;
    let acc = if l.accumulate { "1u" } else { "0u" };
    let (hdr, dq) = (hdr_name(w.ty), dq4_name(w.ty));
    let (lanes, rpt) = (gpu.tuning.lanes, gpu.tuning.rows_per_thread);
    let [sg0, sg1] = subgroup_defines(gpu);
    let pv = gpu.pipeline(
        "matvec.wgsl",
        "main",
        &[
            ("HDR", hdr.clone()),
            ("DQ4", dq.clone()),
            ("ALIGNED", aligned(w.ty, w.row_bytes)),
            ("WG", format!("{}u", gpu.tuning.workgroup())),
            ("LANES", format!("{lanes}u")),
            ("RPT", format!("{rpt}u")),
            ("ACCUMULATE", acc.into()),
            sg0,
            sg1,
        ],
    )?;
    let mut prefill_defines = vec![
        ("HDR", hdr),
        ("DQ4", dq),
        ("ALIGNED", aligned(w.ty, w.row_bytes)),
        ("ACCUMULATE", acc.into()),
    ];
    let tiled = gpu.variants.tiled_prefill;
    let (prefill_shader, tile) = if tiled {
        // f16 tiles only for weights that f16 holds exactly or nearly (quantized types, F16).
        let f16 = gpu.variants.f16 && !matches!(w.ty, GgmlType::F32 | GgmlType::BF16);
        prefill_defines.push(("F16", on(f16)));
        prefill_defines.push(("WT", if f16 { "f16" } else { "f32" }.into()));
        ("matmul_tiled.wgsl", (64, 32))
    } else {
        ("matmul.wgsl", (256, 4))
    };
    let pm = gpu.pipeline(prefill_shader, "main", &prefill_defines)?;
    let (mut decode, mut prefill) = (Vec::new(), Vec::new());
    for s in &w.shards {
        let params = gpu.uniform_of(&LinearParams {
            k,
            n_rows: s.n_rows as u32,
            row_bytes: w.row_bytes as u32,
            out_row0: s.row0 as u32,
            out_stride: if l.y_stride == 0 { n_out } else { l.y_stride },
            x_stride: if l.x_stride == 0 { k } else { l.x_stride },
            x_offset: l.x_offset,
            y_offset: l.y_offset,
        });
        decode.push(Op {
            bind_group: gpu.bind(&pv, &[&s.buffer, x, y, &params]),
            pipeline: pv.clone(),
            grid: Grid::Tokens(groups(
                s.n_rows,
                (gpu.tuning.workgroup() / lanes * rpt) as u64,
            )),
        });
        prefill.push(Op {
            bind_group: gpu.bind(&pm, &[&s.buffer, x, y, &params, step]),
            pipeline: pm.clone(),
            grid: Grid::TokenTiles(groups(s.n_rows, tile.0), tile.1),
        });
    }
    Ok(Linear { decode, prefill })
}
