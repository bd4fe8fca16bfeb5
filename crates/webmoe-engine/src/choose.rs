//! Which backend runs a model, and why.

use crate::{AnyEngine, EngineError};
use serde::Serialize;
use webmoe_core::gguf::GgufHeader;
use webmoe_core::model::ModelDesc;
use webmoe_core::options::EngineOptions;
use webmoe_gpu::selftest::SelfTest;
use webmoe_gpu::{Gpu, GpuError, GpuOptions};

/// The device a caller asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceRequest {
    /// The GPU if it is a real one that fits the model and passes its self-test, else the CPU.
    #[default]
    Auto,
    /// The GPU, or an error.
    Gpu,
    /// The CPU backend.
    Cpu,
}

impl std::str::FromStr for DeviceRequest {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(DeviceRequest::Auto),
            "gpu" => Ok(DeviceRequest::Gpu),
            "cpu" => Ok(DeviceRequest::Cpu),
            other => Err(format!(
                "device must be \"auto\", \"gpu\" or \"cpu\", not {other:?}"
            )),
        }
    }
}

/// How to open the engine.
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    /// Which device.
    pub device: DeviceRequest,
    /// Context, prefill chunk, KV type.
    pub engine: EngineOptions,
    /// GPU settings.
    pub gpu: GpuOptions,
    /// Most bytes the CPU backend may use (`None`: no limit; the browser passes the heap limit).
    pub cpu_limit: Option<u64>,
    /// Skip the GPU self-test.
    pub skip_self_test: bool,
    /// Make the self-test fail (to exercise the fallback).
    pub force_self_test_failure: bool,
    /// The caller knows the adapter is a software one (in the browser: `GPUAdapterInfo` says
    /// `isFallbackAdapter` or names SwiftShader), beyond what the adapter tells wgpu.
    pub software_adapter: bool,
    /// The caller already knows there is no adapter (in the browser: no `navigator.gpu`, or no
    /// adapter given): why. `auto` then goes straight to the CPU.
    pub no_gpu_reason: Option<String>,
    /// Treat a software adapter as a GPU (so `auto` self-tests it instead of preferring the CPU):
    /// for tests of the self-test path on machines whose only adapter is a software one.
    pub software_adapter_is_gpu: bool,
    /// Run the CPU backend through this factory instead of in this module (the browser's threaded
    /// CPU module when the page is cross-origin isolated).
    pub external_cpu: Option<crate::ExternalCpuSource>,
}

/// What was chosen and why (part of `stats()` and `bench --json`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceReport {
    /// `"gpu"` or `"cpu"`.
    pub device: &'static str,
    /// Why this device.
    pub reason: String,
    /// The adapter, when there is one.
    pub adapter: Option<String>,
    /// The GPU self-test, when it ran.
    pub self_test: Option<SelfTest>,
    /// Seconds the self-test took.
    pub self_test_seconds: f64,
    /// CPU kernels in use (`avx2`, `neon`, `wasm-relaxed-simd`, `wasm-simd128`, `scalar`, and the
    /// threads of the browser's threaded module) when on the CPU.
    pub cpu_kernels: Option<String>,
    /// Bytes planned on the device (weights, KV cache, scratch).
    pub bytes_planned: u64,
}

fn cpu(
    desc: &ModelDesc,
    h: &GgufHeader,
    o: &OpenOptions,
    reason: String,
    adapter: Option<String>,
    self_test: Option<(SelfTest, f64)>,
) -> Result<(AnyEngine, DeviceReport), EngineError> {
    let plan = webmoe_cpu::plan(desc, h, &o.engine, o.cpu_limit)?;
    let (e, kernels) = match &o.external_cpu {
        Some(f) => (
            AnyEngine::External(f.0.create(desc, h, &o.engine, o.cpu_limit)?),
            f.0.kernels(),
        ),
        None => (
            AnyEngine::Cpu(Box::new(webmoe_cpu::Engine::new(
                desc.clone(),
                h,
                o.engine.clone(),
                o.cpu_limit,
            )?)),
            webmoe_cpu::kernels::isa().into(),
        ),
    };
    let (self_test, self_test_seconds) = self_test.map_or((None, 0.0), |(t, s)| (Some(t), s));
    Ok((
        e,
        DeviceReport {
            device: "cpu",
            reason,
            adapter,
            self_test,
            self_test_seconds,
            cpu_kernels: Some(kernels),
            bytes_planned: plan.total(),
        },
    ))
}

async fn gpu(
    gpu: Gpu,
    desc: &ModelDesc,
    h: &GgufHeader,
    o: &OpenOptions,
    reason: String,
    self_test: Option<(SelfTest, f64)>,
) -> Result<(AnyEngine, DeviceReport), EngineError> {
    let plan = webmoe_gpu::executor::plan(&gpu, desc, h, &o.engine)?;
    let adapter = gpu.adapter_name();
    let e = webmoe_gpu::Engine::new(gpu, desc.clone(), h, o.engine.clone()).await?;
    let (self_test, self_test_seconds) = self_test.map_or((None, 0.0), |(t, s)| (Some(t), s));
    Ok((
        AnyEngine::Gpu(Box::new(e)),
        DeviceReport {
            device: "gpu",
            reason,
            adapter: Some(adapter),
            self_test,
            self_test_seconds,
            cpu_kernels: None,
            bytes_planned: plan.total(),
        },
    ))
}

