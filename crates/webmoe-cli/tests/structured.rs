//! Structured output on the real test model, both devices: answers constrained by JSON schemas validate
//! against those schemas (checked by the `jsonschema` crate, an independent validator), `json_object`
//! gives an object, Lark and GBNF grammars and regexes are matched, and bad schemas or grammars are
//! clear errors.

use std::path::PathBuf;
use webmoe_cli::load::{load_on, Loaded};
use webmoe_core::chat::{encode_chat, Message};
use webmoe_core::generate::{generate, Constraint, Request};
use webmoe_core::sampling::SamplingParams;
use webmoe_engine::{DeviceRequest, OpenOptions};
use webmoe_grammar::{Grammars, Spec};

fn model(device: DeviceRequest) -> Loaded {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        p.exists(),
        "test model missing: run scripts/fetch-test-model.sh"
    );
    let open = OpenOptions {
        device,
        skip_self_test: true,
        ..Default::default()
    };
    load_on(p.to_str().unwrap(), &open, None, true).unwrap()
}

/// The answer to `question` under `spec`, with temperature `t` (seeded), and the seconds spent on masks
/// per generated token.
fn answer(m: &mut Loaded, g: &Grammars, question: &str, spec: &Spec, t: f32) -> (String, f64) {
    let prompt = encode_chat(&m.tokenizer, &[Message::new("user", question)], true).unwrap();
    let params = SamplingParams {
        temperature: t,
        seed: 3,
        ..Default::default()
    };
    let mut c = g.constraint(spec).unwrap();
    let req = Request {
        constraint: Some(&mut c as &mut dyn Constraint),
        ..Request::new(&prompt, &params, 200, &[])
    };
    let start = std::time::Instant::now();
    let now = move || start.elapsed().as_secs_f64();
    let out = pollster::block_on(generate(
        &mut m.engine,
        &m.tokenizer,
        req,
        &now,
        &mut |_| true,
    ))
    .unwrap();
    assert_eq!(
        out.finish_reason,
        webmoe_core::generate::Finish::Stop,
        "{spec:?} did not finish within 200 tokens: {}",
        out.text
    );
    (out.text, out.constraint_s / out.ids.len().max(1) as f64)
}

fn schemas() -> Vec<(&'static str, serde_json::Value)> {
    vec![
        (
            "Describe a person as JSON.",
            serde_json::json!({
                "type": "object",
                "properties": {
                    "name": {"type": "string", "maxLength": 20},
                    "age": {"type": "integer", "minimum": 0, "maximum": 120},
                    "city": {"enum": ["Paris", "Berlin", "Rome"]}
                },
                "required": ["name", "age", "city"],
                "additionalProperties": false
            }),
        ),
        (
            "List three fruits with their colors.",
            serde_json::json!({
                "type": "array",
                "minItems": 3,
                "maxItems": 3,
                "items": {
                    "type": "object",
                    "properties": {"fruit": {"type": "string", "maxLength": 16}, "color": {"type": "string", "maxLength": 16}},
                    "required": ["fruit", "color"],
                    "additionalProperties": false
                }
            }),
        ),
        (
            "Give the date of the French revolution.",
            serde_json::json!({
                "type": "object",
                "properties": {
                    "event": {"type": "string", "maxLength": 40},
                    "year": {"type": "integer"},
                    "date": {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"},
                    "facts": {"type": "array", "items": {"type": "string", "maxLength": 30}, "maxItems": 2},
                    "important": {"type": "boolean"}
                },
                "required": ["event", "year", "date", "important"],
                "additionalProperties": false
            }),
        ),
        (
            "How hot is the sun? Answer as JSON.",
            serde_json::json!({
                "$defs": {"measure": {"type": "object", "properties": {"value": {"type": "integer", "minimum": 0, "maximum": 100000000}, "unit": {"enum": ["K", "C"]}}, "required": ["value", "unit"], "additionalProperties": false}},
                "type": "object",
                "properties": {"surface": {"$ref": "#/$defs/measure"}, "core": {"$ref": "#/$defs/measure"}},
                "required": ["surface", "core"],
                "additionalProperties": false
            }),
        ),
    ]
}

#[test]
fn json_schema_answers_validate_on_both_devices() {
    for device in [DeviceRequest::Cpu, DeviceRequest::Gpu] {
        let mut m = model(device);
        let g = Grammars::new(&m.tokenizer).unwrap();
        let mut worst = 0f64;
        for (question, schema) in schemas() {
            let validator = jsonschema::validator_for(&schema).unwrap();
            for t in [0.0, 0.8] {
                let spec = Spec::JsonSchema {
                    schema: schema.clone(),
                    strict: true,
                };
                let (text, per_token) = answer(&mut m, &g, question, &spec, t);
                let v: serde_json::Value = serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("{device:?} {question}: not JSON ({e}): {text}"));
                let errors: Vec<String> =
                    validator.iter_errors(&v).map(|e| e.to_string()).collect();
                assert!(
                    errors.is_empty(),
                    "{device:?} {question}: {text}: {errors:?}"
                );
                eprintln!(
                    "{device:?} t={t}: {text} ({:.2} ms of masks per token)",
                    per_token * 1e3
                );
                worst = worst.max(per_token);
            }
        }
        eprintln!(
            "{device:?}: at most {:.2} ms of masks per token",
            worst * 1e3
        );
    }
}

