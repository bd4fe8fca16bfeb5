//! Whole forward passes of tiny random Llama models (dense and MoE) on the CPU backend against the f32
//! reference pass: chunked prefill then decode, every weight type, tied and untied output, f16 and f32
//! KV caches; and the request errors.
//!
//! The oracle is the f32 reference pass with the inputs of quantized matrices rounded as 8-bit
//! activations (`CpuModel::with_q8_inputs`), which is what the backend computes with integers.
//! Tolerances: most types agree to an NMSE of order 1e-13 (only the summation order differs). The
//! random models are chaotic (random weights of magnitude up to 6–200 with Q8_0, Q3_K and Q6_K blocks
//! give attention softmaxes near one-hot), so a last-bit difference that moves one activation across a
//! rounding boundary grows to an NMSE of up to 2e-3 for those types (measured: Q8_0 1.8e-3, Q3_K 6e-4,
//! Q6_K 1e-4); the bound is 5e-3. A wrong op or index gives NMSE near 1.

use webmoe_core::gguf::{parse_header, GgufHeader, HeaderParse};
use webmoe_core::model::ModelDesc;
use webmoe_core::options::{EngineOptions, KvDtype};
use webmoe_core::quant::{dequantize, GgmlType};
use webmoe_core::reference::CpuModel;
use webmoe_core::sampling::Draw;
use webmoe_core::synthetic::SyntheticLlama;
use webmoe_core::TensorSink;
use webmoe_cpu::{CpuError, Engine};

fn nmse(a: &[f32], b: &[f32]) -> f64 {
    let e: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
    let n: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    e / n.max(1e-30)
}

fn synthetic(ty: GgmlType, untied: bool, experts: Option<(u64, u64)>) -> (Vec<u8>, GgufHeader) {
    let hidden = if ty.block_elems() == 256 { 256 } else { 128 };
    let bytes = SyntheticLlama {
        vocab: 300,
        hidden,
        layers: 2,
        heads: 4,
        kv_heads: 2,
        ffn: hidden * 2,
        ty,
        untied,
        context: 64,
        seed: ty.id() as u64 + 3,
        experts,
    }
    .writer()
    .to_bytes();
    let HeaderParse::Done(h) = parse_header(&bytes, bytes.len() as u64).unwrap() else {
        unreachable!()
    };
    (bytes, *h)
}

fn build(
    ty: GgmlType,
    untied: bool,
    kv: KvDtype,
    chunk: usize,
    experts: Option<(u64, u64)>,
) -> (Engine, CpuModel) {
    let (bytes, h) = synthetic(ty, untied, experts);
    let desc = ModelDesc::from_gguf(&h, None).unwrap();
    let data = |name: &str| {
        let t = h.tensor(name).unwrap();
        let (s, e) = h.tensor_range(t);
        (t, &bytes[s as usize..e as usize])
    };
    // The oracle rounds the inputs of quantized matrices as 8-bit activations, as the backend does.
    let quantized = h
        .tensors
        .iter()
        .filter(|t| t.ggml_type.block_elems() > 1)
        .map(|t| t.name.clone());
    let cpu = CpuModel::new(desc.clone(), |name| -> Result<Vec<f32>, ()> {
        let (t, b) = data(name);
        let mut out = vec![0f32; t.n_elements() as usize];
        dequantize(t.ggml_type, b, &mut out);
        Ok(out)
    })
    .unwrap()
    .with_q8_inputs(quantized);
    let opts = EngineOptions {
        max_context: 64,
        prefill_chunk: chunk,
        kv_dtype: kv,
    };
    let mut engine = Engine::new(desc, &h, opts, None).unwrap();
    for (i, t) in h.tensors.iter().enumerate() {
        let (_, b) = data(&t.name);
        // Pieces of 1001 bytes: rows arrive split across writes.
        for (j, c) in b.chunks(1001).enumerate() {
            engine.weights_mut().write(i, j as u64 * 1001, c).unwrap();
        }
    }
    engine.finish_upload().unwrap();
    (engine, cpu)
}

/// Prefill 8 tokens (two chunks of 4), then decode the rest; the worst NMSE over positions 7...
fn worst_nmse(ty: GgmlType, untied: bool, kv: KvDtype, experts: Option<(u64, u64)>) -> f64 {
    let (mut engine, cpu) = build(ty, untied, kv, 4, experts);
    let ids: Vec<u32> = vec![1, 17, 299, 5, 42, 42, 7, 0, 128, 64, 3];
    let want = cpu.forward(&ids);
    let vocab = 300;
    engine.forward(&ids[..8], None).unwrap();
    let mut worst = 0f64;
    for t in 7..ids.len() {
        if t >= 8 {
            engine.forward(&ids[t..t + 1], None).unwrap();
        }
        worst = worst.max(nmse(engine.logits(), &want[t * vocab..(t + 1) * vocab]));
    }
    worst
}

