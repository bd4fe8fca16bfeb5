//! Corrupt, truncated and hostile GGUF files give a clear, typed error and never a panic.

use webmoe_core::gguf::GgufValue;
use webmoe_core::model::ModelDesc;
use webmoe_core::quant::GgmlType;
use webmoe_core::synthetic::SyntheticLlama;
use webmoe_core::{GgufError, ModelError};
use webmoe_loader::{read_gguf_header, LoadError, MemorySource};

fn tiny() -> SyntheticLlama {
    SyntheticLlama {
        vocab: 64,
        hidden: 64,
        layers: 1,
        heads: 2,
        kv_heads: 1,
        ffn: 96,
        ty: GgmlType::Q8_0,
        untied: false,
        context: 128,
        seed: 1,
        experts: None,
    }
}

fn header_err(bytes: Vec<u8>) -> GgufError {
    match read_gguf_header(&MemorySource(bytes)) {
        Err(LoadError::Gguf(e)) => e,
        other => panic!("expected a GGUF error, got {other:?}"),
    }
}

/// Byte position just after the tensor named `name`'s name in the tensor table.
fn after_name(bytes: &[u8], name: &str) -> usize {
    let n = name.as_bytes();
    bytes.windows(n.len()).rposition(|w| w == n).unwrap() + n.len()
}

#[test]
fn valid_file_parses() {
    let bytes = tiny().writer().to_bytes();
    let h = read_gguf_header(&MemorySource(bytes)).unwrap();
    let desc = ModelDesc::from_gguf(&h, None).unwrap();
    assert_eq!(desc.config.n_layers, 1);
    assert_eq!(desc.config.head_dim, 32);
}

#[test]
fn wrong_magic_is_reported() {
    let mut b = tiny().writer().to_bytes();
    b[0..4].copy_from_slice(b"GGML");
    let e = header_err(b);
    assert!(matches!(e, GgufError::BadMagic { .. }));
    assert!(e.to_string().contains("not a GGUF file"));
}

#[test]
fn unsupported_versions_are_reported() {
    for v in [1u32, 4, 0xffff_ffff] {
        let mut b = tiny().writer().to_bytes();
        b[4..8].copy_from_slice(&v.to_le_bytes());
        assert_eq!(header_err(b), GgufError::UnsupportedVersion { version: v });
    }
}

#[test]
fn truncated_header_is_reported() {
    let b = tiny().writer().to_bytes();
    for cut in [3usize, 10, 30, 200] {
        let e = header_err(b[..cut].to_vec());
        assert!(
            matches!(
                e,
                GgufError::TruncatedHeader { .. } | GgufError::CountBeyondFile { .. }
            ),
            "cut at {cut}: {e}"
        );
    }
    // Cut inside the tensor table.
    let cut = after_name(&b, "blk.0.ffn_down.weight");
    assert!(matches!(
        header_err(b[..cut].to_vec()),
        GgufError::TruncatedHeader { .. } | GgufError::CountBeyondFile { .. }
    ));
}

#[test]
fn truncated_tensor_data_is_reported() {
    let b = tiny().writer().to_bytes();
    let e = header_err(b[..b.len() - 100].to_vec());
    assert!(matches!(e, GgufError::TensorBeyondFile { .. }), "{e}");
    assert!(e.to_string().contains("truncated"));
}

