//! Hugging Face folders read in place. Broken folders or folders that disagree with themselves give a
//! clear error naming the cause: missing expert tensors, expert counts that differ from the config, more
//! experts per token than experts, truncated or corrupt safetensors, unknown model types, missing files
//! (the committed fixtures in tests/fixtures/moe/hf, edited in memory). With quantization on load the
//! engine's header has the quantized types while the source serves the matrices' source rows, for the
//! GPU to quantize (webmoe-gpu's tests/quantize.rs checks that step).

mod common;
use common::fixture_folder;

use serde_json::Value;
use std::collections::HashMap;
use webmoe_loader::{ByteSource, Checkpoint, LoadError, MemorySource};

/// Every fixture folder: the two dense families, then the MoE ones.
const FAMILIES: [&str; 8] = [
    "qwen2",
    "qwen3",
    "mixtral",
    "qwen2moe",
    "qwen3moe",
    "olmoe",
    "llama4",
    "llama4_128e",
];

fn open(files: &HashMap<String, Vec<u8>>) -> Result<Checkpoint, LoadError> {
    let open_file = |name: &str| -> Result<Option<Box<dyn ByteSource + Sync>>, LoadError> {
        Ok(files
            .get(name)
            .map(|b| Box::new(MemorySource(b.clone())) as Box<dyn ByteSource + Sync>))
    };
    Checkpoint::open("fixture", &open_file, None)
}

fn err(files: &HashMap<String, Vec<u8>>) -> String {
    match open(files) {
        Ok(_) => panic!("the broken folder opened"),
        Err(e) => e.to_string(),
    }
}

fn edit_config(files: &mut HashMap<String, Vec<u8>>, f: impl FnOnce(&mut Value)) {
    let mut c: Value = serde_json::from_slice(&files["config.json"]).unwrap();
    f(&mut c);
    files.insert("config.json".into(), serde_json::to_vec(&c).unwrap());
}

/// Rewrites the safetensors header of `file` with `f` (tensor data unchanged).
fn edit_header(files: &mut HashMap<String, Vec<u8>>, file: &str, f: impl FnOnce(&mut Value)) {
    let b = &files[file];
    let n = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
    let mut h: Value = serde_json::from_slice(&b[8..8 + n]).unwrap();
    f(&mut h);
    let mut text = serde_json::to_vec(&h).unwrap();
    // Keep the data where it was: pad the header to its old length (or longer, 8-aligned).
    while text.len() < n {
        text.push(b' ');
    }
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend(&text);
    out.extend(&b[8 + n..]);
    files.insert(file.into(), out);
}

#[test]
fn the_fixture_folders_open() {
    for family in &FAMILIES[2..] {
        let ck = open(&fixture_folder(family)).unwrap();
        assert_eq!(ck.len(), ck.header.file_size, "{family}");
    }
}

#[test]
fn missing_expert_tensors_are_named() {
    let mut f = fixture_folder("qwen2moe");
    edit_header(&mut f, "model.safetensors", |h| {
        let m = h.as_object_mut().unwrap();
        let t = m
            .remove("model.layers.1.mlp.experts.7.up_proj.weight")
            .unwrap();
        m.insert("model.layers.1.mlp.experts.7.up.weight".into(), t);
    });
    let e = err(&f);
    assert!(
        e.contains("missing tensor model.layers.1.mlp.experts.7.up_proj.weight"),
        "{e}"
    );
}

#[test]
fn expert_counts_that_disagree_with_the_config_are_reported() {
    // Fewer experts in the config than in the checkpoint.
    let mut f = fixture_folder("qwen3moe");
    edit_config(&mut f, |c| c["num_local_experts"] = 12.into());
    let e = err(&f);
    assert!(e.contains("more experts than the config's 12"), "{e}");
    // More experts in the config than in the checkpoint.
    let mut f = fixture_folder("mixtral");
    edit_config(&mut f, |c| c["num_local_experts"] = 9.into());
    let e = err(&f);
    assert!(
        e.contains("missing tensor") && e.contains("experts.8.w1"),
        "{e}"
    );
    // Llama 4 fused experts: the shape names the disagreement.
    let mut f = fixture_folder("llama4");
    edit_config(&mut f, |c| c["num_local_experts"] = 8.into());
    let e = err(&f);
    assert!(
        e.contains("gate_up_proj") && e.contains("[16, 64, 128]"),
        "{e}"
    );
}

#[test]
fn more_experts_per_token_than_experts_is_reported() {
    let mut f = fixture_folder("olmoe");
    edit_config(&mut f, |c| c["num_experts_per_tok"] = 9.into());
    let e = err(&f);
    assert!(
        e.contains("num_experts_per_tok 9") && e.contains("1..=8"),
        "{e}"
    );
}

