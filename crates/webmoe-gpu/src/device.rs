//! Device creation and the pipeline cache.

use crate::shader::preprocess;
use crate::GpuError;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use wgpu::util::DeviceExt;

/// Options for [`Gpu::new`].
#[derive(Debug, Clone, Default)]
pub struct GpuOptions {
    /// Cap on the size of one storage binding (tests use it to force tensor splitting). `None`: the
    /// adapter's own limit.
    pub max_binding_bytes: Option<u64>,
    /// Kernel shape parameters. `None`: chosen for the adapter type.
    pub tuning: Option<Tuning>,
    /// Kernel variants. `None`: [`Variants::for_adapter`] (or `WEBMOE_GPU_VARIANTS` natively).
    pub variants: Option<Variants>,
}

/// Kernel variants for real GPUs, chosen at device creation. Every combination computes the same
/// result to within f32 summation order (f16 tiles: to within f16 rounding of dequantized weights);
/// the tests run each one against the baseline and the CPU reference on lavapipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Variants {
    /// Decode: q, k and v in one mat-vec and dense gate, up and SwiGLU in another, each with the
    /// RMSNorm before it folded in (`matvec_qkv.wgsl`, `matvec_glu.wgsl`).
    pub fused: bool,
    /// Mat-vec lane sums with subgroup shuffles instead of workgroup memory (adapter feature
    /// `subgroups`, with subgroups at least as wide as the lanes of a row).
    pub subgroups: bool,
    /// Prefill mat-muls tiled through workgroup memory, 64 rows by 32 tokens per workgroup
    /// (`matmul_tiled.wgsl`), instead of the barrier-free register tiles CPU emulators prefer.
    pub tiled_prefill: bool,
    /// The tiled mat-mul keeps dequantized weights of quantized and F16 tensors in f16 (adapter
    /// feature `shader-f16`), halving its workgroup memory.
    pub f16: bool,
}

impl Variants {
    /// Everything the adapter supports on a real GPU; the baseline (no variant) on CPU emulators,
    /// where the barrier-free kernels are faster and `device: 'auto'` prefers the CPU backend anyway.
    pub fn for_adapter(info: &wgpu::AdapterInfo, features: wgpu::Features, tuning: Tuning) -> Self {
        if software_reason(info).is_some() {
            return Variants::default();
        }
        Variants {
            fused: true,
            subgroups: subgroups_fit(info, features, tuning),
            tiled_prefill: true,
            f16: features.contains(wgpu::Features::SHADER_F16),
        }
    }

    /// Parses a comma-separated list of `fused`, `subgroups`, `tiled`, `f16` (or `none`, or `all`).
    ///
    /// # Errors
    /// A message naming an unknown word.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut v = Variants::default();
        for word in s.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            match word {
                "none" => {}
                "all" => {
                    v = Variants {
                        fused: true,
                        subgroups: true,
                        tiled_prefill: true,
                        f16: true,
                    }
                }
                "fused" => v.fused = true,
                "subgroups" => v.subgroups = true,
                "tiled" => v.tiled_prefill = true,
                "f16" => v.f16 = true,
                _ => {
                    return Err(format!(
                        "unknown GPU kernel variant {word:?} (expected fused, subgroups, tiled, f16, all or none)"
                    ))
                }
            }
        }
        Ok(v)
    }

    /// These variants less those the adapter cannot run (`all` on an adapter without subgroups).
    pub fn supported(
        self,
        info: &wgpu::AdapterInfo,
        features: wgpu::Features,
        tuning: Tuning,
    ) -> Self {
        Variants {
            subgroups: self.subgroups && subgroups_fit(info, features, tuning),
            f16: self.f16 && features.contains(wgpu::Features::SHADER_F16),
            ..self
        }
    }

    /// The short list [`Variants::parse`] reads (`none` for the baseline).
    pub fn names(&self) -> String {
        let words: Vec<&str> = [
            (self.fused, "fused"),
            (self.subgroups, "subgroups"),
            (self.tiled_prefill, "tiled"),
            (self.f16, "f16"),
        ]
        .into_iter()
        .filter_map(|(on, w)| on.then_some(w))
        .collect();
        if words.is_empty() {
            "none".into()
        } else {
            words.join(",")
        }
    }
}