const FLOAT_NMSE: f64 = 1e-7;
const QUANT_NMSE: f64 = 5e-3;

#[test]
fn float_weights_match_the_reference_in_f32() {
    for ty in [GgmlType::F32, GgmlType::F16, GgmlType::BF16] {
        let e = worst_nmse(ty, false, KvDtype::F32, None);
        assert!(e < FLOAT_NMSE, "{}: nmse {e:e}", ty.name());
    }
}

#[test]
fn every_quantized_type_stays_within_the_activation_quantization_tolerance() {
    for ty in GgmlType::ALL.into_iter().filter(|t| t.block_elems() > 1) {
        let e = worst_nmse(ty, ty == GgmlType::Q8_0, KvDtype::F32, None);
        eprintln!("{}: nmse {e:e}", ty.name());
        assert!(e < QUANT_NMSE, "{}: nmse {e:e}", ty.name());
    }
}

#[test]
fn f16_kv_cache_rounds_only_a_little() {
    // As the GPU test: NMSE of order 1e-6 from rounding keys and values to f16.
    let e = worst_nmse(GgmlType::Q4_K, false, KvDtype::F16, None);
    assert!(e < 1e-5, "nmse {e:e}");
}

#[test]
fn moe_matches_the_reference() {
    // F32 experts: the same experts are chosen and the sums agree to f32 rounding.
    let e = worst_nmse(GgmlType::F32, false, KvDtype::F32, Some((8, 2)));
    assert!(e < FLOAT_NMSE, "F32 experts: nmse {e:e}");
    for (ty, experts) in [(GgmlType::Q8_0, (16, 4)), (GgmlType::Q4_K, (4, 1))] {
        let e = worst_nmse(ty, true, KvDtype::F32, Some(experts));
        eprintln!("{} {experts:?}: nmse {e:e}", ty.name());
        assert!(e < QUANT_NMSE, "{} {experts:?}: nmse {e:e}", ty.name());
    }
}

#[test]
fn greedy_sampling_takes_the_argmax_of_the_logits() {
    let (mut engine, _) = build(GgmlType::Q4_0, false, KvDtype::F16, 16, None);
    let p = webmoe_core::sampling::SamplingParams::default();
    let next = engine
        .forward(&[1, 2, 3], Some(Draw::new(&p, &[], 0)))
        .unwrap()
        .unwrap();
    let l = engine.logits();
    let best = (0..l.len()).fold(0, |b, i| if l[i] > l[b] { i } else { b });
    assert_eq!(next as usize, best);
}

#[test]
fn requests_that_do_not_fit_are_clear_errors() {
    let (mut engine, _) = build(GgmlType::Q8_0, false, KvDtype::F16, 16, None);
    match engine.forward(&[1u32; 65], None) {
        Err(CpuError::Invalid(msg)) => assert!(msg.contains("context size is 64"), "{msg}"),
        other => panic!("expected a context error, got {other:?}"),
    }
    assert!(matches!(
        engine.forward(&[300], None),
        Err(CpuError::Invalid(_))
    ));
    assert!(matches!(
        engine.forward(&[], None),
        Err(CpuError::Invalid(_))
    ));
}

#[test]
fn a_model_over_the_memory_limit_is_refused_before_loading() {
    let (_, h) = synthetic(GgmlType::F32, true, None);
    let desc = ModelDesc::from_gguf(&h, None).unwrap();
    match Engine::new(desc, &h, EngineOptions::default(), Some(1 << 20)) {
        Err(CpuError::TooLarge(msg)) => {
            assert!(
                msg.contains("GiB") && msg.contains("WebAssembly heap"),
                "{msg}"
            )
        }
        Err(e) => panic!("expected TooLarge, got {e}"),
        Ok(_) => panic!("expected TooLarge, got an engine"),
    }
}

#[test]
fn truncated_weights_are_an_error_naming_the_tensor() {
    let (bytes, h) = synthetic(GgmlType::Q4_0, false, None);
    let desc = ModelDesc::from_gguf(&h, None).unwrap();
    let mut engine = Engine::new(desc, &h, EngineOptions::default(), None).unwrap();
    for (i, t) in h.tensors.iter().enumerate() {
        let (s, e) = h.tensor_range(t);
        let e = if i == 3 { e - 10 } else { e };
        engine
            .weights_mut()
            .write(i, 0, &bytes[s as usize..e as usize])
            .unwrap();
    }
    let err = engine.finish_upload().unwrap_err().to_string();
    assert!(err.contains(&h.tensors[3].name), "{err}");
    // Bytes that do not continue a tensor are refused at once.
    assert!(engine.weights_mut().write(0, 5, &[0; 4]).is_err());
}