/// Runs the self-test unless skipped: the device back, the result and its seconds.
async fn self_test(
    g: Gpu,
    desc: &ModelDesc,
    h: &GgufHeader,
    o: &OpenOptions,
    now: &dyn Fn() -> f64,
) -> Result<(Gpu, Option<(SelfTest, f64)>), EngineError> {
    if o.skip_self_test {
        return Ok((g, None));
    }
    let t0 = now();
    let (g, t) =
        webmoe_gpu::selftest::run(g, desc, h, &o.engine, o.force_self_test_failure).await?;
    Ok((g, Some((t, now() - t0))))
}

fn failure_text(t: &SelfTest) -> String {
    match t.first_failure() {
        Some(c) => format!(
            "the GPU self-test failed: {} differs from the CPU reference (NMSE {:.2e})",
            c.kernel, c.nmse
        ),
        None => "the GPU self-test passed".into(),
    }
}

/// Chooses the device for `desc` (stored as `h` says) and creates its engine (weights empty, to be
/// streamed in). `now` is a clock in seconds (for the self-test's cost).
///
/// # Errors
/// [`EngineError::NoGpu`] when the GPU is required and there is none; [`EngineError::TooLarge`] when
/// the model fits no device; [`EngineError::SelfTest`] when the GPU is required and fails its
/// self-test; backend errors.
pub async fn open(
    desc: &ModelDesc,
    h: &GgufHeader,
    o: &OpenOptions,
    now: &dyn Fn() -> f64,
) -> Result<(AnyEngine, DeviceReport), EngineError> {
    match o.device {
        DeviceRequest::Cpu => cpu(desc, h, o, "requested (device cpu)".into(), None, None),
        DeviceRequest::Gpu => {
            if let Some(why) = &o.no_gpu_reason {
                return Err(EngineError::NoGpu(format!(
                    "device gpu was requested but there is no GPU adapter: {why}"
                )));
            }
            let g = match Gpu::new(o.gpu.clone()).await {
                Ok(g) => g,
                Err(GpuError::NoAdapter(e)) => {
                    return Err(EngineError::NoGpu(format!(
                        "device gpu was requested but there is no GPU adapter: {e}"
                    )))
                }
                Err(e) => return Err(e.into()),
            };
            webmoe_gpu::executor::plan(&g, desc, h, &o.engine)?;
            let (g, t) = self_test(g, desc, h, o, now).await?;
            if let Some((t, _)) = t.as_ref().filter(|(t, _)| !t.passed) {
                return Err(EngineError::SelfTest(format!(
                    "{} on {}; device auto or cpu runs the model on the CPU instead",
                    failure_text(t),
                    g.adapter_name()
                )));
            }
            gpu(g, desc, h, o, "requested (device gpu)".into(), t).await
        }
        DeviceRequest::Auto => {
            let cpu_plan = webmoe_cpu::plan(desc, h, &o.engine, o.cpu_limit);
            let found = match &o.no_gpu_reason {
                Some(why) => Err(why.clone()),
                None => Gpu::new(o.gpu.clone()).await.map_err(|e| e.to_string()),
            };
            let g = match found {
                Ok(g) => g,
                Err(e) => {
                    let reason = format!("no usable GPU adapter ({e})");
                    return match cpu_plan {
                        Ok(_) => cpu(desc, h, o, reason, None, None),
                        Err(c) => Err(EngineError::TooLarge(format!("{reason}, and {c}"))),
                    };
                }
            };
            let adapter = g.adapter_name();
            if let Err(e) = webmoe_gpu::executor::plan(&g, desc, h, &o.engine) {
                return match cpu_plan {
                    Ok(_) => cpu(desc, h, o, format!("{e} ({adapter})"), Some(adapter), None),
                    Err(c) => Err(EngineError::TooLarge(format!("{e}; and {c}"))),
                };
            }
            let software = g
                .software_reason()
                .or_else(|| {
                    o.software_adapter
                        .then(|| format!("{} is a software adapter", g.adapter_name()))
                })
                .filter(|_| !o.software_adapter_is_gpu);
            if let (Some(why), Ok(_)) = (&software, &cpu_plan) {
                return cpu(
                    desc,
                    h,
                    o,
                    format!("{why}: the CPU backend is faster"),
                    Some(adapter),
                    None,
                );
            }
            let (g, t) = match self_test(g, desc, h, o, now).await {
                Ok(r) => r,
                // The device failed outright while testing: the CPU, if it can take the model.
                Err(e) => {
                    return match cpu_plan {
                        Ok(_) => cpu(
                            desc,
                            h,
                            o,
                            format!("the GPU failed its self-test ({e})"),
                            Some(adapter),
                            None,
                        ),
                        Err(c) => Err(EngineError::TooLarge(format!("{e}; and {c}"))),
                    }
                }
            };
            match (&t, cpu_plan) {
                (Some((st, _)), Ok(_)) if !st.passed => {
                    let reason = format!("{} on {adapter}", failure_text(st));
                    cpu(desc, h, o, reason, Some(adapter), t)
                }
                (Some((st, _)), Err(c)) if !st.passed => Err(EngineError::SelfTest(format!(
                    "{} on {adapter}, and the CPU backend cannot take the model: {c}",
                    failure_text(st)
                ))),
                (_, Err(c)) if software.is_some() => {
                    let reason = format!(
                        "{}; the model is over the CPU backend's limit ({c}), so the software adapter runs it",
                        software.unwrap_or_default()
                    );
                    gpu(g, desc, h, o, reason, t).await
                }
                _ => gpu(g, desc, h, o, format!("{adapter} is a GPU"), t).await,
            }
        }
    }
}