/// Why `info` is a software rasterizer ([`Gpu::software_reason`]).
fn software_reason(info: &wgpu::AdapterInfo) -> Option<String> {
    let name = info.name.to_lowercase();
    let known = [
        "llvmpipe",
        "lavapipe",
        "swiftshader",
        "basic render",
        "warp",
    ];
    if info.device_type == wgpu::DeviceType::Cpu {
        Some(format!(
            "{} is a software adapter (device type CPU)",
            info.name
        ))
    } else {
        known
            .iter()
            .find(|k| name.contains(*k))
            .map(|k| format!("{} is a software adapter ({k})", info.name))
    }
}

/// Subgroup shuffles can sum the lanes of a row when every subgroup holds whole rows.
fn subgroups_fit(info: &wgpu::AdapterInfo, features: wgpu::Features, tuning: Tuning) -> bool {
    features.contains(wgpu::Features::SUBGROUP)
        && tuning.lanes > 1
        && info.subgroup_min_size >= tuning.lanes
}

/// Shape parameters of the mat-vec kernel (every combination computes the same result).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tuning {
    /// Threads cooperating on one row (power of two ≤ 64).
    pub lanes: u32,
    /// Rows each thread owns (1..=4); activation loads are shared between them.
    pub rows_per_thread: u32,
}

impl Tuning {
    /// Threads per workgroup of the mat-vec kernels (dense and expert): 64 when several threads share
    /// a row (GPUs); 8 with one thread per row (CPU emulators, where small workgroups spread a small
    /// matrix over all CPU threads: 192 rows made one 64-thread workgroup, so one CPU thread ran it.
    /// SwiftShader, 2026-11-30: k/v projections 12 → 5.6 ms per step, a decode step 207 → 189 ms).
    pub fn workgroup(&self) -> u32 {
        if self.lanes == 1 {
            8
        } else {
            64
        }
    }

    /// CPU emulators (lavapipe, SwiftShader) prefer one long stream per thread and activation loads
    /// shared by four rows (measured 2026-11-30 against two rows: decode +10-20 % on lavapipe, +7 % on
    /// SwiftShader in Chromium); GPUs prefer many threads per row.
    pub fn for_device(ty: wgpu::DeviceType) -> Self {
        match ty {
            wgpu::DeviceType::Cpu => Tuning {
                lanes: 1,
                rows_per_thread: 4,
            },
            _ => Tuning {
                lanes: 16,
                rows_per_thread: 1,
            },
        }
    }
}

/// A device with its queue, capabilities and compiled pipelines.
pub struct Gpu {
    /// The wgpu device.
    pub device: wgpu::Device,
    /// Its queue.
    pub queue: wgpu::Queue,
    /// Adapter description.
    pub info: wgpu::AdapterInfo,
    /// Limits granted to the device.
    pub limits: wgpu::Limits,
    /// Largest storage binding webmoe will use (≤ the device limit).
    pub max_binding_bytes: u64,
    /// Kernel shape parameters.
    pub tuning: Tuning,
    /// Kernel variants in use.
    pub variants: Variants,
    pipelines: Mutex<HashMap<String, wgpu::ComputePipeline>>,
    /// The first error the device reported outside an error scope (validation, out of memory, device
    /// lost); [`Gpu::check`] turns it into a [`GpuError`] instead of wgpu's default panic.
    failure: Arc<Mutex<Option<String>>>,
}

