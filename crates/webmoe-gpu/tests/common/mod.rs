//! Helpers shared by the GPU tests: device, uploads, read-back, random data, error metric.
#![allow(dead_code)]

use webmoe_core::gguf::TensorInfo;
use webmoe_core::quant::{random_blocks, GgmlType};
use webmoe_core::TensorSink;
use webmoe_gpu::weights::WeightStore;
use webmoe_gpu::{read_buffer, Gpu, GpuOptions, Tuning, Variants};

/// The adapter with its own tuning and the baseline kernels (what lavapipe gets by default).
pub fn gpu_with(max_binding_bytes: Option<u64>) -> Gpu {
    gpu_variants(max_binding_bytes, Variants::default())
}

/// The adapter running kernel `variants`, with four lanes per mat-vec row (so that the lane sums,
/// and with `subgroups` the subgroup shuffles, run whatever the adapter type). Variants the adapter
/// lacks are dropped: [`Gpu::variants`] says what runs.
pub fn gpu_variants(max_binding_bytes: Option<u64>, variants: Variants) -> Gpu {
    let tuning = (variants != Variants::default()).then_some(Tuning {
        lanes: 4,
        rows_per_thread: 1,
    });
    pollster::block_on(Gpu::new(GpuOptions {
        max_binding_bytes,
        tuning,
        variants: Some(variants),
    }))
    .expect("a GPU adapter (lavapipe on CI)")
}

/// Every mat-vec shape the adapters use (CPU-style and GPU-style), whatever adapter runs the tests.
pub fn all_tunings() -> Vec<Gpu> {
    [(1, 1), (1, 2), (1, 3), (4, 4), (16, 1), (64, 2)]
        .into_iter()
        .map(|(lanes, rows_per_thread)| {
            let tuning = Some(webmoe_gpu::Tuning {
                lanes,
                rows_per_thread,
            });
            pollster::block_on(Gpu::new(GpuOptions {
                max_binding_bytes: None,
                tuning,
                variants: Some(Variants::default()),
            }))
            .unwrap()
        })
        .collect()
}

pub fn gpu() -> Gpu {
    gpu_with(None)
}

pub struct Rng(pub u64);
impl Rng {
    pub fn u32(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 16) as u32
    }
    /// Uniform in [-1, 1).
    pub fn f32(&mut self) -> f32 {
        (self.u32() % 2_000_000) as f32 / 1_000_000.0 - 1.0
    }
    pub fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.f32()).collect()
    }
}

/// Random blocks of `ty` for a `[rows, k]` matrix, and their CPU dequantization.
pub fn random_matrix(rng: &mut Rng, ty: GgmlType, rows: usize, k: usize) -> (Vec<u8>, Vec<f32>) {
    let n_blocks = rows * k / ty.block_elems() as usize;
    let bytes = random_blocks(ty, n_blocks, || rng.u32());
    let mut f = vec![0f32; rows * k];
    webmoe_core::quant::dequantize(ty, &bytes, &mut f);
    (bytes, f)
}

/// Uploads one tensor through the weight store in chunks of `chunk` bytes (odd sizes exercise the
/// alignment carry).
pub fn upload(
    gpu: &Gpu,
    name: &str,
    dims: &[u64],
    ty: GgmlType,
    bytes: &[u8],
    chunk: usize,
) -> WeightStore {
    let info = TensorInfo {
        name: name.into(),
        dims: dims.to_vec(),
        ggml_type: ty,
        offset: 0,
        size_bytes: bytes.len() as u64,
    };
    let mut store = WeightStore::allocate(gpu, &[(0, &info)]).unwrap();
    let mut off = 0;
    for c in bytes.chunks(chunk) {
        store.write(0, off, c).unwrap();
        off += c.len() as u64;
    }
    store.finish().unwrap();
    store
}

pub fn f32_buffer(gpu: &Gpu, data: &[f32]) -> wgpu::Buffer {
    gpu.storage_init("test", bytemuck::cast_slice(data))
}

pub fn read_f32(gpu: &Gpu, b: &wgpu::Buffer, n: usize) -> Vec<f32> {
    let bytes = pollster::block_on(read_buffer(gpu, b, (n * 4) as u64)).unwrap();
    bytemuck::cast_slice(&bytes).to_vec()
}

pub fn run(gpu: &Gpu, ops: &[&webmoe_gpu::Op], n_tokens: u32, n_splits: u32) {
    let mut enc = gpu.device.create_command_encoder(&Default::default());
    {
        let mut pass = enc.begin_compute_pass(&Default::default());
        for op in ops {
            op.encode(&mut pass, n_tokens, n_splits);
        }
    }
    gpu.queue.submit([enc.finish()]);
}

/// Normalized mean-squared error Σ(a−b)² / Σb².
pub fn nmse(got: &[f32], want: &[f32]) -> f64 {
    assert_eq!(got.len(), want.len());
    let num: f64 = got
        .iter()
        .zip(want)
        .map(|(a, b)| ((a - b) as f64).powi(2))
        .sum();
    let den: f64 = want
        .iter()
        .map(|b| (*b as f64).powi(2))
        .sum::<f64>()
        .max(1e-30);
    num / den
}
