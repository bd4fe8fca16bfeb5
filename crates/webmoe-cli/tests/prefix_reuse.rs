//! KV prefix reuse: a request whose prompt starts with what the cache holds prefills only the rest, and
//! gives what a fresh engine gives. On both devices: the family fixtures (Llama 4's chunked-attention
//! ring included) after going back to a shorter prefix, and a four-turn chat of the real test model
//! through the generation loop.

use std::path::PathBuf;
use webmoe_cli::load::{load_on, Loaded};
use webmoe_core::chat::{encode_chat, Message};
use webmoe_core::generate::{generate, Backend, Request};
use webmoe_core::options::{EngineOptions, KvDtype};
use webmoe_core::sampling::SamplingParams;
use webmoe_engine::{DeviceRequest, OpenOptions};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn open(path: &std::path::Path, device: DeviceRequest, ctx: usize, chunk: usize) -> Loaded {
    let open = OpenOptions {
        device,
        engine: EngineOptions {
            max_context: ctx,
            prefill_chunk: chunk,
            kv_dtype: KvDtype::F32,
        },
        skip_self_test: true,
        ..Default::default()
    };
    load_on(path.to_str().unwrap(), &open, None, true).unwrap()
}

fn logits_after(m: &mut Loaded, ids: &[u32]) -> Vec<f32> {
    pollster::block_on(m.engine.forward(ids, None)).unwrap();
    pollster::block_on(m.engine.logits()).unwrap()
}

fn nmse(a: &[f32], b: &[f32]) -> f64 {
    let e: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
    e / b
        .iter()
        .map(|y| (*y as f64).powi(2))
        .sum::<f64>()
        .max(1e-30)
}

/// Runs `ids[..40]` and 20 other tokens, goes back to `keep`, runs the rest of `ids`: the last logits
/// equal a fresh engine's on `ids`. Returns how many positions the engine kept.
fn rewound_equals_fresh(family: &str, device: DeviceRequest, keep: usize) -> usize {
    let fixture = root().join("tests/fixtures/moe");
    let r: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture.join(format!("{family}.ref.json"))).unwrap(),
    )
    .unwrap();
    let ids: Vec<u32> = r["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect();
    // The Hugging Face folders keep Llama 4's 12-position attention chunks (GGUF cannot); a context of
    // 96 with prefill calls of 4 gives its layers a ring of 16 slots.
    let path = fixture.join("hf").join(family);
    let mut fresh = open(&path, device, 96, 4);
    let want = logits_after(&mut fresh, &ids);
    let mut m = open(&path, device, 96, 4);
    let vocab = m.engine.desc().config.vocab_size as u32;
    let other: Vec<u32> = (0..20).map(|i| (i * 37 + 11) % vocab).collect();
    logits_after(&mut m, &ids[..40.min(ids.len())]);
    logits_after(&mut m, &other);
    let kept = m.engine.rewind(keep);
    assert_eq!(m.engine.pos(), kept);
    assert_eq!(m.engine.cached().tokens(), &ids[..kept]);
    let got = logits_after(&mut m, &ids[kept..]);
    let e = nmse(&got, &want);
    eprintln!("{family} {device:?}: kept {kept} of {keep}, nmse vs fresh {e:e}");
    assert!(e < 1e-9, "{family} {device:?}: nmse {e:e}");
    kept
}

#[test]
fn going_back_to_a_prefix_gives_a_fresh_engines_logits() {
    for device in [DeviceRequest::Cpu, DeviceRequest::Gpu] {
        for family in ["qwen3", "mixtral", "olmoe"] {
            assert_eq!(rewound_equals_fresh(family, device, 30), 30);
        }
        // 60 positions ran, so the 16-slot rings hold 44..59: position 30's chunk (24..35) needs 24..29,
        // gone, so the engine goes back to the chunk start.
        assert_eq!(rewound_equals_fresh("llama4", device, 30), 24);
        // A chunk start needs nothing before it.
        assert_eq!(rewound_equals_fresh("llama4", device, 36), 36);
    }
}

fn model_path() -> PathBuf {
    let p = root().join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        p.exists(),
        "test model missing: run scripts/fetch-test-model.sh (cargo xtask test does)"
    );
    p
}

struct Turn {
    ids: Vec<u32>,
    text: String,
    prompt_tokens: usize,
    reused: usize,
}

fn turn(m: &mut Loaded, msgs: &[Message]) -> Turn {
    let prompt = encode_chat(&m.tokenizer, msgs, true).unwrap();
    let params = SamplingParams::default();
    let req = Request {
        prompt: &prompt,
        params: &params,
        max_tokens: 24,
        stop: &[],
        constraint: None,
        logprobs: None,
    };
    let g = pollster::block_on(generate(
        &mut m.engine,
        &m.tokenizer,
        req,
        &|| 0.0,
        &mut |_| true,
    ))
    .unwrap();
    Turn {
        ids: g.ids,
        text: g.text,
        prompt_tokens: prompt.len(),
        reused: g.reused_tokens,
    }
}

#[test]
fn a_four_turn_chat_prefills_only_new_tokens_and_equals_a_fresh_engine() {
    let questions = [
        "What is the capital of France?",
        "And of Italy?",
        "Which of the two is larger?",
        "Name one river in each.",
    ];
    for device in [DeviceRequest::Cpu, DeviceRequest::Gpu] {
        let mut chat = open(&model_path(), device, 1024, 256);
        let mut fresh = open(&model_path(), device, 1024, 256);
        let mut msgs = vec![Message::new("system", "You are a helpful assistant.")];
        let mut previous_total = 0;
        for (n, q) in questions.iter().enumerate() {
            msgs.push(Message::new("user", q));
            let got = turn(&mut chat, &msgs);
            fresh.engine.reset();
            let want = turn(&mut fresh, &msgs);
            assert_eq!(want.reused, 0);
            assert_eq!(
                got.ids, want.ids,
                "{device:?} turn {n}: tokens differ from a fresh engine"
            );
            if n == 0 {
                assert_eq!(got.reused, 0);
            } else {
                // Everything of the previous turn but the tokens the template renders differently
                // from what was generated (at most the answer's last token and the end marker).
                assert!(
                    got.reused + 2 >= previous_total,
                    "{device:?} turn {n}: reused {} of the previous {previous_total} tokens",
                    got.reused
                );
            }
            eprintln!(
                "{device:?} turn {n}: {} prompt tokens, {} reused, {} prefilled",
                got.prompt_tokens,
                got.reused,
                got.prompt_tokens - got.reused
            );
            previous_total = got.prompt_tokens + got.ids.len();
            msgs.push(Message::new("assistant", &got.text));
        }
    }
}
