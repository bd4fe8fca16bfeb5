//! Tokenizers built from GGUF metadata (SentencePiece path) and from a `tokenizer.json` against the
//! tokenizations of their references (llama.cpp; Hugging Face tokenizers). Fixtures: tests/fixtures/make_*.py.

use webmoe_core::gguf::{parse_header, HeaderParse};
use webmoe_core::tokenizer::Tokenizer;

fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(name)
}

/// The tokenizer of the tiny SentencePiece GGUF fixture.
fn spm_tokenizer() -> Tokenizer {
    let bytes = std::fs::read(fixture("spm_tiny.gguf")).unwrap();
    let HeaderParse::Done(h) = parse_header(&bytes, bytes.len() as u64).unwrap() else {
        panic!("header")
    };
    Tokenizer::from_gguf(&h).unwrap()
}

/// (text, reference ids) pairs of a reference file.
fn cases(name: &str) -> Vec<(String, Vec<u32>)> {
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture(name)).unwrap()).unwrap();
    let ids = |c: &serde_json::Value| {
        c["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect()
    };
    v["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["text"].as_str().unwrap().to_string(), ids(c)))
        .collect()
}

#[test]
fn sentencepiece_ids_equal_llama_cpp() {
    let tok = spm_tokenizer();
    for (text, want) in cases("spm_tiny_ref.json") {
        let text = text.as_str();
        let got = tok.encode(text, false, true).unwrap();
        assert_eq!(got, want, "{text:?}");
        if !text.is_empty() {
            assert_eq!(
                tok.decode(&got[1..]).unwrap(),
                text,
                "round trip of {text:?}"
            );
        }
    }
}

#[test]
fn tokenizer_json_ids_equal_hugging_face() {
    use webmoe_core::tokenizer::SpecialTokens;
    let json = std::fs::read_to_string(fixture("tiny_tokenizer.json")).unwrap();
    let special = SpecialTokens {
        bos: None,
        add_bos: false,
        eog: vec![0],
        bos_text: String::new(),
        eos_text: "<|end|>".into(),
    };
    let tok = Tokenizer::from_json(&json, special, None).unwrap();
    for (text, want) in cases("tiny_tokenizer_ref.json") {
        let text = text.as_str();
        assert_eq!(tok.encode(text, true, true).unwrap(), want, "{text:?}");
        assert_eq!(tok.decode(&want).unwrap(), text);
    }
    // Without special parsing the special strings are plain text.
    assert_ne!(tok.encode("<|start|>", false, false).unwrap(), vec![1]);
    assert_eq!(tok.encode("<|start|>", true, false).unwrap(), vec![1]);
}

#[test]
fn chat_template_that_writes_bos_gets_a_single_bos() {
    use webmoe_core::chat::{encode_chat, Message};
    let mut tok = spm_tokenizer();
    let msgs = [Message::new("user", "Hello world")];
    tok.chat_template =
        Some("{{ bos_token }}{% for m in messages %}{{ m['content'] }}{% endfor %}".into());
    let with_bos_in_template = encode_chat(&tok, &msgs, true).unwrap();
    tok.chat_template = Some("{% for m in messages %}{{ m['content'] }}{% endfor %}".into());
    let without = encode_chat(&tok, &msgs, true).unwrap();
    assert_eq!(with_bos_in_template.iter().filter(|&&i| i == 1).count(), 1);
    assert_eq!(with_bos_in_template, without);
    assert_eq!(without[0], 1);
}

#[test]
fn streamed_text_equals_the_whole_decode() {
    use webmoe_core::tokenizer::TextStream;
    let tok = spm_tokenizer();
    // Byte-fallback pieces of multi-byte characters arrive one byte at a time.
    let text = "two  spaces, unseen ÄÖÜ 漢字 🚀 and more words";
    let ids = tok.encode(text, false, false).unwrap();
    let mut stream = TextStream::default();
    let mut pieces = String::new();
    for &id in &ids {
        let piece = stream.push(&tok, id).unwrap();
        assert!(!piece.contains('\u{FFFD}'), "no half characters: {piece:?}");
        pieces.push_str(&piece);
    }
    assert_eq!(pieces, tok.decode(&ids).unwrap());
    assert_eq!(stream.text(), pieces);
}

/// A SentencePiece vocabulary `a`, `aa`, … `a`×3000 would make merge building quadratic (gigabytes):
/// refused before any merge is built, with a message saying why.
#[test]
fn a_quadratic_sentencepiece_vocabulary_is_refused() {
    use webmoe_core::gguf::{writer::GgufWriter, GgufValue};
    let tokens: Vec<String> = (1..=3000).map(|k| "a".repeat(k)).collect();
    let mut w = GgufWriter::default();
    w.kv("tokenizer.ggml.model", GgufValue::Str("llama".into()))
        .kv(
            "tokenizer.ggml.scores",
            GgufValue::NumArray(vec![0.0; tokens.len()]),
        )
        .kv(
            "tokenizer.ggml.token_type",
            GgufValue::NumArray(vec![1.0; tokens.len()]),
        )
        .kv("tokenizer.ggml.tokens", GgufValue::StrArray(tokens));
    let bytes = w.to_bytes();
    let HeaderParse::Done(h) = parse_header(&bytes, bytes.len() as u64).unwrap() else {
        panic!("header")
    };
    let e = Tokenizer::from_gguf(&h).err().expect("refused");
    assert!(e.to_string().contains("bytes of merges"), "{e}");
}

/// Found by the `tokenizer_json` fuzz target: a control character inside the decoder section made the
/// tokenizers library panic while deserializing. It is an error now.
#[test]
fn a_malformed_decoder_in_tokenizer_json_is_an_error_not_a_panic() {
    let json = std::fs::read_to_string(fixture("tiny_tokenizer.json")).unwrap();
    let d = json.find("\"decoder\"").expect("a decoder");
    let i = d + json[d..].find("\"ByteLevel\"").expect("a decoder type") + 2;
    let bad = format!("{}\u{1}{}", &json[..i], &json[i..]);
    let special = webmoe_core::tokenizer::SpecialTokens {
        bos: None,
        add_bos: false,
        eog: vec![],
        bos_text: String::new(),
        eos_text: String::new(),
    };
    let e = Tokenizer::from_json(&bad, special, None)
        .err()
        .expect("an error");
    assert!(e.to_string().contains("tokenizer"), "{e}");
}
