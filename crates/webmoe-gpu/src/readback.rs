//! Reading GPU buffers back to the CPU (async: on the web the browser resolves the map).

use crate::{Gpu, GpuError};

/// Copies `bytes` bytes from the start of `src` into a fresh mappable buffer and returns them.
///
/// # Errors
/// [`GpuError::Readback`] when mapping fails (e.g. the device was lost).
pub async fn read_buffer(gpu: &Gpu, src: &wgpu::Buffer, bytes: u64) -> Result<Vec<u8>, GpuError> {
    let staging = gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("readback"),
        size: bytes.div_ceil(4) * 4,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut enc = gpu.device.create_command_encoder(&Default::default());
    enc.copy_buffer_to_buffer(src, 0, &staging, 0, bytes.div_ceil(4) * 4);
    gpu.queue.submit([enc.finish()]);
    map_and_read(gpu, &staging, bytes).await
}

/// Maps a MAP_READ buffer (after its copy was submitted) and returns its first `bytes` bytes.
///
/// # Errors
/// [`GpuError::Device`] naming the loss when the device was lost; [`GpuError::Readback`] when mapping
/// fails otherwise.
pub async fn map_and_read(
    gpu: &Gpu,
    staging: &wgpu::Buffer,
    bytes: u64,
) -> Result<Vec<u8>, GpuError> {
    let slice = staging.slice(..);
    let (tx, rx) = futures_channel::oneshot::channel();
    slice.map_async(wgpu::MapMode::Read, move |r| {
        let _ = tx.send(r);
    });
    #[cfg(target_arch = "wasm32")]
    let _ = gpu; // the browser resolves the map from its event loop
                 // A failed map is most often a lost device: report the loss (the device's own words) first.
    let failed = |e: String| gpu.check().err().unwrap_or(GpuError::Readback(e));
    #[cfg(not(target_arch = "wasm32"))]
    gpu.device
        .poll(wgpu::PollType::wait_indefinitely())
        .map_err(|e| failed(e.to_string()))?;
    rx.await
        .map_err(|_| failed("map callback dropped".into()))?
        .map_err(|e| failed(e.to_string()))?;
    let out = {
        let view = slice
            .get_mapped_range()
            .map_err(|e| failed(e.to_string()))?;
        view[..bytes as usize].to_vec()
    };
    staging.unmap();
    gpu.check()?;
    Ok(out)
}