#[test]
fn tensor_offset_beyond_file_is_reported() {
    let mut b = tiny().writer().to_bytes();
    // name | n_dims u32 | 2 dims u64 | type u32 | offset u64
    let at = after_name(&b, "blk.0.ffn_up.weight") + 4 + 16 + 4;
    b[at..at + 8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    assert!(matches!(header_err(b), GgufError::TensorBeyondFile { .. }));
}

#[test]
fn counts_beyond_file_are_reported_before_allocating() {
    for field in [8usize, 16] {
        let mut b = tiny().writer().to_bytes();
        b[field..field + 8].copy_from_slice(&(1u64 << 60).to_le_bytes());
        assert!(
            matches!(header_err(b), GgufError::CountBeyondFile { .. }),
            "field at {field}"
        );
    }
    // A string length of 2^62 in the first key.
    let mut b = tiny().writer().to_bytes();
    b[24..32].copy_from_slice(&(1u64 << 62).to_le_bytes());
    assert!(matches!(header_err(b), GgufError::CountBeyondFile { .. }));
}

#[test]
fn unknown_quant_type_is_reported() {
    let mut b = tiny().writer().to_bytes();
    let at = after_name(&b, "blk.0.attn_q.weight") + 4 + 16;
    b[at..at + 4].copy_from_slice(&99u32.to_le_bytes());
    let e = header_err(b);
    assert_eq!(
        e,
        GgufError::UnknownTensorType {
            name: "blk.0.attn_q.weight".into(),
            type_id: 99
        }
    );
    assert!(e.to_string().contains("does not support"));
}

#[test]
fn unknown_architecture_is_reported() {
    let mut w = tiny().writer();
    w.metadata[0].1 = GgufValue::Str("mamba".into());
    let h = read_gguf_header(&MemorySource(w.to_bytes())).unwrap();
    let e = ModelDesc::from_gguf(&h, None).unwrap_err();
    assert_eq!(e, ModelError::UnknownArchitecture("mamba".into()));
    assert!(e.to_string().contains("unsupported architecture"));
}

#[test]
fn missing_tensor_is_reported() {
    let mut w = tiny().writer();
    w.tensors.retain(|t| t.0 != "blk.0.ffn_gate.weight");
    let h = read_gguf_header(&MemorySource(w.to_bytes())).unwrap();
    assert_eq!(
        ModelDesc::from_gguf(&h, None).unwrap_err(),
        ModelError::MissingTensor("blk.0.ffn_gate.weight".into())
    );
}

#[test]
fn wrong_tensor_shape_is_reported() {
    let mut w = tiny().writer();
    let t = w
        .tensors
        .iter_mut()
        .find(|t| t.0 == "blk.0.attn_k.weight")
        .unwrap();
    t.1 = vec![64, 64];
    t.3 = vec![0; 64 * 64 / 32 * 34];
    let h = read_gguf_header(&MemorySource(w.to_bytes())).unwrap();
    assert!(matches!(
        ModelDesc::from_gguf(&h, None).unwrap_err(),
        ModelError::BadShape { .. }
    ));
}

#[test]
fn missing_metadata_is_reported() {
    let mut w = tiny().writer();
    w.metadata.retain(|(k, _)| k != "llama.block_count");
    let h = read_gguf_header(&MemorySource(w.to_bytes())).unwrap();
    assert_eq!(
        ModelDesc::from_gguf(&h, None).unwrap_err(),
        ModelError::MissingKey("llama.block_count".into())
    );
}

#[test]
fn random_corruption_never_panics() {
    let base = tiny().writer().to_bytes();
    let header_len = after_name(&base, "blk.0.ffn_down.weight") + 40;
    let mut s = 0x9e3779b97f4a7c15u64;
    let mut rnd = || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    for _ in 0..3000 {
        let mut b = base.clone();
        for _ in 0..1 + rnd() % 4 {
            let i = (rnd() % header_len as u64) as usize;
            b[i] = rnd() as u8;
        }
        if rnd() % 4 == 0 {
            b.truncate((rnd() % b.len() as u64) as usize);
        }
        if let Ok(h) = read_gguf_header(&MemorySource(b)) {
            let _ = ModelDesc::from_gguf(&h, None);
        }
    }
}

fn moe_desc(
    edit: impl FnOnce(&mut webmoe_core::gguf::writer::GgufWriter),
) -> Result<ModelDesc, ModelError> {
    let mut w = SyntheticLlama {
        experts: Some((8, 2)),
        ..tiny()
    }
    .writer();
    edit(&mut w);
    let h = read_gguf_header(&MemorySource(w.to_bytes())).unwrap();
    ModelDesc::from_gguf(&h, None)
}

#[test]
fn moe_files_with_missing_or_inconsistent_experts_are_clear_errors() {
    let m = moe_desc(|_| {}).unwrap().config.moe.unwrap();
    assert_eq!((m.n_experts, m.n_used, m.expert_ffn_dim), (8, 2, 96));
    // More experts per token than experts.
    let e = moe_desc(|w| {
        w.kv("llama.expert_used_count", GgufValue::U64(9));
    })
    .unwrap_err();
    assert!(
        matches!(e, ModelError::Inconsistent(_))
            && e.to_string().contains("9 experts per token of 8"),
        "{e}"
    );
    // A missing stacked expert tensor.
    let e = moe_desc(|w| w.tensors.retain(|t| t.0 != "blk.0.ffn_up_exps.weight")).unwrap_err();
    assert!(
        matches!(e, ModelError::MissingTensor(ref n) if n == "blk.0.ffn_up_exps.weight"),
        "{e}"
    );
    // Tensors holding another expert count than the metadata says.
    let e = moe_desc(|w| {
        w.kv("llama.expert_count", GgufValue::U64(4));
    })
    .unwrap_err();
    assert!(matches!(e, ModelError::BadShape { .. }), "{e}");
}
