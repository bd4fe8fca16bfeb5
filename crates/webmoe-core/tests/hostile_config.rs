//! Hostile model configurations: Hugging Face `config.json` values without bounds, zero or
//! inconsistent sizes, garbage RoPE scaling, NaN or negative epsilons and bases, in both input formats.
//! Each gives a clear error naming the key, before anything is sized by it.

use std::collections::HashMap;
use webmoe_core::gguf::{parse_header, HeaderParse};
use webmoe_core::hf::{CheckpointTensor, HfModel};
use webmoe_core::model::ModelDesc;
use webmoe_core::quant::GgmlType;
use webmoe_core::synthetic::SyntheticLlama;

/// A small Llama config and the tensor table that matches it.
fn llama() -> (serde_json::Value, HashMap<String, CheckpointTensor>) {
    let config = serde_json::json!({
        "model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "intermediate_size": 128, "vocab_size": 100, "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0, "max_position_embeddings": 256
    });
    let mut t = HashMap::new();
    let mut add = |n: &str, shape: &[usize]| {
        t.insert(
            n.to_string(),
            CheckpointTensor {
                dtype: GgmlType::F32,
                shape: shape.to_vec(),
            },
        );
    };
    add("model.embed_tokens.weight", &[100, 64]);
    add("model.norm.weight", &[64]);
    for i in 0..2 {
        let p = |s: &str| format!("model.layers.{i}.{s}.weight");
        add(&p("input_layernorm"), &[64]);
        add(&p("post_attention_layernorm"), &[64]);
        add(&p("self_attn.q_proj"), &[64, 64]);
        add(&p("self_attn.k_proj"), &[32, 64]);
        add(&p("self_attn.v_proj"), &[32, 64]);
        add(&p("self_attn.o_proj"), &[64, 64]);
        add(&p("mlp.gate_proj"), &[128, 64]);
        add(&p("mlp.up_proj"), &[128, 64]);
        add(&p("mlp.down_proj"), &[64, 128]);
    }
    (config, t)
}

fn hf_error(edit: impl Fn(&mut serde_json::Value)) -> String {
    let (mut c, t) = llama();
    edit(&mut c);
    match HfModel::new(&c, &t) {
        Ok(_) => "accepted".into(),
        Err(e) => e.to_string(),
    }
}

#[test]
fn the_unedited_config_is_accepted() {
    let (c, t) = llama();
    HfModel::new(&c, &t).unwrap();
}

#[test]
fn hf_sizes_without_bounds_are_refused_naming_the_key() {
    let cases: &[(&str, serde_json::Value, &str)] = &[
        (
            "num_hidden_layers",
            1_000_000_000u64.into(),
            "num_hidden_layers",
        ),
        (
            "num_local_experts",
            (1u64 << 62).into(),
            "num_local_experts",
        ),
        ("head_dim", 1_000_000_000_000u64.into(), "head_dim"),
        ("hidden_size", 0.into(), "hidden_size"),
        ("num_key_value_heads", 0.into(), "num_key_value_heads"),
        ("num_key_value_heads", 3.into(), "num_key_value_heads"),
        ("vocab_size", (1u64 << 40).into(), "vocab_size"),
        (
            "intermediate_size",
            (1u64 << 40).into(),
            "intermediate_size",
        ),
        (
            "partial_rotary_factor",
            1e30.into(),
            "partial_rotary_factor",
        ),
    ];
    for (key, value, word) in cases {
        let e = hf_error(|c| c[*key] = value.clone());
        assert!(e.contains(word), "{key} = {value}: {e}");
    }
}

#[test]
fn garbage_rope_scaling_is_refused() {
    let cases = [
        serde_json::json!("linear"),
        serde_json::json!({"factor": 4.0}),
        serde_json::json!({"rope_type": 7}),
        serde_json::json!({"rope_type": "llama3", "factor": 0.0}),
        serde_json::json!({"rope_type": "llama3", "factor": "big"}),
        serde_json::json!({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 4.0, "high_freq_factor": 1.0}),
        serde_json::json!({"rope_type": "yarn", "factor": 8.0}),
    ];
    for rs in cases {
        let e = hf_error(|c| {
            c["rope_scaling"] = rs.clone();
            c["partial_rotary_factor"] = 1e30.into();
        });
        assert!(
            e.contains("rope") || e.contains("RoPE") || e.contains("partial"),
            "{rs}: {e}"
        );
        let e = hf_error(|c| c["rope_scaling"] = rs.clone());
        assert!(
            e.contains("rope_scaling") || e.contains("RoPE"),
            "{rs}: {e}"
        );
    }
}

#[test]
fn nan_and_negative_values_are_refused() {
    for (key, value) in [
        ("rms_norm_eps", serde_json::json!(-1e-5)),
        ("rms_norm_eps", serde_json::json!(0.0)),
        ("rope_theta", serde_json::json!(0.0)),
        ("rope_theta", serde_json::json!(-5.0)),
    ] {
        let e = hf_error(|c| c[key] = value.clone());
        assert!(
            e.contains("epsilon") || e.contains("RoPE base"),
            "{key} = {value}: {e}"
        );
    }
}

/// The GGUF path: the same bounds on a synthetic file whose metadata is edited.
#[test]
fn gguf_nonsense_values_are_refused() {
    use webmoe_core::gguf::GgufValue as Value;
    let spec = SyntheticLlama {
        vocab: 64,
        hidden: 64,
        layers: 1,
        heads: 4,
        kv_heads: 2,
        ffn: 64,
        ty: GgmlType::F32,
        untied: false,
        context: 64,
        seed: 1,
        experts: None,
    };
    let bytes = spec.writer().to_bytes();
    let HeaderParse::Done(h) = parse_header(&bytes, bytes.len() as u64).unwrap() else {
        panic!("header")
    };
    ModelDesc::from_gguf(&h, None).unwrap();
    for (key, value, word) in [
        (
            "llama.attention.layer_norm_rms_epsilon",
            Value::F64(f64::NAN),
            "epsilon",
        ),
        (
            "llama.attention.layer_norm_rms_epsilon",
            Value::F64(-1.0),
            "epsilon",
        ),
        ("llama.rope.freq_base", Value::F64(0.0), "RoPE base"),
        ("llama.rope.freq_base", Value::F64(f64::NAN), "RoPE base"),
        (
            "llama.context_length",
            Value::U64(1 << 40),
            "context length",
        ),
    ] {
        let mut h = (*h).clone();
        h.metadata.insert(key.into(), value);
        let e = ModelDesc::from_gguf(&h, None).unwrap_err().to_string();
        assert!(e.contains(word), "{key}: {e}");
    }
    // llama3 scaling tables of zeros (factor 0) divide by zero: refused.
    let e = ModelDesc::from_gguf(&h, Some(vec![0.0; 8]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("divisor"), "{e}");
}