impl Gpu {
    /// Opens the default adapter (honouring `WGPU_BACKEND` / `WGPU_ADAPTER_NAME`) and creates a device
    /// with the adapter's full limits. No optional feature is required; `subgroups` and `shader-f16`
    /// are enabled where the adapter has them, for the kernel [`Variants`].
    ///
    /// # Errors
    /// [`GpuError::NoAdapter`] or [`GpuError::Device`]; [`GpuError::Invalid`] for a bad tuning or an
    /// unknown `WEBMOE_GPU_VARIANTS` word.
    pub async fn new(opts: GpuOptions) -> Result<Self, GpuError> {
        let instance =
            wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::from_env()
                    .unwrap_or(wgpu::PowerPreference::HighPerformance),
                force_fallback_adapter: false,
                compatible_surface: None,
                ..Default::default()
            })
            .await
            .map_err(|e| GpuError::NoAdapter(e.to_string()))?;
        let limits = adapter.limits();
        let features = adapter.features() & (wgpu::Features::SUBGROUP | wgpu::Features::SHADER_F16);
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("webmoe"),
                required_features: features,
                required_limits: limits.clone(),
                ..Default::default()
            })
            .await
            .map_err(|e| GpuError::Device(e.to_string()))?;
        let device_max = limits
            .max_storage_buffer_binding_size
            .min(limits.max_buffer_size);
        let max_binding_bytes = opts.max_binding_bytes.unwrap_or(device_max).min(device_max) & !255;
        let info = adapter.get_info();
        let tuning = opts.tuning.unwrap_or(Tuning::for_device(info.device_type));
        if !tuning.lanes.is_power_of_two()
            || tuning.lanes > 64
            || !(1..=4).contains(&tuning.rows_per_thread)
        {
            return Err(GpuError::Invalid(format!(
                "invalid kernel tuning {tuning:?}"
            )));
        }
        let variants = match opts.variants {
            Some(v) => v,
            None => match variants_from_env() {
                Some(v) => Variants::parse(&v).map_err(GpuError::Invalid)?,
                None => Variants::for_adapter(&info, features, tuning),
            },
        }
        .supported(&info, features, tuning);
        let failure: Arc<Mutex<Option<String>>> = Arc::default();
        let slot = failure.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            slot.lock().unwrap().get_or_insert_with(|| e.to_string());
        }));
        let slot = failure.clone();
        device.set_device_lost_callback(move |reason, msg| {
            slot.lock()
                .unwrap()
                .get_or_insert_with(|| format!("the GPU device was lost ({reason:?}): {msg}"));
        });
        Ok(Gpu {
            failure,
            device,
            queue,
            info,
            limits,
            max_binding_bytes,
            tuning,
            variants,
            pipelines: Mutex::new(HashMap::new()),
        })
    }

    /// Returns the first error the device reported since it was created, if any.
    ///
    /// # Errors
    /// [`GpuError::Device`] naming the failure (a lost device, an out-of-memory or validation error).
    pub fn check(&self) -> Result<(), GpuError> {
        match self.failure.lock().unwrap().as_ref() {
            Some(e) => Err(GpuError::Device(e.clone())),
            None => Ok(()),
        }
    }

    /// How attention runs here (before [`Plan::fit`](crate::kernels::attention::Plan::fit) for a
    /// model): GPUs want many workgroups (key-range splits); CPU emulators pay for each workgroup's
    /// barriers (SwiftShader runs them as coroutines), so they run it without barriers (see
    /// BENCHMARKS.md: at 400 keys on SwiftShader decode attention took 268 ms per step with splits,
    /// 176 with one range, 50 barrier-free).
    pub fn attention_plan(&self) -> crate::kernels::attention::Plan {
        use crate::kernels::attention::{Plan, MAX_SPLITS};
        match self.info.device_type {
            wgpu::DeviceType::Cpu => Plan::BarrierFree { prefill: true },
            _ => Plan::Splits(MAX_SPLITS),
        }
    }

    /// Why this adapter is a software rasterizer on the CPU (`None` for a real GPU): the adapter says so
    /// (`DeviceType::Cpu`; in the browser, `isFallbackAdapter`), or its name is that of one (llvmpipe,
    /// lavapipe, SwiftShader, Microsoft Basic Render Driver / WARP).
    pub fn software_reason(&self) -> Option<String> {
        software_reason(&self.info)
    }

    /// One line describing the adapter and the kernel variants in use.
    pub fn adapter_name(&self) -> String {
        format!(
            "{} ({:?}, {:?}; kernels: {})",
            self.info.name,
            self.info.backend,
            self.info.device_type,
            self.variants.names()
        )
    }

    /// The compute pipeline for `shader` (a file under `shaders/`) with `entry` and `defines`, compiled
    /// once and cached.
    ///
    /// # Errors
    /// [`GpuError::Shader`] when the source cannot be assembled.
    pub fn pipeline(
        &self,
        shader: &str,
        entry: &str,
        defines: &[(&str, String)],
    ) -> Result<wgpu::ComputePipeline, GpuError> {
        let key = format!("{shader}:{entry}:{defines:?}");
        if let Some(p) = self.pipelines.lock().unwrap().get(&key) {
            return Ok(p.clone());
        }
        let src = preprocess(shader, defines)?;
        let module = self
            .device
            .create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(shader),
                source: wgpu::ShaderSource::Wgsl(src.into()),
            });
        let p = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(&key),
                layout: None,
                module: &module,
                entry_point: Some(entry),
                compilation_options: Default::default(),
                cache: None,
            });
        self.pipelines.lock().unwrap().insert(key, p.clone());
        Ok(p)
    }

    /// A uniform buffer holding `params` (laid out as its WGSL struct).
    pub fn uniform_of<T: crate::uniforms::Uniform>(&self, params: &T) -> wgpu::Buffer {
        uniform(
            &self.device,
            bytemuck::cast_slice(std::slice::from_ref(params)),
        )
    }

    /// A storage buffer of `bytes` (rounded up to 4) usable as copy source and destination.
    pub fn storage(&self, label: &str, bytes: u64) -> wgpu::Buffer {
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes.max(4).div_ceil(4) * 4,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_DST
                | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        })
    }

    /// A storage buffer initialised with `data`.
    pub fn storage_init(&self, label: &str, data: &[u8]) -> wgpu::Buffer {
        let b = self.storage(label, data.len() as u64);
        if !data.is_empty() {
            let mut padded = data.to_vec();
            padded.resize(data.len().div_ceil(4) * 4, 0);
            self.queue.write_buffer(&b, 0, &padded);
        }
        b
    }

    /// Bind group for `pipeline`'s group 0 with `buffers` at bindings 0, 1, 2, ...
    pub fn bind(
        &self,
        pipeline: &wgpu::ComputePipeline,
        buffers: &[&wgpu::Buffer],
    ) -> wgpu::BindGroup {
        bind(&self.device, pipeline, buffers)
    }
}

