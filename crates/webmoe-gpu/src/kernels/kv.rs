//! The KV cache (f16 packed or f32, one K and one V buffer per layer) and the kernel that writes it
//! (`shaders/kv_store.wgsl`).

use super::groups;
use crate::op::{Grid, Op};
use crate::uniforms::KvStoreParams;
use crate::{Gpu, GpuError};

/// One layer's cache: `[n_kv_heads][max_pos][head_dim]` for K and for V.
pub struct LayerCache {
    /// Keys.
    pub k: wgpu::Buffer,
    /// Values.
    pub v: wgpu::Buffer,
    /// KV heads.
    pub n_kv_heads: usize,
    /// Head dimension.
    pub head_dim: usize,
    /// Positions held.
    pub max_pos: usize,
    /// Packed f16 (else f32).
    pub f16: bool,
}

/// Bytes of one layer's K (or V) cache.
pub fn layer_bytes(n_kv_heads: usize, head_dim: usize, max_pos: usize, f16: bool) -> u64 {
    (n_kv_heads * head_dim * max_pos) as u64 * if f16 { 2 } else { 4 }
}

/// Allocates one layer's cache.
pub fn alloc(
    gpu: &Gpu,
    n_kv_heads: usize,
    head_dim: usize,
    max_pos: usize,
    f16: bool,
) -> LayerCache {
    let b = layer_bytes(n_kv_heads, head_dim, max_pos, f16);
    LayerCache {
        k: gpu.storage("k cache", b),
        v: gpu.storage("v cache", b),
        n_kv_heads,
        head_dim,
        max_pos,
        f16,
    }
}

/// The launch that stores this call's k and v into `cache`.
///
/// # Errors
/// [`GpuError`] if the pipeline cannot be built.
pub fn build_store(
    gpu: &Gpu,
    k: &wgpu::Buffer,
    v: &wgpu::Buffer,
    cache: &LayerCache,
    step: &wgpu::Buffer,
) -> Result<Op, GpuError> {
    let (n_kv_heads, head_dim, max_pos, f16) =
        (cache.n_kv_heads, cache.head_dim, cache.max_pos, cache.f16);
    let p = gpu.pipeline(
        "kv_store.wgsl",
        "main",
        &[("KV_F16", if f16 { "1u" } else { "0u" }.into())],
    )?;
    let params = gpu.uniform_of(&KvStoreParams {
        n_kv_heads: n_kv_heads as u32,
        head_dim: head_dim as u32,
        max_pos: max_pos as u32,
        pad: 0,
    });
    Ok(Op {
        bind_group: gpu.bind(&p, &[k, v, &cache.k, &cache.v, &params, step]),
        pipeline: p,
        grid: Grid::Tokens(groups((n_kv_heads * head_dim / 2) as u64, 64)),
    })
}
