//! `cargo xtask web`: the browser package. cargo builds the `webmoe-web` crate for wasm32 twice, with
//! SIMD128 and with SIMD128 + relaxed SIMD (the CPU backend's faster dot product; a module with relaxed
//! opcodes does not validate where they are unsupported, so the worker picks one with
//! `WebAssembly.validate`). wasm-bindgen writes the ES module and its TypeScript types (one JS glue
//! serves both modules: the build checks that they are identical), and the JS API, worker and types
//! from `web/src` are copied beside them, so `web/pkg` is a complete ES-module package. Settings come
//! from `wasm-pack.toml`.

use crate::{cargo, root, sh};
use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::path::Path;
use std::process::Command;

#[derive(Deserialize)]
struct File {
    build: Build,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Build {
    #[serde(rename = "crate")]
    krate: String,
    target: String,
    out_dir: String,
    features: Vec<String>,
    profile: String,
    wasm_opt: toml::Value,
}

/// The wasm-bindgen version in Cargo.lock (the CLI must match it exactly).
fn bindgen_version() -> Result<String> {
    let lock = std::fs::read_to_string(root().join("Cargo.lock"))?;
    let mut lines = lock.lines();
    while let Some(l) = lines.next() {
        if l == "name = \"wasm-bindgen\"" {
            if let Some(v) = lines.next().and_then(|v| v.strip_prefix("version = \"")) {
                return Ok(v.trim_end_matches('"').to_string());
            }
        }
    }
    bail!("wasm-bindgen is not in Cargo.lock")
}

/// Makes sure `wasm-bindgen` at the locked version is on PATH (installs it from crates.io if not).
fn ensure_bindgen() -> Result<()> {
    let want = bindgen_version()?;
    let have = Command::new("wasm-bindgen")
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    if have.as_deref() == Some(&format!("wasm-bindgen {want}")) {
        return Ok(());
    }
    eprintln!("installing wasm-bindgen-cli {want} from crates.io (a few minutes, once)");
    // No --locked: its lock file pins a webpki-roots release some registry mirrors lack.
    sh(cargo().args(["install", "wasm-bindgen-cli", "--version", &want]))
}

/// Builds the web package.
/// The threaded CPU module (`crates/webmoe-threads`, wasm32-wasip1-threads, whose prebuilt std has
/// atomics) in the same two SIMD variants, as `webmoe_threads.wasm` and `webmoe_threads_relaxed.wasm`:
/// up to 4 GiB of shared memory, and `wasi_thread_start` exported for the pool's workers.
fn threads_module(profile: &str, out: &Path) -> Result<()> {
    let target = "wasm32-wasip1-threads";
    for (features, name) in [
        ("+simd128", "webmoe_threads.wasm"),
        ("+simd128,+relaxed-simd", "webmoe_threads_relaxed.wasm"),
    ] {
        let dir = format!("target/wasm-threads-{}", name.trim_end_matches(".wasm"));
        sh(cargo()
            .args(["build", "--target", target, "--profile", profile])
            .args(["-p", "webmoe-threads", "--target-dir", &dir])
            .env(
                "CARGO_ENCODED_RUSTFLAGS",
                [
                    format!("-Ctarget-feature={features}"),
                    "-Clink-arg=--max-memory=4294967296".into(),
                    "-Clink-arg=--export=wasi_thread_start".into(),
                ]
                .join("\x1f"),
            ))?;
        std::fs::copy(
            root()
                .join(&dir)
                .join(target)
                .join(profile)
                .join("webmoe_threads.wasm"),
            out.join(name),
        )?;
    }
    Ok(())
}

pub fn build() -> Result<()> {
    let root = root();
    let cfg: File = toml::from_str(&std::fs::read_to_string(root.join("wasm-pack.toml"))?)
        .context("reading wasm-pack.toml")?;
    let b = cfg.build;
    ensure_bindgen()?;
    let pkg_name = Path::new(&b.krate)
        .file_name()
        .context("crate path")?
        .to_string_lossy()
        .to_string();
    let stem = pkg_name.replace('-', "_");
    let out = root.join(&b.out_dir);
    let _ = std::fs::remove_dir_all(&out);
    // (target dir, features, output folder): separate target dirs keep both builds incremental.
    let relaxed_out = root.join("target/wasm-relaxed-pkg");
    let variants = [
        ("target/wasm-simd128", "+simd128", out.clone()),
        (
            "target/wasm-relaxed",
            "+simd128,+relaxed-simd",
            relaxed_out.clone(),
        ),
    ];
    for (target_dir, features, dir) in &variants {
        let mut c = cargo();
        c.args([
            "build",
            "--target",
            "wasm32-unknown-unknown",
            "--profile",
            &b.profile,
            "-p",
            &pkg_name,
            "--target-dir",
            target_dir,
        ])
        .env(
            "CARGO_ENCODED_RUSTFLAGS",
            format!("-Ctarget-feature={features}"),
        );
        if !b.features.is_empty() {
            c.args(["--features", &b.features.join(",")]);
        }
        sh(&mut c)?;
        let wasm = root
            .join(target_dir)
            .join("wasm32-unknown-unknown")
            .join(&b.profile)
            .join(format!("{stem}.wasm"));
        let _ = std::fs::remove_dir_all(dir);
        sh(Command::new("wasm-bindgen")
            .args(["--target", &b.target, "--out-dir"])
            .arg(dir)
            .arg(&wasm))?;
    }
    let glue = |d: &Path| std::fs::read(d.join(format!("{stem}.js")));
    if glue(&out)? != glue(&relaxed_out)? {
        bail!(
            "the SIMD128 and relaxed-SIMD builds need different JS glue; ship them as two packages"
        );
    }
    std::fs::copy(
        relaxed_out.join(format!("{stem}_bg.wasm")),
        out.join(format!("{stem}_relaxed_bg.wasm")),
    )?;
    threads_module(&b.profile, &out)?;
    match &b.wasm_opt {
        toml::Value::Boolean(false) => {}
        toml::Value::String(path) => {
            for bg in [
                out.join(format!("{stem}_bg.wasm")),
                out.join(format!("{stem}_relaxed_bg.wasm")),
            ] {
                sh(Command::new(root.join(path))
                    .args(["-Os", "--enable-reference-types", "--enable-bulk-memory"])
                    .args(["--enable-nontrapping-float-to-int", "--enable-simd"])
                    .arg("--enable-relaxed-simd")
                    .arg(&bg)
                    .arg("-o")
                    .arg(&bg))?;
            }
        }
        other => bail!("wasm-opt in wasm-pack.toml must be false or a path, not {other}"),
    }
    for f in std::fs::read_dir(root.join("web/src"))? {
        let f = f?;
        std::fs::copy(f.path(), out.join(f.file_name()))?;
    }
    std::fs::write(
        out.join("package.json"),
        format!(
            r#"{{
  "name": "webmoe",
  "version": "{}",
  "description": "Llama-family and Mixture-of-Experts language models in the browser on WebGPU",
  "type": "module",
  "main": "webmoe.js",
  "module": "webmoe.js",
  "types": "webmoe.d.ts",
  "exports": {{
    ".": {{ "types": "./webmoe.d.ts", "import": "./webmoe.js", "default": "./webmoe.js" }},
    "./worker.js": "./worker.js",
    "./package.json": "./package.json",
    "./*.wasm": "./*.wasm"
  }},
  "sideEffects": ["./worker.js", "./threads_worker.js"],
  "files": ["*.js", "*.d.ts", "*.wasm", "README.md", "LICENSE"],
  "license": "MIT OR Apache-2.0"
}}
"#,
            env!("CARGO_PKG_VERSION")
        ),
    )?;
    std::fs::copy(root.join("web/package-readme.md"), out.join("README.md"))?;
    std::fs::copy(root.join("LICENSE"), out.join("LICENSE"))?;
    eprintln!("web package in {}", out.display());
    Ok(())
}
