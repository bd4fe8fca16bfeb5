//! Tiny random Mixture-of-Experts models of every family against Hugging Face transformers (f32): GGUF
//! files made by llama.cpp's converter from the transformers model, references recorded by
//! tests/fixtures/moe/make_moe_fixtures.py (run by hand; outputs committed beside it). Llama 4 GGUF
//! input is compared with the reference recorded under llama.cpp's hard-coded Llama 4 settings
//! (`gguf` in the reference file), since GGUF cannot store the fixture's own; the Hugging Face folders
//! (bf16 safetensors, read in place) carry them and are compared with the main reference. Every check
//! runs on both backends: the GPU and the CPU backend (whose F32 path is plain f32, so it must agree
//! as exactly as the GPU; its quantized path rounds activations to 8 bits, so it is compared with the
//! CPU reference under the same rounding).

use serde_json::Value;
use std::path::PathBuf;
use webmoe_cli::load::load_on;
use webmoe_core::generate::Backend;
use webmoe_core::options::{EngineOptions, KvDtype};
use webmoe_core::quant::GgmlType;
use webmoe_core::reference::CpuModel;
use webmoe_core::sampling::{Draw, SamplingParams};
use webmoe_engine::{DeviceRequest, OpenOptions};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/moe")
        .join(name)
}

fn u32s(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best as u32
}

struct Outcome {
    argmax_agree: f64,
    last_max_diff: f32,
    prefill_last_max_diff: f32,
    cpu_last_max_diff: f32,
    /// The device against the CPU reference on the same (possibly quantized) weights.
    gpu_cpu_max_diff: f32,
    /// The same as a normalized mean-squared error.
    device_ref_nmse: f64,
    greedy: Vec<u32>,
}