#[test]
fn truncated_and_corrupt_safetensors_are_reported() {
    let mut f = fixture_folder("olmoe");
    let b = f["model.safetensors"].clone();
    f.insert("model.safetensors".into(), b[..b.len() - 100].to_vec());
    let e = err(&f);
    assert!(e.contains("truncated"), "{e}");
    f.insert(
        "model.safetensors".into(),
        b"\xff\xff\xff\xff\xff\xff\xff\x7f{}".to_vec(),
    );
    let e = err(&f);
    assert!(e.contains("not a safetensors file"), "{e}");
    let mut g = b.clone();
    g[8] = b'[';
    f.insert("model.safetensors".into(), g);
    let e = err(&f);
    assert!(e.contains("invalid safetensors header"), "{e}");
}

#[test]
fn unknown_model_types_and_missing_files_are_reported() {
    let mut f = fixture_folder("olmoe");
    edit_config(&mut f, |c| c["model_type"] = "gpt_neox".into());
    let e = err(&f);
    assert!(e.contains("unsupported architecture \"gpt_neox\""), "{e}");
    let mut f = fixture_folder("llama4");
    f.remove("model-00002-of-00004.safetensors");
    let e = err(&f);
    assert!(
        e.contains("model-00002-of-00004.safetensors") && e.contains("not found"),
        "{e}"
    );
    let mut f = fixture_folder("olmoe");
    f.remove("config.json");
    let e = err(&f);
    assert!(e.contains("config.json") && e.contains("not found"), "{e}");
}

#[test]
fn integer_tensors_are_reported() {
    let mut f = fixture_folder("olmoe");
    edit_header(&mut f, "model.safetensors", |h| {
        h["model.norm.weight"]["dtype"] = "I16".into();
    });
    let e = err(&f);
    assert!(e.contains("model.norm.weight") && e.contains("I16"), "{e}");
}

