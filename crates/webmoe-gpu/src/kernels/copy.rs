//! The device's own copy bandwidth (`shaders/copy.wgsl`), the yardstick of `webmoe bench`.

use crate::op::{Grid, Op};
use crate::{Gpu, GpuError};

/// Copies a buffer of about `bytes` (capped by the binding limit) `reps` times and returns the best
/// rate in GB/s, counting bytes read plus bytes written.
///
/// # Errors
/// [`GpuError`] if the pipeline cannot be built or the device fails.
pub fn copy_bandwidth(gpu: &Gpu, bytes: u64, reps: usize) -> Result<f64, GpuError> {
    let bytes = bytes.min(gpu.max_binding_bytes) / 256 * 256;
    let p = gpu.pipeline("copy.wgsl", "main", &[])?;
    let src = gpu.storage("copy src", bytes);
    let dst = gpu.storage("copy dst", bytes);
    let n_vec4 = bytes / 16;
    let op = Op {
        bind_group: gpu.bind(&p, &[&src, &dst]),
        pipeline: p,
        grid: Grid::Fixed([(n_vec4.div_ceil(64 * 16)) as u32, 1, 1]),
    };
    let mut best = 0f64;
    for i in 0..reps + 1 {
        let t = std::time::Instant::now();
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        crate::op::encode_ops(&mut enc, std::slice::from_ref(&op), 1, 1);
        gpu.queue.submit([enc.finish()]);
        gpu.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| GpuError::Device(e.to_string()))?;
        let s = t.elapsed().as_secs_f64();
        if i > 0 {
            best = best.max(2.0 * bytes as f64 / s / 1e9);
        }
    }
    Ok(best)
}
