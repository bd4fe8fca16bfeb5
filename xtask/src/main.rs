//! Build and test orchestration: `cargo xtask demo | test | run | bench | bench-web | web | check`.

mod web;

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

const MODEL: &str = "models/SmolLM2-135M-Instruct.Q4_1.gguf";
const USAGE: &str = "usage: cargo xtask <demo|test|run|bench|bench-web|web|check>
  demo   build the web package, fetch the default model and serve the demo page on 127.0.0.1
         (extra args go to `webmoe serve`, e.g. --port 9000)
  test   fetch the test model and run every test: native (on the default wgpu adapter), the CPU
         backend's tests built for aarch64 (NEON) under qemu-user, the TypeScript types against the
         `openai` package's, then the browser end-to-end suite in headless Chromium
  bench-moe  synthetic MoE (128 experts, 8 per token, Q4_0) against the dense model with the same
         active parameters per token: `webmoe bench` on both (--device auto|gpu|cpu) and the
         MoE/dense ratios; with --web
         also in headless Chromium
  web    build the web package (web/pkg) with the settings in wasm-pack.toml
  bench-web  load the test model in headless Chromium and print load time, prefill and decode speed
         as JSON, beside llama.cpp's WebAssembly build (wllama) on the same model
  run    fetch the test model and chat with it through the CLI (extra args go to `webmoe run`)
  bench  fetch the test model and print `webmoe bench --json`
  check  rustfmt --check and clippy with warnings denied, also of the CPU backend for aarch64 and of
         the threaded module for wasm32-wasip1-threads (the wasm32 build is `web`'s, which `test`
         runs)";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn sh(cmd: &mut Command) -> Result<()> {
    eprintln!("+ {cmd:?}");
    let status = cmd
        .current_dir(root())
        .status()
        .with_context(|| format!("starting {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

/// `cargo run --release -q -p webmoe-cli TARGET --` (TARGET: nothing for the CLI, or an example).
fn cli_crate(target: &[&str]) -> Command {
    let mut c = cargo();
    c.args(["run", "--release", "-q", "-p", "webmoe-cli"])
        .args(target)
        .arg("--");
    c
}

/// The `webmoe` CLI with `subcommand`.
fn webmoe(subcommand: &str) -> Command {
    let mut c = cli_crate(&[]);
    c.arg(subcommand);
    c
}

/// Mesa prints warnings without a runtime dir; give it a private one.
fn gpu_env() {
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        let dir = std::env::temp_dir().join("webmoe-xdg");
        let _ = std::fs::create_dir_all(&dir);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
        }
        std::env::set_var("XDG_RUNTIME_DIR", dir);
    }
}

