//! `webmoe serve --openai` driven by the official `openai` Python client (`tests/openai/client_check.py`;
//! `.ci/run` installs the package from PyPI): models, chat (plain and streamed with usage), a completion
//! with log probabilities, a JSON-schema answer (validated by `jsonschema`), tool calls (required,
//! named and streamed, with arguments validated against the function's schema, then the tool's answer
//! sent back), and a clear 400 for a bad request.

use std::io::BufRead;
use std::process::{Command, Stdio};

#[test]
fn the_openai_python_client_talks_to_serve_openai() {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let model = root.join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        model.exists(),
        "test model missing: run scripts/fetch-test-model.sh"
    );
    let mut server = Command::new(env!("CARGO_BIN_EXE_webmoe"))
        .args([
            "serve",
            "--openai",
            model.to_str().unwrap(),
            "--device",
            "cpu",
            "--port",
            "0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(server.stdout.take().unwrap()).lines();
    let base = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| {
            l.strip_prefix("serving at ")
                .map(|u| u.trim_end_matches('/').to_string())
        })
        .expect("the server prints its address");
    let out = Command::new("python3")
        .arg(root.join("tests/openai/client_check.py"))
        .arg(&base)
        .output()
        .unwrap();
    let _ = server.kill();
    let _ = server.wait();
    assert!(
        out.status.success(),
        "client failed (is the `openai` package installed? .ci/run installs it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["models"][0], "SmolLM2-135M-Instruct.Q4_1.gguf");
    let chat = v["chat"]["text"].as_str().unwrap();
    assert!(chat.contains("Berlin"), "{v}");
    assert_eq!(
        v["stream"]["text"], v["chat"]["text"],
        "streamed text equals the plain answer"
    );
    assert_eq!(v["stream"]["usage"], v["chat"]["usage"]);
    assert_eq!(v["completion"]["tokens"].as_array().unwrap().len(), 4);
    let validator = jsonschema::validator_for(&v["json_schema"]).unwrap();
    assert!(validator.is_valid(&v["json"]), "{v}");
    assert_eq!(v["bad"]["type"], "BadRequestError", "{v}");
    assert!(
        v["bad"]["message"]
            .as_str()
            .unwrap()
            .contains("temperature"),
        "{v}"
    );
    // Tools: calls of declared functions whose arguments validate against the function's schema.
    let schema_of = |name: &str| {
        v["tools"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["function"]["name"] == name)
            .map(|t| jsonschema::validator_for(&t["function"]["parameters"]).unwrap())
            .unwrap_or_else(|| panic!("{name} is not a declared tool"))
    };
    let required = &v["tool_required"];
    assert_eq!(required["finish"], "tool_calls", "{v}");
    assert!(required["content"].is_null(), "{v}");
    let calls = required["calls"].as_array().unwrap();
    assert_eq!(calls.len(), 1, "{v}");
    for c in calls {
        assert_eq!(c["type"], "function");
        assert!(c["id"].as_str().unwrap().starts_with("call_"));
        let args: serde_json::Value =
            serde_json::from_str(c["function"]["arguments"].as_str().unwrap()).unwrap();
        assert!(
            schema_of(c["function"]["name"].as_str().unwrap()).is_valid(&args),
            "{v}"
        );
    }
    let named = &v["tool_named_stream"];
    assert_eq!(named["finish"], "tool_calls", "{v}");
    let delta = &named["deltas"][0];
    assert_eq!(
        (delta["index"].as_u64(), &delta["function"]["name"]),
        (Some(0), &"get_time".into()),
        "{v}"
    );
    let args: serde_json::Value =
        serde_json::from_str(delta["function"]["arguments"].as_str().unwrap()).unwrap();
    assert!(schema_of("get_time").is_valid(&args), "{v}");
    // The tool's answer goes back in; the conversation so far comes from the cache.
    let answer = &v["tool_answer"];
    assert!(
        matches!(answer["finish"].as_str(), Some("stop" | "length")),
        "{v}"
    );
    assert!(!answer["content"].as_str().unwrap_or("").is_empty(), "{v}");
    assert!(answer["cached"].as_u64().unwrap() > 0, "{v}");
    eprintln!("{v}");
}
