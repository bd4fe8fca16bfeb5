//! `webmoe run` on Hugging Face folders, by path and by URL (served by `webmoe serve` on 127.0.0.1):
//! the same prompt ids and greedy tokens either way, for a sharded Llama 4 folder and a Mixtral folder
//! with a SentencePiece-derived tokenizer.json; and `--quantize` on a GGUF file is a clear error.

use std::net::TcpStream;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_webmoe"))
}

fn hf_dir() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/moe/hf").to_string()
}

struct Server(Child, u16);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve() -> Server {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = bin()
        .args(["serve", "--dir", &hf_dir(), "--port", &port.to_string()])
        .spawn()
        .unwrap();
    let t = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "webmoe serve did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Server(child, port)
}

fn run_json(model: &str, extra: &[&str]) -> serde_json::Value {
    let out = bin()
        .args(["run", model, "--prompt", "The quick brown fox 7 jumps over"])
        .args(["--max-tokens", "12", "--kv-dtype", "f32", "--json"])
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "webmoe run {model} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn a_folder_runs_the_same_by_path_and_by_url() {
    let server = serve();
    for family in ["llama4", "mixtral"] {
        let local = run_json(&format!("{}/{family}", hf_dir()), &[]);
        let remote = run_json(&format!("http://127.0.0.1:{}/{family}", server.1), &[]);
        assert!(
            !local["prompt_ids"].as_array().unwrap().is_empty(),
            "{family}"
        );
        assert_eq!(
            local["prompt_ids"], remote["prompt_ids"],
            "{family}: prompt ids"
        );
        assert_eq!(local["ids"], remote["ids"], "{family}: greedy ids");
        assert!(!local["ids"].as_array().unwrap().is_empty(), "{family}");
    }
}

#[test]
fn quantize_applies_to_folders_only() {
    let gguf = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/moe/mixtral.f32.gguf"
    );
    let out = bin()
        .args(["run", gguf, "--prompt", "hi", "--quantize", "q4_0"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("--quantize q4_0 applies to Hugging Face folders"),
        "{err}"
    );
    // On a folder it works and reports the quantized model's tokens.
    let v = run_json(&format!("{}/olmoe", hf_dir()), &["--quantize", "q8_0"]);
    assert!(!v["ids"].as_array().unwrap().is_empty());
}