/// Runs the reference input one token at a time (every position's argmax), then again as one
/// multi-chunk prefill (last logits), then 16 greedy tokens sampled on the device.
fn run(family: &str, quant: &str, device: DeviceRequest) -> (Value, Outcome) {
    let r: Value = serde_json::from_str(
        &std::fs::read_to_string(fixture(&format!("{family}.ref.json"))).unwrap(),
    )
    .unwrap();
    let ids = u32s(&r["ids"]);
    // GGUF cannot store some Llama 4 settings: compare with the reference made under llama.cpp's.
    // The Hugging Face folder (`quant` "hf", bf16) has the fixture's own settings.
    let r = match r.get("gguf") {
        Some(g) if !quant.starts_with("hf") => g.clone(),
        _ => r,
    };
    let want_last: Vec<f32> = r["last_logits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    let opts = EngineOptions {
        max_context: 256,
        prefill_chunk: 16,
        kv_dtype: KvDtype::F32,
    };
    // "hf" is the bf16 folder; "hf-q8_0" etc. the folder quantized on load.
    let (path, on_load) = match quant.strip_prefix("hf") {
        Some(q) => (
            fixture(&format!("hf/{family}")),
            match q {
                "-q8_0" => Some(GgmlType::Q8_0),
                "-q4_0" => Some(GgmlType::Q4_0),
                "-q4_k" => Some(GgmlType::Q4_K),
                _ => None,
            },
        ),
        None => (fixture(&format!("{family}.{quant}.gguf")), None),
    };
    let open = OpenOptions {
        device,
        engine: opts,
        skip_self_test: true,
        ..Default::default()
    };
    let mut m = load_on(path.to_str().unwrap(), &open, on_load, true).unwrap();
    assert_eq!(
        m.engine.device(),
        if device == DeviceRequest::Cpu {
            "cpu"
        } else {
            "gpu"
        }
    );
    if let Some(ty) = on_load {
        // Every weight matrix was quantized (Q4_K falls back to Q4_0 for these 64-wide rows).
        let want = if ty == GgmlType::Q4_K {
            GgmlType::Q4_0
        } else {
            ty
        };
        for t in m
            .file
            .header
            .tensors
            .iter()
            .filter(|t| t.dims.len() >= 2 && t.dims[1] > 1)
        {
            assert_eq!(t.ggml_type, want, "{family} {quant}: {}", t.name);
        }
    }
    let e = &mut m.engine;
    let want_argmax = u32s(&r["argmax"]);
    let mut agree = 0;
    let mut last = Vec::new();
    for (i, &id) in ids.iter().enumerate() {
        pollster::block_on(e.forward(&[id], None)).unwrap();
        last = pollster::block_on(e.logits()).unwrap();
        agree += usize::from(argmax(&last) == want_argmax[i]);
    }
    let diff = |a: &[f32]| {
        a.iter()
            .zip(&want_last)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max)
    };
    let last_max_diff = diff(&last);
    let f = &m.file;
    // The CPU reference reads the streamed rows; matrices the GPU quantized on load go through the CPU
    // quantizer and back, so both sides run the same quantized weights.
    // The CPU backend rounds the inputs of quantized matrices to 8 bits: so does its reference.
    let q8_inputs: Vec<String> = match device {
        DeviceRequest::Cpu => f
            .header
            .tensors
            .iter()
            .filter(|t| t.ggml_type.block_elems() > 1)
            .map(|t| t.name.clone())
            .collect(),
        _ => Vec::new(),
    };
    let cpu = CpuModel::new(f.desc.clone(), |name| {
        let x = webmoe_loader::read_tensor_f32(f.src.as_ref(), &f.streamed_header, name)?;
        let i = f.header.tensors.iter().position(|t| t.name == name);
        match i.filter(|i| f.quantized_on_load.iter().any(|(q, _)| q == i)) {
            Some(i) => {
                let ty = f.header.tensors[i].ggml_type;
                let mut back = vec![0f32; x.len()];
                webmoe_core::quant::dequantize(
                    ty,
                    &webmoe_core::quant::quantize(ty, &x),
                    &mut back,
                );
                Ok::<_, webmoe_loader::LoadError>(back)
            }
            None => Ok(x),
        }
    })
    .unwrap()
    .with_q8_inputs(q8_inputs);
    let all = cpu.forward(&ids);
    let cpu_last = &all[all.len() - want_last.len()..];
    let cpu_last_max_diff = diff(cpu_last);
    let gpu_cpu_max_diff = last
        .iter()
        .zip(cpu_last)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    let device_ref_nmse = last
        .iter()
        .zip(cpu_last)
        .map(|(a, b)| ((a - b) as f64).powi(2))
        .sum::<f64>()
        / cpu_last.iter().map(|b| (*b as f64).powi(2)).sum::<f64>();
    e.reset();
    let greedy_params = SamplingParams::default();
    let mut next = pollster::block_on(e.forward(&ids, Some(Draw::new(&greedy_params, &[], 0))))
        .unwrap()
        .unwrap();
    let prefill_last_max_diff = diff(&pollster::block_on(e.logits()).unwrap());
    let mut greedy = vec![next];
    while greedy.len() < 16 {
        next = pollster::block_on(e.forward(&[next], Some(Draw::new(&greedy_params, &[], 0))))
            .unwrap()
            .unwrap();
        greedy.push(next);
    }
    eprintln!(
        "{family} {quant} {device:?}: argmax agreement {:.3}, last logits max |diff| {:.2e} (decode) {:.2e} (prefill) {:.2e} (CPU reference)",
        agree as f64 / ids.len() as f64,
        last_max_diff,
        prefill_last_max_diff,
        cpu_last_max_diff
    );
    let out = Outcome {
        argmax_agree: agree as f64 / ids.len() as f64,
        last_max_diff,
        prefill_last_max_diff,
        cpu_last_max_diff,
        gpu_cpu_max_diff,
        device_ref_nmse,
        greedy,
    };
    (r, out)
}

/// F32 GGUF or the bf16 Hugging Face folder (`source` "f32" or "hf"): last logits within 1e-3 (decode,
/// prefill and the CPU reference), every argmax and the 16 greedy tokens equal to transformers'.
fn check_exact(family: &str, source: &str, device: DeviceRequest) {
    let (r, o) = run(family, source, device);
    for (what, d) in [
        ("decode", o.last_max_diff),
        ("prefill", o.prefill_last_max_diff),
        ("CPU reference", o.cpu_last_max_diff),
    ] {
        assert!(d < 1e-3, "{family}: {what} last logits differ by {d}");
    }
    assert_eq!(
        o.argmax_agree, 1.0,
        "{family}: every position's argmax equals transformers'"
    );
    assert_eq!(o.greedy, u32s(&r["greedy"]), "{family}: greedy tokens");
}

/// Q8_0 GGUF: at least 85% of the argmaxes equal transformers' f32 ones.
fn check_q8_0(family: &str, device: DeviceRequest) {
    let (_, o) = run(family, "q8_0", device);
    assert!(
        o.argmax_agree >= 0.85,
        "{family}: argmax agreement {}",
        o.argmax_agree
    );
}