/// Quantization on load plans the matrices in the quantized type and streams their bf16 source rows
/// unchanged, for any read range (Q4_K on a synthetic Llama with 256-wide rows, read in odd slices).
#[test]
fn quantized_matrices_stream_their_source_rows() {
    use safetensors::tensor::TensorView;
    use webmoe_core::quant::GgmlType;
    let (h, ffn, vocab) = (256usize, 512usize, 32usize);
    let shapes: Vec<(String, Vec<usize>)> = [
        ("model.embed_tokens.weight", vec![vocab, h]),
        ("model.norm.weight", vec![h]),
        ("model.layers.0.input_layernorm.weight", vec![h]),
        ("model.layers.0.post_attention_layernorm.weight", vec![h]),
        ("model.layers.0.self_attn.q_proj.weight", vec![h, h]),
        ("model.layers.0.self_attn.k_proj.weight", vec![h, h]),
        ("model.layers.0.self_attn.v_proj.weight", vec![h, h]),
        ("model.layers.0.self_attn.o_proj.weight", vec![h, h]),
        ("model.layers.0.mlp.gate_proj.weight", vec![ffn, h]),
        ("model.layers.0.mlp.up_proj.weight", vec![ffn, h]),
        ("model.layers.0.mlp.down_proj.weight", vec![h, ffn]),
    ]
    .into_iter()
    .map(|(n, s)| (n.to_string(), s))
    .collect();
    let mut seed = 7u32;
    let data: Vec<(String, Vec<u8>, Vec<usize>)> = shapes
        .into_iter()
        .map(|(n, s)| {
            let bytes = (0..s.iter().product::<usize>())
                .flat_map(|_| {
                    seed = seed.wrapping_mul(1664525).wrapping_add(1013904223);
                    half::bf16::from_f32((seed >> 8) as f32 / (1 << 24) as f32 - 0.5).to_le_bytes()
                })
                .collect();
            (n, bytes, s)
        })
        .collect();
    let views: Vec<(String, TensorView)> = data
        .iter()
        .map(|(n, b, s)| {
            (
                n.clone(),
                TensorView::new(safetensors::Dtype::BF16, s.clone(), b).unwrap(),
            )
        })
        .collect();
    let mut files = HashMap::new();
    files.insert(
        "model.safetensors".to_string(),
        safetensors::serialize(views, None).unwrap(),
    );
    let config = serde_json::json!({
        "model_type": "llama", "hidden_size": h, "num_hidden_layers": 1, "num_attention_heads": 4,
        "num_key_value_heads": 4, "intermediate_size": ffn, "vocab_size": vocab,
        "rms_norm_eps": 1e-5, "tie_word_embeddings": true
    });
    files.insert("config.json".into(), serde_json::to_vec(&config).unwrap());
    let open_file = |name: &str| -> Result<Option<Box<dyn ByteSource + Sync>>, LoadError> {
        Ok(files
            .get(name)
            .map(|b| Box::new(MemorySource(b.clone())) as Box<dyn ByteSource + Sync>))
    };
    let ck = Checkpoint::open("synthetic", &open_file, Some(GgmlType::Q4_K)).unwrap();
    let src: HashMap<&str, &Vec<u8>> = data.iter().map(|(n, b, _)| (n.as_str(), b)).collect();
    let hf_name = |gguf: &str| match gguf {
        "token_embd.weight" => "model.embed_tokens.weight".to_string(),
        n => {
            let part = n.trim_start_matches("blk.0.").trim_end_matches(".weight");
            let m = match part {
                "attn_q" => "self_attn.q_proj",
                "attn_k" => "self_attn.k_proj",
                "attn_v" => "self_attn.v_proj",
                "attn_output" => "self_attn.o_proj",
                "ffn_gate" => "mlp.gate_proj",
                "ffn_up" => "mlp.up_proj",
                "ffn_down" => "mlp.down_proj",
                other => panic!("unexpected {other}"),
            };
            format!("model.layers.0.{m}.weight")
        }
    };
    let mut checked = 0;
    // The tensors quantized on load: those whose stored and streamed types differ.
    let converted: Vec<(usize, GgmlType)> = (ck.header.tensors.iter())
        .zip(&ck.streamed_header.tensors)
        .enumerate()
        .filter(|(_, (t, s))| t.ggml_type != s.ggml_type)
        .map(|(i, (_, s))| (i, s.ggml_type))
        .collect();
    for (i, (t, st)) in ck
        .header
        .tensors
        .iter()
        .zip(&ck.streamed_header.tensors)
        .enumerate()
    {
        if t.dims.len() != 2 {
            assert_eq!(t.ggml_type, st.ggml_type, "{}", t.name);
            continue;
        }
        assert_eq!(t.ggml_type, GgmlType::Q4_K, "{}", t.name);
        assert_eq!(st.ggml_type, GgmlType::BF16, "{}", t.name);
        assert!(converted.contains(&(i, GgmlType::BF16)), "{}", t.name);
        let want = src[hf_name(&t.name).as_str()];
        assert_eq!(want.len() as u64, st.size_bytes);
        // Whole, and in slices that start and end inside elements and rows.
        assert_eq!(
            &ck.read_at(st.offset, st.size_bytes).unwrap(),
            want,
            "{}",
            t.name
        );
        let mut at = 0u64;
        for step in [1u64, 143, 145, 1000, 77].iter().cycle() {
            if at >= st.size_bytes {
                break;
            }
            let n = (*step).min(st.size_bytes - at);
            let got = ck.read_at(st.offset + at, n).unwrap();
            assert_eq!(
                got,
                want[at as usize..(at + n) as usize],
                "{} at {at}",
                t.name
            );
            at += n;
        }
        checked += 1;
    }
    assert_eq!(converted.len(), 8);
    assert_eq!(checked, 8, "embedding and seven projections");
}

/// The reads `plan_reads` names are all that reading the virtual section needs (what a driver with
/// asynchronous I/O fetches before `read_via`): served only from those ranges, every chunk of every
/// fixture folder (sharded Llama 4 with its transposed experts among them) equals the direct read.
#[test]
fn planned_reads_are_all_a_chunk_needs() {
    for family in FAMILIES {
        let files = fixture_folder(family);
        let ck = open(&files).unwrap();
        for chunk in [4096u64, 65_536, 1 << 20] {
            let mut offset = 0;
            while offset < ck.len() {
                let len = chunk.min(ck.len() - offset);
                let plan = ck.plan_reads(offset, len).unwrap();
                let fetched: Vec<(usize, u64, Vec<u8>)> = plan
                    .iter()
                    .map(|&(shard, off, n)| {
                        let f = &files[&ck.shard_names()[shard]];
                        (shard, off, f[off as usize..(off + n) as usize].to_vec())
                    })
                    .collect();
                let from_plan = ck
                    .assemble(offset, len, &fetched)
                    .unwrap_or_else(|e| panic!("{family} chunk {chunk} at {offset}: {e}"));
                assert_eq!(
                    from_plan,
                    ck.read_at(offset, len).unwrap(),
                    "{family} chunk {chunk} at {offset}"
                );
                offset += len;
            }
        }
    }
}
