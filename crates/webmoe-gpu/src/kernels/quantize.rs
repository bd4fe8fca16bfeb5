//! Quantization on load (`shaders/quantize.wgsl`): F32, F16 or BF16 rows into Q8_0, Q4_0 or Q4_K blocks,
//! written straight into a weight shard. The results are the CPU reference quantizers'
//! (`webmoe_core::quant`) bytes.

use super::dq4_name;
use crate::uniforms::QuantizeParams;
use crate::{Gpu, GpuError};
use webmoe_core::quant::GgmlType;
use wgpu::util::DeviceExt;

/// Most workgroups in one dispatch dimension (WebGPU's limit).
const MAX_GROUPS: u64 = 65535;

/// The pipeline converting rows of `src` with `k` elements into `dst` blocks.
///
/// # Errors
/// [`GpuError::Invalid`] for a source other than F32/F16/BF16, a target other than Q8_0/Q4_0/Q4_K, or
/// rows that do not divide into the target's blocks.
pub fn pipeline(
    gpu: &Gpu,
    src: GgmlType,
    dst: GgmlType,
    k: u64,
) -> Result<wgpu::ComputePipeline, GpuError> {
    let target = match dst {
        GgmlType::Q8_0 => 0,
        GgmlType::Q4_0 => 1,
        GgmlType::Q4_K => 2,
        other => {
            return Err(GpuError::Invalid(format!(
                "quantization on load makes Q8_0, Q4_0 or Q4_K, not {}",
                other.name()
            )))
        }
    };
    if !matches!(src, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16) {
        return Err(GpuError::Invalid(format!(
            "quantization on load reads F32, F16 or BF16 rows, not {}",
            src.name()
        )));
    }
    if !k.is_multiple_of(dst.block_elems()) {
        return Err(GpuError::Invalid(format!(
            "rows of {k} elements do not divide into {} blocks",
            dst.name()
        )));
    }
    gpu.pipeline(
        "quantize.wgsl",
        "main",
        &[
            ("SRC", dq4_name(src)),
            ("ALIGNED", "1u".into()),
            ("TARGET", format!("{target}u")),
        ],
    )
}

/// One conversion: `n_rows` source rows into the shard bytes starting at `dst_byte` (a multiple of 4).
#[derive(Debug, Clone, Copy)]
pub struct Call {
    /// Elements per row.
    pub k: u64,
    /// Bytes per source row.
    pub src_row_bytes: u64,
    /// Rows converted.
    pub n_rows: u64,
    /// Where the first row's blocks go in `dst`.
    pub dst_byte: u64,
    /// The target type.
    pub ty: GgmlType,
}

/// Uploads `src` (whole rows) to a staging buffer and submits the conversion into `dst`.
pub fn run(
    device: &wgpu::Device,
    queue: &wgpu::Queue,
    pipeline: &wgpu::ComputePipeline,
    src: &[u8],
    dst: &wgpu::Buffer,
    c: Call,
) {
    debug_assert!(c.dst_byte.is_multiple_of(4));
    let n_blocks = c.n_rows * c.k / c.ty.block_elems();
    let per_unit = if c.ty == GgmlType::Q4_K { 1 } else { 2 };
    let groups = n_blocks.div_ceil(per_unit).div_ceil(64);
    let staging = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some("quantize source rows"),
        contents: src,
        usage: wgpu::BufferUsages::STORAGE,
    });
    let params = crate::device::uniform(
        device,
        bytemuck::cast_slice(&[QuantizeParams {
            k: c.k as u32,
            src_row_bytes: c.src_row_bytes as u32,
            n_blocks: n_blocks as u32,
            dst_word0: (c.dst_byte / 4) as u32,
        }]),
    );
    let bind = crate::device::bind(device, pipeline, &[&staging, dst, &params]);
    let mut enc = device.create_command_encoder(&Default::default());
    {
        let mut pass = enc.begin_compute_pass(&Default::default());
        pass.set_pipeline(pipeline);
        pass.set_bind_group(0, &bind, &[]);
        pass.dispatch_workgroups(
            groups.min(MAX_GROUPS) as u32,
            groups.div_ceil(MAX_GROUPS) as u32,
            1,
        );
    }
    queue.submit([enc.finish()]);
}