/// `WEBMOE_GPU_VARIANTS` (native only: benchmarks and tests compare variants on one adapter).
fn variants_from_env() -> Option<String> {
    #[cfg(not(target_arch = "wasm32"))]
    {
        std::env::var("WEBMOE_GPU_VARIANTS").ok()
    }
    #[cfg(target_arch = "wasm32")]
    {
        None
    }
}

/// [`Gpu::uniform`] for holders of a device alone (the weight store).
pub fn uniform(device: &wgpu::Device, words: &[u32]) -> wgpu::Buffer {
    let mut w = words.to_vec();
    while !w.len().is_multiple_of(4) || w.is_empty() {
        w.push(0);
    }
    device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some("params"),
        contents: bytemuck::cast_slice(&w),
        usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
    })
}

/// [`Gpu::bind`] for holders of a device alone (the weight store).
pub fn bind(
    device: &wgpu::Device,
    pipeline: &wgpu::ComputePipeline,
    buffers: &[&wgpu::Buffer],
) -> wgpu::BindGroup {
    let layout = pipeline.get_bind_group_layout(0);
    let entries: Vec<wgpu::BindGroupEntry> = buffers
        .iter()
        .enumerate()
        .map(|(i, b)| wgpu::BindGroupEntry {
            binding: i as u32,
            resource: b.as_entire_binding(),
        })
        .collect();
    device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: None,
        layout: &layout,
        entries: &entries,
    })
}