#[test]
fn json_object_grammars_and_regexes_are_followed() {
    let mut m = model(DeviceRequest::Cpu);
    let g = Grammars::new(&m.tokenizer).unwrap();
    let (text, _) = answer(&mut m, &g, "Describe Paris.", &Spec::JsonObject, 0.0);
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(v.is_object(), "{text}");

    let gbnf = "root ::= answer \".\"\nanswer ::= \"yes\" | \"no\"\n";
    let (text, _) = answer(
        &mut m,
        &g,
        "Is Paris in France?",
        &Spec::Gbnf(gbnf.into()),
        0.0,
    );
    assert!(text == "yes." || text == "no.", "{text}");

    let gbnf = "root ::= [A-Z] [a-z]{2,8} \" is \" num\nnum ::= [1-9] [0-9]?\n";
    let (text, _) = answer(
        &mut m,
        &g,
        "Name a city and a number.",
        &Spec::Gbnf(gbnf.into()),
        0.7,
    );
    let rx = regex_lite(&text);
    assert!(rx, "{text}");

    let lark = "start: \"The answer is \" NUMBER \".\"\nNUMBER: /[0-9]+/\n";
    let (text, _) = answer(
        &mut m,
        &g,
        "What is 6 times 7?",
        &Spec::Lark(lark.into()),
        0.0,
    );
    assert!(
        text.starts_with("The answer is ") && text.ends_with('.'),
        "{text}"
    );
    assert!(text["The answer is ".len()..text.len() - 1]
        .bytes()
        .all(|b| b.is_ascii_digit()));

    let (text, _) = answer(
        &mut m,
        &g,
        "Give a phone number.",
        &Spec::Regex("[0-9]{3}-[0-9]{4}".into()),
        0.9,
    );
    assert!(
        text.len() == 8
            && text.as_bytes()[3] == b'-'
            && text.bytes().filter(u8::is_ascii_digit).count() == 7,
        "{text}"
    );
}

/// `[A-Z][a-z]{2,8} is [1-9][0-9]?`, checked by hand.
fn regex_lite(t: &str) -> bool {
    let Some((word, num)) = t.split_once(" is ") else {
        return false;
    };
    let w = word.as_bytes();
    (3..=9).contains(&w.len())
        && w[0].is_ascii_uppercase()
        && w[1..].iter().all(u8::is_ascii_lowercase)
        && (1..=2).contains(&num.len())
        && num.bytes().all(|b| b.is_ascii_digit())
        && !num.starts_with('0')
}

#[test]
fn bad_schemas_and_grammars_are_clear_errors() {
    let m = model(DeviceRequest::Cpu);
    let g = Grammars::new(&m.tokenizer).unwrap();
    for (spec, needle) in [
        (
            Spec::JsonSchema {
                schema: serde_json::json!({"type": "nonsense"}),
                strict: true,
            },
            "JSON schema",
        ),
        (
            Spec::JsonSchema {
                schema: serde_json::json!(5),
                strict: true,
            },
            "JSON schema",
        ),
        (Spec::Lark("start: undefined_rule".into()), "grammar"),
        (Spec::Gbnf("root ::= \"a".into()), "unterminated"),
        (Spec::Regex("(unclosed".into()), "regex"),
    ] {
        let e = g
            .constraint(&spec)
            .err()
            .unwrap_or_else(|| panic!("{spec:?} was accepted"))
            .to_string();
        assert!(e.contains(needle), "{spec:?}: {e}");
    }
}
