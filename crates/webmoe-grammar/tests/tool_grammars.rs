//! The grammars of `tool_choice: 'required'` / a named function, for each call format, run through
//! llguidance on the test model's tokenizer: a generation that follows the masks (the lowest allowed
//! token each step, as an adversarial sampler would) is read back by the call reader as exactly one call
//! of a declared function whose arguments validate against its schema.

use serde_json::json;
use webmoe_core::generate::Constraint;
use webmoe_core::gguf::{parse_header, HeaderParse};
use webmoe_core::tokenizer::Tokenizer;
use webmoe_core::tool_prompt::ToolFormat;
use webmoe_grammar::{Grammars, Piece, Tools};

fn tokenizer() -> Tokenizer {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../models/SmolLM2-135M-Instruct.Q4_1.gguf");
    let bytes = std::fs::read(&path).expect("test model missing: run scripts/fetch-test-model.sh");
    let HeaderParse::Done(h) = parse_header(&bytes, bytes.len() as u64).unwrap() else {
        panic!("header")
    };
    Tokenizer::from_gguf(&h).unwrap()
}

/// The tokens a constraint allows when each step takes the lowest allowed one (as an adversarial
/// sampler would), up to 200 or until it is finished.
fn follow_lowest(c: &mut impl Constraint, tok: &Tokenizer) -> Vec<u32> {
    let mut ids = Vec::new();
    while !c.finished() && ids.len() < 200 {
        let mask = c.mask().unwrap().to_vec();
        let allowed = (0..mask.len() * 32)
            .filter(|&i| (mask[i / 32] >> (i % 32)) & 1 == 1)
            .map(|i| i as u32)
            .find(|&i| !tok.is_eog(i));
        let Some(id) = allowed else { break };
        c.commit(id).unwrap();
        ids.push(id);
    }
    ids
}

/// The calls the reader takes from `text`.
fn calls_in(tools: &Tools, format: ToolFormat, text: &str) -> Vec<webmoe_grammar::ToolCall> {
    let mut reader = tools.reader("call_", format).unwrap();
    let mut pieces = reader.push(text);
    pieces.extend(reader.finish());
    pieces
        .into_iter()
        .filter_map(|p| match p {
            Piece::Call(c) => Some(c),
            Piece::Content(_) => None,
        })
        .collect()
}

#[test]
fn forced_calls_parse_back_in_every_format() {
    let tok = tokenizer();
    let grammars = Grammars::new(&tok).unwrap();
    let defs = json!([
        { "type": "function", "function": { "name": "get_weather", "parameters": { "type": "object",
            "properties": { "city": { "enum": ["Paris", "Rome"] }, "days": { "type": "integer", "minimum": 1, "maximum": 9 } },
            "required": ["city", "days"], "additionalProperties": false } } },
        { "type": "function", "function": { "name": "get_time", "parameters": { "type": "object",
            "properties": { "zone": { "enum": ["UTC", "CET"] } }, "required": ["zone"], "additionalProperties": false } } },
    ]);
    let named = json!({ "type": "function", "function": { "name": "get_time" } });
    for choice in [json!("required"), named] {
        let tools = Tools::from_request(Some(&defs), Some(&choice))
            .unwrap()
            .unwrap();
        for format in [
            ToolFormat::Hermes,
            ToolFormat::Llama3Json,
            ToolFormat::Mistral,
        ] {
            let spec = tools.spec(format, None).expect("a grammar");
            let mut c = grammars
                .constraint(&spec)
                .unwrap_or_else(|e| panic!("{format:?}: {e}"));
            let ids = follow_lowest(&mut c, &tok);
            let text = tok.decode(&ids).unwrap();
            let calls = calls_in(&tools, format, &text);
            assert_eq!(calls.len(), 1, "{format:?} {choice}: {text:?}");
            let name = &calls[0].name;
            if choice.is_object() {
                assert_eq!(name, "get_time");
            }
            let schema = defs
                .as_array()
                .unwrap()
                .iter()
                .find(|d| &d["function"]["name"] == name)
                .map(|d| d["function"]["parameters"].clone())
                .unwrap();
            let args: serde_json::Value = serde_json::from_str(&calls[0].arguments).unwrap();
            assert!(jsonschema::is_valid(&schema, &args), "{format:?}: {text:?}");
            eprintln!("{format:?} {choice}: {text:?}");
        }
    }
}

/// A tokenizer whose vocabulary has Mistral's `[TOOL_CALLS]` as a special token (the tiny
/// `tokenizer.json` fixture with it added as id 371).
fn tokenizer_with_call_token() -> Tokenizer {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/tiny_tokenizer.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    v["added_tokens"].as_array_mut().unwrap().push(json!({ "id": 371, "content": "[TOOL_CALLS]",
        "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true }));
    let special = webmoe_core::tokenizer::SpecialTokens {
        bos: None,
        add_bos: false,
        eog: vec![0],
        bos_text: String::new(),
        eos_text: "<|end|>".into(),
    };
    Tokenizer::from_json(&v.to_string(), special, None).unwrap()
}

/// With the call token in the vocabulary, a forced Mistral call starts with that token (as the model
/// writes it), and the reader takes the call that follows.
#[test]
fn a_forced_mistral_call_starts_with_its_control_token() {
    let tok = tokenizer_with_call_token();
    let marker = webmoe_core::tool_prompt::call_marker(&tok, ToolFormat::Mistral);
    assert_eq!(marker, Some(371));
    assert_eq!(
        webmoe_core::tool_prompt::call_marker(&tokenizer(), ToolFormat::Mistral),
        None,
        "the test model has no [TOOL_CALLS] token"
    );
    let grammars = Grammars::new(&tok).unwrap();
    let defs = json!([{ "type": "function", "function": { "name": "get_time", "parameters": {
        "type": "object", "properties": { "zone": { "enum": ["UTC", "CET"] } },
        "required": ["zone"], "additionalProperties": false } } }]);
    let tools = Tools::from_request(Some(&defs), Some(&json!("required")))
        .unwrap()
        .unwrap();
    let mut c = grammars
        .constraint(&tools.spec(ToolFormat::Mistral, marker).unwrap())
        .unwrap();
    let ids = follow_lowest(&mut c, &tok);
    assert_eq!(ids.first(), Some(&371), "{ids:?}");
    let text = tok.decode(&ids).unwrap();
    assert!(text.starts_with("[TOOL_CALLS]["), "{text:?}");
    let calls = calls_in(&tools, ToolFormat::Mistral, &text);
    assert_eq!(calls.len(), 1, "{text:?}");
    assert_eq!(calls[0].name, "get_time");
    assert_eq!(calls[0].id.len(), 9);
}
