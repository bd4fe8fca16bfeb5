//! `webmoe serve --openai` driven by the official `openai` Python client (`tests/openai/client_check.py`;
//! `.ci/run` installs the package from PyPI): models, chat (plain and streamed with usage), a completion
//! with log probabilities, a JSON-schema answer (validated by `jsonschema`), and a clear 400 for a bad
//! request.

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
    eprintln!("{v}");
}
