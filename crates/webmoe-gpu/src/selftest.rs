//! The GPU self-test, run at device creation before a model is downloaded: the model's miniature
//! ([`webmoe_core::miniature`]: the same family switches and weight types at tiny sizes) runs on the
//! device (a chunked prefill, decode steps, the sampler) and on the CPU reference, and every weight type
//! the model uses also runs alone through the mat-vec and mat-mul kernels. Adapters that compute some
//! kernel wrongly (ANGLE/GLES, driver bugs) are caught here instead of producing silent garbage; the
//! caller then uses the CPU backend and reports which check failed.

use crate::kernels::linear::{self, Layout};
use crate::readback::read_buffer;
use crate::{Engine, Gpu, GpuError};
use serde::Serialize;
use webmoe_core::gguf::GgufHeader;
use webmoe_core::miniature::{miniature, Miniature};
use webmoe_core::model::ModelDesc;
use webmoe_core::options::EngineOptions;
use webmoe_core::quant::{dequantize, GgmlType};
use webmoe_core::reference::CpuModel;
use webmoe_core::sampling::{Draw, SamplingParams};
use webmoe_core::TensorSink;

/// NMSE above which a check fails. Correct kernels differ from the f32 reference by summation order
/// and, with an f16 KV cache, key/value rounding: NMSE below 1e-5 on the miniature. A wrong kernel gives
/// NMSE of order 1.
pub const MAX_NMSE: f64 = 1e-3;

/// One check of the self-test.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What ran: `matvec Q4_1`, `matmul Q8_0`, `model prefill`, `model decode`, `sampler`.
    pub kernel: String,
    /// Normalized mean-squared error against the CPU reference (0 for exact checks).
    pub nmse: f64,
    /// Within [`MAX_NMSE`] (or exact).
    pub passed: bool,
}

/// The self-test's result.
#[derive(Debug, Clone, Serialize)]
pub struct SelfTest {
    /// Every check passed.
    pub passed: bool,
    /// The checks, in order.
    pub checks: Vec<Check>,
}

impl SelfTest {
    /// The first failing check, for messages.
    pub fn first_failure(&self) -> Option<&Check> {
        self.checks.iter().find(|c| !c.passed)
    }
}

fn nmse(got: &[f32], want: &[f32]) -> f64 {
    let e: f64 = got
        .iter()
        .zip(want)
        .map(|(a, b)| ((a - b) as f64).powi(2))
        .sum();
    let n: f64 = want.iter().map(|b| (*b as f64).powi(2)).sum();
    let r = e / n.max(1e-30);
    if r.is_finite() {
        r
    } else {
        f64::INFINITY
    }
}

fn check(kernel: String, nmse: f64) -> Check {
    Check {
        passed: nmse <= MAX_NMSE,
        kernel,
        nmse,
    }
}