/// The bf16 folder quantized on load: Q8_0 within quantization noise of transformers (85% of the
/// argmaxes), and for every type the device equal to the CPU reference on the same quantized weights:
/// within 1e-3 for the GPU (f32 math); for the CPU backend, whose reference rounds the matrix inputs to
/// 8 bits as it does, an NMSE within 1e-3 (a last-bit difference can move an input across a rounding
/// boundary, which these small random models amplify to max |diff| of a few 1e-2; a wrong kernel gives
/// NMSE near 1).
/// (The fixtures' 64-wide rows take Q4_K's Q4_0 fallback; the GPU's Q4_K quantization itself is
/// checked byte for byte on 256-multiple rows in webmoe-gpu's tests/quantize.rs.)
fn check_quantized_on_load(family: &str, device: DeviceRequest) {
    for q in ["hf-q8_0", "hf-q4_0", "hf-q4_k"] {
        let (_, o) = run(family, q, device);
        eprintln!(
            "{family} {q} {device:?}: NMSE against the reference {:e}",
            o.device_ref_nmse
        );
        if device == DeviceRequest::Cpu {
            assert!(
                o.device_ref_nmse < 1e-3,
                "{family} {q} {device:?}: NMSE {} against the CPU reference",
                o.device_ref_nmse
            );
        } else {
            assert!(
                o.gpu_cpu_max_diff < 1e-3,
                "{family} {q} {device:?}: device and CPU reference differ by {}",
                o.gpu_cpu_max_diff
            );
        }
        if q == "hf-q8_0" {
            // The CPU backend's 8-bit activations add their rounding to the weights': on these
            // tiny random models that costs a few argmaxes (llama4: 0.825, measured 2026-12-01).
            let bound = if device == DeviceRequest::Cpu {
                0.8
            } else {
                0.85
            };
            assert!(
                o.argmax_agree >= bound,
                "{family} {q} {device:?}: argmax agreement {}",
                o.argmax_agree
            );
        }
    }
}

macro_rules! families {
    ($($family:ident),*) => {
        families!(@device gpu, Gpu, $($family),*);
        families!(@device cpu, Cpu, $($family),*);
    };
    (@device $dev:ident, $req:ident, $($family:ident),*) => {
        mod $dev {
            mod f32_gguf_matches_transformers {
                $(#[test]
                fn $family() {
                    crate::check_exact(stringify!($family), "f32", webmoe_engine::DeviceRequest::$req);
                })*
            }
            mod safetensors_folder_matches_transformers {
                $(#[test]
                fn $family() {
                    crate::check_exact(stringify!($family), "hf", webmoe_engine::DeviceRequest::$req);
                })*
            }
            mod safetensors_quantized_on_load {
                $(#[test]
                fn $family() {
                    crate::check_quantized_on_load(stringify!($family), webmoe_engine::DeviceRequest::$req);
                })*
            }
            mod q8_0_gguf_stays_within_quantization_noise {
                $(#[test]
                fn $family() {
                    crate::check_q8_0(stringify!($family), webmoe_engine::DeviceRequest::$req);
                })*
            }
        }
    };
}

families!(
    mixtral,
    qwen2moe,
    qwen3moe,
    olmoe,
    llama4,
    llama4_128e,
    qwen2,
    qwen3
);

/// Mixtral with its experts in MXFP4 (gguf-py's quantization, as llama-quantize's MXFP4_MOE): the CPU
/// backend runs it as its CPU reference does on the same decoded weights (NMSE within 1e-3, as for
/// the other quantized types) and stays near transformers' f32 argmaxes (4-bit experts: measured
/// agreement 0.70 on 2026-12-03, bound 0.6). The GPU kernels have no MXFP4 decoder yet: asked for the
/// GPU, opening fails naming the tensor and its type; `auto` runs it on the CPU.
#[test]
fn mxfp4_experts_run_on_the_cpu_backend() {
    let (_, o) = run("mixtral", "mxfp4", DeviceRequest::Cpu);
    assert!(
        o.device_ref_nmse < 1e-3,
        "mixtral mxfp4: NMSE {} against the CPU reference",
        o.device_ref_nmse
    );
    assert!(
        o.argmax_agree >= 0.6,
        "mixtral mxfp4: argmax agreement {}",
        o.argmax_agree
    );
}

#[test]
fn mxfp4_experts_on_the_gpu_fail_naming_the_tensor() {
    let path = fixture("mixtral.mxfp4.gguf");
    let open = OpenOptions {
        device: DeviceRequest::Gpu,
        skip_self_test: true,
        ..Default::default()
    };
    let err = match load_on(path.to_str().unwrap(), &open, None, true) {
        Ok(_) => panic!("the GPU has no MXFP4 kernels"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains("ffn_gate_exps.weight is MXFP4") && err.contains("device cpu"),
        "{err}"
    );
    let auto = OpenOptions {
        device: DeviceRequest::Auto,
        skip_self_test: true,
        ..Default::default()
    };
    let m = load_on(path.to_str().unwrap(), &auto, None, true).unwrap();
    assert_eq!(m.engine.device(), "cpu");
}