/// Installs the browser test tools (playwright-core, wllama) from npm into web/node_modules.
fn npm_install() -> Result<()> {
    sh(Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--prefix", "web"])
        .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1"))
}

/// The demo page's Markdown renderer and sanitizer (marked, DOMPurify, pinned in web/package.json),
/// copied from web/node_modules into web/vendor/ (without them the demo shows answers as plain text).
fn vendor_demo_libs() -> Result<()> {
    let vendor = root().join("web/vendor");
    std::fs::create_dir_all(&vendor)?;
    for (from, to) in [
        ("marked/lib/marked.esm.js", "marked.esm.js"),
        ("dompurify/dist/purify.es.mjs", "purify.es.mjs"),
    ] {
        let src = root().join("web/node_modules").join(from);
        std::fs::copy(&src, vendor.join(to))
            .with_context(|| format!("copying {} (npm ci --prefix web)", src.display()))?;
    }
    Ok(())
}

/// The CLI the browser tests compare against: the one `cargo test --workspace` just built (building
/// it alone would resolve features differently and rebuild every dependency).
fn test_cli() -> Result<PathBuf> {
    let cli = root().join("target/debug/webmoe");
    if !cli.exists() {
        sh(cargo().args(["build", "-q", "--workspace", "--bins"]))?;
    }
    Ok(cli)
}

/// Runs a Node script of the browser suite with the test model and the CLI.
fn node(script: &str, extra: &[String]) -> Result<()> {
    let cli = test_cli()?;
    sh(Command::new("node")
        .arg(script)
        .args(extra)
        .env("WEBMOE_CLI", cli)
        .env("WEBMOE_MODEL", root().join(MODEL)))
}

/// `cargo xtask bench-moe [--web] [--device auto|gpu|cpu]`: generates the pair with the committed
/// generator and benchmarks both natively (on `--device`, default auto), and with `--web` also in
/// headless Chromium (`web/tests/bench_moe.mjs`).
fn bench_moe(web: bool, device: &str) -> Result<()> {
    let dir = root().join("target/bench-models");
    std::fs::create_dir_all(&dir)?;
    // The dense model's weights (about 85 MB) must not fit the CPU's last-level cache, or the dense
    // baseline would be measured from cache while the MoE reads its experts from memory.
    let (hidden, layers, width, vocab, experts, used) = (1024, 16, 256, 8192, 128, 8);
    let models = [
        ("moe", vec![width, vocab, experts, used]),
        ("dense", vec![width * used, vocab]),
    ];
    let mut results = Vec::new();
    let mut paths = Vec::new();
    for (name, dims) in models {
        let path = dir.join(format!("synthetic-{name}.gguf"));
        let mut c = cli_crate(&["--example", "synth"]);
        c.arg(&path)
            .args(["Q4_0", &hidden.to_string(), &layers.to_string()])
            .args(dims.iter().map(|d| d.to_string()));
        sh(&mut c)?;
        let out = webmoe("bench")
            .arg(&path)
            .args(["--prompt-tokens", "256", "--gen-tokens", "64", "--json"])
            .args(["--device", device])
            .current_dir(root())
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "bench {name} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        println!("{name}: {v}");
        results.push(v);
        paths.push(path.display().to_string());
    }
    let ratio = |key: &str| {
        let get = |v: &serde_json::Value| v[key].as_f64().unwrap_or(f64::NAN);
        get(&results[0]) / get(&results[1])
    };
    println!(
        "{}",
        serde_json::json!({
            "moe_over_dense_decode": ratio("decode_tokens_per_s"),
            "moe_over_dense_prefill": ratio("prefill_tokens_per_s"),
        })
    );
    if web {
        web::build()?;
        npm_install()?;
        sh(Command::new("node")
            .arg("web/tests/bench_moe.mjs")
            .args(&paths))?;
    }
    Ok(())
}

/// The CPU backend's tests (kernels bit-identical to the portable ones, engine against the reference)
/// cross-built for aarch64, so that the NEON kernels run, under qemu-user. Needs the
/// `aarch64-unknown-linux-gnu` Rust target, `gcc-aarch64-linux-gnu` and `qemu-user` (`.ci/run` installs
/// them).
fn aarch64_cpu_tests() -> Result<()> {
    let target = "aarch64-unknown-linux-gnu";
    for tool in ["aarch64-linux-gnu-gcc", "qemu-aarch64"] {
        let found = Command::new(tool).arg("--version").output().is_ok();
        anyhow::ensure!(
            found,
            "{tool} is missing: the NEON kernels are tested under qemu (apt-get install qemu-user gcc-aarch64-linux-gnu libc6-dev-arm64-cross; rustup target add {target})"
        );
    }
    sh(cargo()
        .args(["test", "-p", "webmoe-cpu", "--target", target])
        .env(
            "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER",
            "aarch64-linux-gnu-gcc",
        )
        .env("CC_aarch64_unknown_linux_gnu", "aarch64-linux-gnu-gcc")
        .env(
            "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER",
            "qemu-aarch64 -L /usr/aarch64-linux-gnu",
        ))
}

/// Runs one phase of a command and says how long it took (CI logs show where the time goes).
fn timed(phase: &str, f: impl FnOnce() -> Result<()>) -> Result<()> {
    let t = std::time::Instant::now();
    let r = f();
    eprintln!("[xtask] {phase}: {:.0} s", t.elapsed().as_secs_f64());
    r
}

fn fetch_model() -> Result<()> {
    sh(Command::new("bash").arg("scripts/fetch-test-model.sh"))
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = args.first() else {
        bail!("{USAGE}");
    };
    gpu_env();
    match cmd.as_str() {
        "test" => {
            timed("fetch the test model", fetch_model)?;
            // Real tool-aware chat templates (crates/webmoe-grammar/tests/native_templates.rs).
            timed("fetch chat templates", || {
                sh(Command::new("bash").arg("scripts/fetch-chat-templates.sh"))
            })?;
            timed("native tests", || {
                sh(cargo()
                    .args(["test", "--workspace", "--no-fail-fast"])
                    .args(&args[1..]))
            })?;
            timed("aarch64 CPU tests under qemu", aarch64_cpu_tests)?;
            timed("web package", web::build)?;
            timed("npm ci", || npm_install().and_then(|()| vendor_demo_libs()))?;
            // The package's types against the `openai` package's (web/tests/types).
            timed("TypeScript types against openai's", || {
                sh(Command::new("node").args([
                    "web/node_modules/typescript/bin/tsc",
                    "-p",
                    "web/tests/types",
                ]))
            })?;
            timed("browser tests", || node("web/tests/e2e.mjs", &[]))
        }
        "web" => web::build(),
        "bench-moe" => {
            let device = args
                .iter()
                .position(|a| a == "--device")
                .and_then(|i| args.get(i + 1))
                .map_or("auto", String::as_str);
            bench_moe(args.iter().any(|a| a == "--web"), device)
        }
        "demo" => {
            web::build()?;
            fetch_model()?;
            if let Err(e) = npm_install().and_then(|()| vendor_demo_libs()) {
                eprintln!(
                    "warning: no Markdown in the demo (answers are shown as plain text): {e:#}"
                );
            }
            sh(webmoe("serve")
                .args(["--dir", "web", "--models", "models"])
                .args(&args[1..]))
        }
        "bench-web" => {
            fetch_model()?;
            web::build()?;
            npm_install()?;
            sh(Command::new("node")
                .arg("web/tests/bench.mjs")
                .args(&args[1..])
                .env("WEBMOE_MODEL", root().join(MODEL)))
        }
        "run" => {
            fetch_model()?;
            let extra: Vec<&str> = if args.len() > 1 {
                args[1..].iter().map(String::as_str).collect()
            } else {
                vec![
                    "--chat",
                    "What is the capital of France? Answer in one sentence.",
                ]
            };
            sh(webmoe("run").arg(MODEL).args(extra))
        }
        "bench" => {
            fetch_model()?;
            sh(webmoe("bench").args([MODEL, "--json"]).args(&args[1..]))
        }
        "check" => {
            timed("rustfmt", || {
                sh(cargo().args(["fmt", "--all", "--", "--check"]))
            })?;
            // The wasm32 build of the libraries is `web`'s (webmoe-web depends on all three), which
            // `test` runs; building them here as well cost CI four and a half minutes.
            // The NEON kernels compile only for aarch64, the threaded module's ABI only for WASI.
            let clippy: [&[&str]; 3] = [
                &["--workspace", "--all-targets"],
                &[
                    "-p",
                    "webmoe-cpu",
                    "--target",
                    "aarch64-unknown-linux-gnu",
                    "--all-targets",
                ],
                &["-p", "webmoe-threads", "--target", "wasm32-wasip1-threads"],
            ];
            for args in clippy {
                timed(&format!("clippy {}", args.join(" ")), || {
                    sh(cargo()
                        .arg("clippy")
                        .args(args)
                        .args(["--", "-D", "warnings"]))
                })?;
            }
            Ok(())
        }
        other => bail!("unknown command {other:?}\n{USAGE}"),
    }
}