/// Runs the self-test of `desc` (stored as `header` says) on `gpu` with the real model's options.
/// With `fault`, the device results are perturbed before comparing (tests of the fallback path).
/// Returns the device back with the result.
///
/// # Errors
/// [`GpuError`] when the device fails outright (a failed comparison is a result, not an error).
pub async fn run(
    gpu: Gpu,
    desc: &ModelDesc,
    header: &GgufHeader,
    opts: &EngineOptions,
    fault: bool,
) -> Result<(Gpu, SelfTest), GpuError> {
    let type_of = |name: &str| header.tensor(name).map_or(GgmlType::F32, |t| t.ggml_type);
    let mini = miniature(desc, type_of, 1);
    let tensor = |name: &str| -> (Vec<f32>, &[u8], GgmlType) {
        let t = mini.header.tensor(name).expect("a miniature tensor");
        let (s, e) = mini.header.tensor_range(t);
        let b = &mini.bytes[s as usize..e as usize];
        let mut out = vec![0f32; t.n_elements() as usize];
        dequantize(t.ggml_type, b, &mut out);
        (out, b, t.ggml_type)
    };
    let reference = CpuModel::new(mini.desc.clone(), |n| -> Result<_, ()> { Ok(tensor(n).0) })
        .expect("miniature tensors exist");
    let mini_opts = EngineOptions {
        max_context: webmoe_core::miniature::CONTEXT,
        prefill_chunk: 4,
        kv_dtype: opts.kv_dtype,
    };
    let mut engine = Engine::new(gpu, mini.desc.clone(), &mini.header, mini_opts).await?;
    upload(&mut engine, &mini)?;
    let mut checks = Vec::new();
    let perturb = |mut v: Vec<f32>| {
        if fault {
            v.iter_mut().for_each(|x| *x = -*x);
        }
        v
    };

    // Whole miniature: 6 prompt tokens in chunks of 4, then 2 decode steps with greedy sampling.
    let ids: Vec<u32> = vec![3, 250, 17, 17, 99, 0, 128, 64];
    let want = reference.forward(&ids);
    let vocab = mini.desc.config.vocab_size;
    engine.forward(&ids[..6], None).await?;
    let got = perturb(engine.logits().await?);
    checks.push(check(
        "model prefill".into(),
        nmse(&got, &want[5 * vocab..6 * vocab]),
    ));
    let mut worst = 0f64;
    let mut sampler_ok = true;
    let greedy = SamplingParams::default();
    for t in 6..ids.len() {
        let next = engine
            .forward(&ids[t..t + 1], Some(Draw::new(&greedy, &[], 0)))
            .await?;
        let got = perturb(engine.logits().await?);
        worst = worst.max(nmse(&got, &want[t * vocab..(t + 1) * vocab]));
        let best = (0..got.len()).fold(0, |b, i| if got[i] > got[b] { i } else { b });
        sampler_ok &= next == Some(best as u32);
    }
    checks.push(check("model decode".into(), worst));
    checks.push(Check {
        kernel: "sampler".into(),
        nmse: 0.0,
        passed: sampler_ok,
    });

    // Each weight type alone: mat-vec (1 token) and mat-mul (5 tokens).
    let mut seen = Vec::new();
    for (name, dims) in mini.desc.expected_tensors() {
        let (w, _, ty) = tensor(&name);
        if dims.len() != 2 || seen.contains(&ty) {
            continue;
        }
        seen.push(ty);
        let (k, rows) = (dims[0] as usize, dims[1] as usize);
        for (kind, n) in [("matvec", 1usize), ("matmul", 5)] {
            let x: Vec<f32> = (0..n * k)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0)
                .collect();
            let want = webmoe_core::reference::matmul(&x, &w, k);
            let got = perturb(run_linear(&engine, &name, &x, n, rows).await?);
            checks.push(check(format!("{kind} {}", ty.name()), nmse(&got, &want)));
        }
    }
    let passed = checks.iter().all(|c| c.passed);
    let Engine { gpu, .. } = engine;
    Ok((gpu, SelfTest { passed, checks }))
}

fn upload(engine: &mut Engine, mini: &Miniature) -> Result<(), GpuError> {
    for (i, t) in mini.header.tensors.iter().enumerate() {
        let (s, e) = mini.header.tensor_range(t);
        engine
            .weights_mut()
            .write(i, 0, &mini.bytes[s as usize..e as usize])
            .map_err(GpuError::Device)?;
    }
    engine.finish_upload()
}

/// `x · Wᵀ` for `n` tokens through the linear kernels on the engine's copy of tensor `name`.
async fn run_linear(
    engine: &Engine,
    name: &str,
    x: &[f32],
    n: usize,
    rows: usize,
) -> Result<Vec<f32>, GpuError> {
    let gpu = &engine.gpu;
    let xb = gpu.storage_init("self-test x", bytemuck::cast_slice(x));
    let yb = gpu.storage("self-test y", (n * rows * 4) as u64);
    let step = gpu.uniform_of(&crate::uniforms::StepParams {
        n_tokens: n as u32,
        ..Default::default()
    });
    let lin = linear::build(
        gpu,
        engine.weights.get(name)?,
        &xb,
        &yb,
        &step,
        Layout::default(),
    )?;
    let ops = if n == 1 { &lin.decode } else { &lin.prefill };
    let mut enc = gpu.device.create_command_encoder(&Default::default());
    crate::op::encode_ops(&mut enc, ops, n as u32, 1);
    gpu.queue.submit([enc.finish()]);
    let b = read_buffer(gpu, &yb, (n * rows * 4) as u64).await?;
    gpu.check()?;
    Ok(bytemuck::cast_slice(&b).to_vec())
}
