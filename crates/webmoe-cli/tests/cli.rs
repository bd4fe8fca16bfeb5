//! The `webmoe` command line as outside checks use it: JSON shapes, URLs, and clear errors (exit code 1,
//! a message naming the cause, never a panic) for bad input.

use std::process::Command;

fn model() -> String {
    let p = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../models/SmolLM2-135M-Instruct.Q4_1.gguf"
    );
    assert!(
        std::path::Path::new(p).exists(),
        "test model missing: run scripts/fetch-test-model.sh (cargo xtask test does)"
    );
    p.to_string()
}

fn webmoe(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_webmoe"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn run_json_answers_a_chat_question() {
    let (code, out, err) = webmoe(&[
        "run",
        &model(),
        "--chat",
        "What is the capital of Germany?",
        "--max-tokens",
        "24",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    for key in [
        "prompt_ids",
        "ids",
        "text",
        "finish_reason",
        "prefill_tokens_per_s",
        "decode_tokens_per_s",
        "adapter",
    ] {
        assert!(v.get(key).is_some(), "missing {key} in {v}");
    }
    // Both backends answer this one correctly (for "...of France?" the CPU backend, like llama.cpp's
    // CPU path, answers "L'Étoile, la Marseillaise, ...": same tokens as llama.cpp, checked by hand).
    assert!(v["text"].as_str().unwrap().contains("Berlin"), "{v}");
    assert!(
        v["device"]["reason"]
            .as_str()
            .is_some_and(|r| !r.is_empty()),
        "{v}"
    );
    assert_eq!(v["finish_reason"], "stop");
}

#[test]
fn seeded_sampling_is_reproducible() {
    let args = [
        "run",
        &model(),
        "--prompt",
        "Once upon a time",
        "--max-tokens",
        "12",
        "--temperature",
        "0.9",
        "--seed",
        "5",
        "--json",
    ];
    let ids = |o: &str| serde_json::from_str::<serde_json::Value>(o.trim()).unwrap()["ids"].clone();
    let (a, b) = (webmoe(&args), webmoe(&args));
    assert_eq!(a.0, 0, "{}", a.2);
    assert_eq!(ids(&a.1), ids(&b.1));
}

#[test]
fn logits_json_lists_the_top_pairs() {
    let (code, out, err) = webmoe(&[
        "logits",
        &model(),
        "--ids",
        "504,3575,282",
        "--top",
        "5",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let top = v["top"].as_array().unwrap();
    assert_eq!(top.len(), 5);
    let vals: Vec<f64> = top.iter().map(|p| p[1].as_f64().unwrap()).collect();
    assert!(vals.windows(2).all(|w| w[0] >= w[1]), "sorted: {vals:?}");
    let (code, out, _) = webmoe(&["logits", &model(), "--ids", "504", "--top", "0", "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        v["top"].as_array().unwrap().len(),
        49152,
        "--top 0 prints every logit"
    );
}

#[test]
fn bench_json_reports_bandwidth_ratio() {
    let (code, out, err) = webmoe(&[
        "bench",
        &model(),
        "--prompt-tokens",
        "16",
        "--gen-tokens",
        "4",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    for key in [
        "prefill_tokens_per_s",
        "decode_tokens_per_s",
        "time_to_first_token_s",
        "weight_bytes_per_token",
        "copy_gb_per_s",
        "decode_bandwidth_ratio",
    ] {
        assert!(v[key].as_f64().is_some_and(|x| x > 0.0), "{key} in {v}");
    }
}

#[test]
fn bench_chat_turns_prefill_only_the_new_tokens() {
    let (code, out, err) = webmoe(&[
        "bench",
        &model(),
        "--chat-turns",
        "3",
        "--gen-tokens",
        "8",
        "--device",
        "cpu",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let turns = v["turns"].as_array().unwrap();
    assert_eq!(turns.len(), 3, "{v}");
    assert_eq!(turns[0]["cached_tokens"], 0, "{v}");
    for pair in turns.windows(2) {
        let (before, now) = (&pair[0], &pair[1]);
        // The cache holds the previous prompt and its answer (all but the last generated token).
        let held = before["prompt_tokens"].as_u64().unwrap();
        assert!(now["cached_tokens"].as_u64().unwrap() >= held, "{v}");
        assert!(now["prefilled_tokens"].as_u64().unwrap() < held, "{v}");
    }
    for t in turns {
        assert!(t["ttft_s"].as_f64().unwrap() > 0.0);
        assert!(t["whole_prompt_ttft_s"].as_f64().unwrap() > 0.0);
    }
    assert!(v["last_over_first_ttft"].as_f64().unwrap() > 0.0);
}

fn expect_error(args: &[&str], needle: &str) {
    let (code, _, err) = webmoe(args);
    assert_eq!(code, 1, "{args:?}: {err}");
    assert!(
        err.contains(needle),
        "{args:?}: expected {needle:?} in {err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn bad_input_gives_clear_errors() {
    let dir = std::env::temp_dir().join(format!("webmoe-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let not_gguf = dir.join("not.gguf");
    std::fs::write(&not_gguf, b"this is not a model file at all").unwrap();
    let truncated = dir.join("truncated.gguf");
    let full = std::fs::read(model()).unwrap();
    std::fs::write(&truncated, &full[..full.len() / 2]).unwrap();
    expect_error(&["info", "/nonexistent/model.gguf"], "No such file");
    expect_error(
        &["run", not_gguf.to_str().unwrap(), "--prompt", "hi"],
        "not a GGUF file",
    );
    expect_error(
        &["run", truncated.to_str().unwrap(), "--prompt", "hi"],
        "truncated",
    );
    expect_error(
        &[
            "run",
            &model(),
            "--prompt",
            &"word ".repeat(40),
            "--ctx",
            "16",
        ],
        "do not fit",
    );
    expect_error(
        &["logits", &model(), "--ids", "99999999"],
        "outside the vocabulary",
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_tokenizer_json_can_replace_the_gguf_tokenizer() {
    let f = webmoe_cli::load::open(&model()).unwrap();
    let tok = webmoe_core::tokenizer::Tokenizer::from_gguf(&f.header).unwrap();
    let path = std::env::temp_dir().join(format!("webmoe-tokenizer-{}.json", std::process::id()));
    std::fs::write(&path, tok.to_json().unwrap()).unwrap();
    let prompt = "Hello, wörld! 12345 <|im_start|>";
    let m = model();
    let ids = |extra: &[&str]| {
        let mut args = vec!["run", &m, "--prompt", prompt, "--max-tokens", "1", "--json"];
        args.extend_from_slice(extra);
        let (code, out, err) = webmoe(&args);
        assert_eq!(code, 0, "{err}");
        serde_json::from_str::<serde_json::Value>(out.trim()).unwrap()["prompt_ids"].clone()
    };
    let p = path.to_str().unwrap();
    assert_eq!(ids(&["--tokenizer", p]), ids(&[]));
    std::fs::write(&path, "{ not json").unwrap();
    expect_error(
        &["run", &model(), "--prompt", "hi", "--tokenizer", p],
        "tokenizer",
    );
    std::fs::remove_file(&path).unwrap();
}

/// Nonsense sampling values are refused before the model loads, naming the parameter.
#[test]
fn nonsense_sampling_values_are_clear_errors() {
    for (arg, name) in [
        ("--temperature=NaN", "temperature"),
        ("--temperature=-1", "temperature"),
        ("--temperature=inf", "temperature"),
        ("--top-p=1.5", "top_p"),
        ("--min-p=2", "min_p"),
        ("--repeat-penalty=0", "repeat_penalty"),
        ("--repeat-penalty=NaN", "repeat_penalty"),
    ] {
        expect_error(&["run", &model(), "--prompt", "hi", arg], name);
    }
}

/// Only regular files are models or tokenizers: a FIFO (which would block forever) and a device (which
/// never ends) are clear errors.
#[test]
fn pipes_and_devices_are_not_read_as_models_or_tokenizers() {
    let dir = std::env::temp_dir().join(format!("webmoe-cli-fifo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = dir.join("model.gguf");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success(), "mkfifo");
    expect_error(&["info", fifo.to_str().unwrap()], "not a regular file");
    expect_error(
        &[
            "run",
            &model(),
            "--prompt",
            "hi",
            "--tokenizer",
            "/dev/zero",
        ],
        "not a regular file",
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A model whose weights give NaN logits (its RMSNorm weights overwritten with NaN) ends in a
/// numerical error, never in tokens.
#[test]
fn nan_weights_are_a_numerical_error_not_tokens() {
    use webmoe_core::gguf::{parse_header, HeaderParse};
    let mut bytes = std::fs::read(model()).unwrap();
    let HeaderParse::Done(h) = parse_header(&bytes, bytes.len() as u64).unwrap() else {
        panic!("header")
    };
    let t = h.tensor("output_norm.weight").unwrap();
    let (s, e) = h.tensor_range(t);
    for c in bytes[s as usize..e as usize].chunks_exact_mut(4) {
        c.copy_from_slice(&f32::NAN.to_le_bytes());
    }
    let path = std::env::temp_dir().join(format!("webmoe-nan-{}.gguf", std::process::id()));
    std::fs::write(&path, &bytes).unwrap();
    for device in ["cpu", "gpu"] {
        expect_error(
            &[
                "run",
                path.to_str().unwrap(),
                "--prompt",
                "hi",
                "--device",
                device,
                "--max-tokens",
                "4",
            ],
            "non-finite logits",
        );
        expect_error(
            &[
                "logits",
                path.to_str().unwrap(),
                "--ids",
                "1,2",
                "--device",
                device,
            ],
            "non-finite logit",
        );
    }
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn interactive_chat_keeps_the_conversation_in_the_cache() {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_webmoe"))
        .args(["chat", &model(), "--device", "cpu", "--max-tokens", "16"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"What is the capital of Germany?\nAnd of France?\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("Berlin"));
    // One report per turn: "[N prompt tokens, R reused from the cache, ...".
    let reports: Vec<(usize, usize)> = err
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix('[')?;
            let (n, rest) = rest.split_once(" prompt tokens, ")?;
            let (r, _) = rest.split_once(" reused")?;
            Some((n.parse().ok()?, r.parse().ok()?))
        })
        .collect();
    assert_eq!(reports.len(), 2, "{err}");
    assert_eq!(reports[0].1, 0);
    // The second turn reuses the first prompt and (nearly) all of its answer.
    assert!(reports[1].1 > reports[0].0, "{reports:?}");
}

/// A GPU device lost while the weights stream in (destroyed after 20 MB, as a driver reset would) is
/// a clear error at load, not a panic, a hang or garbage tokens; the next load works.
#[test]
fn a_device_lost_during_the_load_is_a_clear_error() {
    let args = [
        "run",
        &model(),
        "--device",
        "gpu",
        "--prompt",
        "The capital of France is",
        "--max-tokens",
        "4",
        "--temperature",
        "0",
        "--json",
    ];
    let out = Command::new(env!("CARGO_BIN_EXE_webmoe"))
        .args(args)
        .env("WEBMOE_TEST_LOSE_DEVICE_AFTER_BYTES", "20000000")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("loading weights") && err.contains("lost"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    let (code, out, err) = webmoe(&args);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["ids"].as_array().unwrap().len(), 4, "{v}");
}
