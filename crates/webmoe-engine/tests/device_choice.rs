//! The device choice on this machine's adapter (lavapipe in CI): which backend `auto`, `gpu` and `cpu`
//! take and why, the self-test and its forced failure, the memory limits, and no adapter at all.

use webmoe_core::generate::Backend;
use webmoe_core::gguf::{parse_header, GgufHeader, HeaderParse};
use webmoe_core::model::ModelDesc;
use webmoe_core::quant::GgmlType;
use webmoe_core::synthetic::SyntheticLlama;
use webmoe_engine::{open, AnyEngine, DeviceReport, DeviceRequest, EngineError, OpenOptions};

fn model() -> (ModelDesc, GgufHeader) {
    let bytes = SyntheticLlama {
        vocab: 300,
        hidden: 256,
        layers: 2,
        heads: 4,
        kv_heads: 2,
        ffn: 512,
        ty: GgmlType::Q4_K,
        untied: true,
        context: 64,
        seed: 9,
        experts: Some((4, 2)),
    }
    .writer()
    .to_bytes();
    let HeaderParse::Done(h) = parse_header(&bytes, bytes.len() as u64).unwrap() else {
        unreachable!()
    };
    (ModelDesc::from_gguf(&h, None).unwrap(), *h)
}

fn choose(o: OpenOptions) -> Result<(AnyEngine, DeviceReport), EngineError> {
    let (desc, h) = model();
    let t0 = std::time::Instant::now();
    pollster::block_on(open(&desc, &h, &o, &move || t0.elapsed().as_secs_f64()))
}

#[test]
fn cpu_is_taken_when_asked() {
    let (e, r) = choose(OpenOptions {
        device: DeviceRequest::Cpu,
        ..Default::default()
    })
    .unwrap();
    assert_eq!((e.device(), r.device), ("cpu", "cpu"));
    assert!(
        r.reason.contains("requested") && r.cpu_kernels.is_some(),
        "{r:?}"
    );
}

#[test]
fn gpu_passes_its_self_test_on_this_adapter() {
    let (e, r) = choose(OpenOptions {
        device: DeviceRequest::Gpu,
        ..Default::default()
    })
    .unwrap();
    assert_eq!(e.device(), "gpu");
    let t = r.self_test.expect("the self-test ran");
    assert!(t.passed, "{t:?}");
    for kernel in [
        "model prefill",
        "model decode",
        "sampler",
        "matvec Q4_K",
        "matmul Q4_K",
        "matvec F32",
    ] {
        assert!(
            t.checks.iter().any(|c| c.kernel == kernel),
            "{kernel} in {t:?}"
        );
    }
    eprintln!(
        "self-test: {:.3} s, {} checks",
        r.self_test_seconds,
        t.checks.len()
    );
}

#[test]
fn auto_prefers_the_cpu_over_a_software_adapter() {
    let (e, r) = choose(OpenOptions::default()).unwrap();
    // CI's only adapter is lavapipe; on a machine with a real GPU, auto takes it.
    let software = pollster::block_on(webmoe_gpu::Gpu::new(Default::default()))
        .unwrap()
        .software_reason();
    match software {
        Some(_) => {
            assert_eq!(e.device(), "cpu");
            assert!(r.reason.contains("software adapter"), "{r:?}");
        }
        None => assert_eq!(e.device(), "gpu"),
    }
}

#[test]
fn a_failed_self_test_falls_back_to_the_cpu_and_says_which_kernel() {
    let (mut e, r) = choose(OpenOptions {
        force_self_test_failure: true,
        software_adapter_is_gpu: true,
        ..Default::default()
    })
    .unwrap();
    assert_eq!(e.device(), "cpu");
    assert!(
        r.reason.contains("self-test failed") && r.reason.contains("model prefill"),
        "{r:?}"
    );
    assert!(!r.self_test.unwrap().passed);
    // A CPU engine waiting for its weights: running it now is an error, not a panic.
    assert!(matches!(
        pollster::block_on(e.forward(&[1, 2], None)),
        Err(EngineError::Cpu(webmoe_cpu::CpuError::Invalid(_)))
    ));
}

#[test]
fn gpu_with_a_failed_self_test_is_an_error() {
    match choose(OpenOptions {
        device: DeviceRequest::Gpu,
        force_self_test_failure: true,
        ..Default::default()
    }) {
        Err(EngineError::SelfTest(m)) => assert!(m.contains("self-test failed"), "{m}"),
        Err(e) => panic!("expected a self-test error, got {e}"),
        Ok(_) => panic!("expected a self-test error, got an engine"),
    }
}

#[test]
fn gpu_without_an_adapter_is_a_clear_error_and_auto_runs_on_the_cpu() {
    let none = Some("navigator.gpu is missing".to_string());
    match choose(OpenOptions {
        device: DeviceRequest::Gpu,
        no_gpu_reason: none.clone(),
        ..Default::default()
    }) {
        Err(EngineError::NoGpu(m)) => assert!(m.contains("no GPU adapter"), "{m}"),
        Err(e) => panic!("expected NoGpu, got {e}"),
        Ok(_) => panic!("expected NoGpu, got an engine"),
    }
    let (e, r) = choose(OpenOptions {
        no_gpu_reason: none,
        ..Default::default()
    })
    .unwrap();
    assert_eq!(e.device(), "cpu");
    assert!(r.reason.contains("navigator.gpu is missing"), "{r:?}");
}

#[test]
fn a_model_over_the_cpu_limit_runs_on_whatever_adapter_there_is() {
    let limit = Some(64 << 10);
    match choose(OpenOptions {
        device: DeviceRequest::Cpu,
        cpu_limit: limit,
        ..Default::default()
    }) {
        Err(EngineError::Cpu(webmoe_cpu::CpuError::TooLarge(m))) => {
            assert!(m.contains("GiB") && m.contains("WebAssembly heap"), "{m}")
        }
        Err(e) => panic!("expected TooLarge, got {e}"),
        Ok(_) => panic!("expected TooLarge, got an engine"),
    }
    let (e, r) = choose(OpenOptions {
        cpu_limit: limit,
        ..Default::default()
    })
    .unwrap();
    assert_eq!(e.device(), "gpu", "{r:?}");
    // Over the CPU limit with no adapter: model-too-large naming both.
    match choose(OpenOptions {
        cpu_limit: limit,
        no_gpu_reason: Some("no WebGPU".into()),
        ..Default::default()
    }) {
        Err(EngineError::TooLarge(m)) => {
            assert!(m.contains("no WebGPU") && m.contains("GiB"), "{m}")
        }
        Err(e) => panic!("expected TooLarge, got {e}"),
        Ok(_) => panic!("expected TooLarge, got an engine"),
    }
}
