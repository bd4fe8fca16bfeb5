//! `webmoe`: run Llama-family GGUF models on the GPU through wgpu.

mod bench;
mod bench_chat;
mod chat;
mod openai;
mod serve;

use webmoe_cli::{generate, load};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use std::io::Write;
use webmoe_core::chat::{encode_chat, Message};
use webmoe_core::options::{EngineOptions, KvDtype};
use webmoe_core::sampling::SamplingParams;
use webmoe_core::tokenizer::Tokenizer;
use webmoe_engine::{DeviceRequest, OpenOptions};

#[derive(Parser)]
#[command(
    name = "webmoe",
    version,
    about = "Llama-family language models on WebGPU / wgpu"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum Kv {
    F16,
    F32,
}

#[derive(Clone, Copy, ValueEnum)]
enum Device {
    /// The GPU unless there is none, it is a software adapter, the model does not fit it, or its
    /// self-test fails; then the CPU.
    Auto,
    /// The GPU (an error without one).
    Gpu,
    /// The CPU backend (SIMD kernels, all cores).
    Cpu,
}

#[derive(clap::Args, Clone)]
struct EngineArgs {
    /// Which device runs the model.
    #[arg(long, value_enum, default_value = "auto")]
    device: Device,
    /// Skip the GPU self-test (a tiny model of the same family and weight types, run on the device
    /// and checked against the CPU reference before loading).
    #[arg(long)]
    no_self_test: bool,
    /// GPU kernel variants, comma-separated: fused (q/k/v and gate/up decode launches with the
    /// RMSNorm folded in), subgroups, tiled (workgroup-memory prefill mat-mul), f16 (its f16 weight
    /// tiles), all, none. Default: all the adapter supports on a real GPU, none on a software one
    /// (or WEBMOE_GPU_VARIANTS). Variants the adapter lacks are dropped.
    #[arg(long, value_parser = webmoe_gpu::Variants::parse)]
    kernels: Option<webmoe_gpu::Variants>,
    /// Seconds a model server may stall a read (no response, or a body far behind) before the read
    /// fails; a stalled read is retried once.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    stall_timeout: u64,
    /// KV cache element type.
    #[arg(long, value_enum, default_value = "f16")]
    kv_dtype: Kv,
    /// Context size (prompt + generated tokens); capped at the model's.
    #[arg(long, default_value_t = 4096)]
    ctx: usize,
    /// Quantize a Hugging Face checkpoint's weight matrices on load (a quarter of bf16's memory with
    /// q4_0/q4_k).
    #[arg(long, value_enum)]
    quantize: Option<Quant>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Quant {
    #[value(name = "q8_0")]
    Q8_0,
    #[value(name = "q4_0")]
    Q4_0,
    #[value(name = "q4_k")]
    Q4K,
}

impl EngineArgs {
    fn quantize(&self) -> Option<webmoe_core::quant::GgmlType> {
        use webmoe_core::quant::GgmlType;
        self.quantize.map(|q| match q {
            Quant::Q8_0 => GgmlType::Q8_0,
            Quant::Q4_0 => GgmlType::Q4_0,
            Quant::Q4K => GgmlType::Q4_K,
        })
    }

    fn open(&self) -> OpenOptions {
        webmoe_loader::set_stall_timeout(self.stall_timeout);
        OpenOptions {
            device: match self.device {
                Device::Auto => DeviceRequest::Auto,
                Device::Gpu => DeviceRequest::Gpu,
                Device::Cpu => DeviceRequest::Cpu,
            },
            engine: self.options(),
            skip_self_test: self.no_self_test,
            gpu: webmoe_gpu::GpuOptions {
                variants: self.kernels,
                ..Default::default()
            },
            force_self_test_failure: std::env::var_os("WEBMOE_FORCE_SELF_TEST_FAILURE").is_some(),
            ..Default::default()
        }
    }

    fn options(&self) -> EngineOptions {
        EngineOptions {
            max_context: self.ctx,
            kv_dtype: if matches!(self.kv_dtype, Kv::F32) {
                KvDtype::F32
            } else {
                KvDtype::F16
            },
            ..Default::default()
        }
    }
}

/// Structured output flags of `run` (at most one).
#[derive(clap::Args, Clone)]
#[group(multiple = false)]
struct StructuredArgs {
    /// Answer with JSON valid for the JSON schema in FILE.
    #[arg(long, value_name = "FILE")]
    json_schema: Option<std::path::PathBuf>,
    /// Answer with any JSON object.
    #[arg(long)]
    json_object: bool,
    /// Answer in the grammar in FILE: llguidance's Lark dialect, or llama.cpp's GBNF (`root ::= …`).
    #[arg(long, value_name = "FILE")]
    grammar: Option<std::path::PathBuf>,
    /// Answer with text matching this regular expression.
    #[arg(long)]
    regex: Option<String>,
}

impl StructuredArgs {
    /// The constraint the flags ask for.
    fn spec(&self) -> Result<Option<webmoe_grammar::Spec>> {
        use webmoe_grammar::Spec;
        let read = |p: &std::path::Path| -> Result<String> {
            webmoe_loader::read_small_file(p).with_context(|| format!("reading {}", p.display()))
        };
        Ok(if let Some(p) = &self.json_schema {
            let schema: serde_json::Value = serde_json::from_str(&read(p)?)
                .with_context(|| format!("{} is not JSON", p.display()))?;
            Some(Spec::JsonSchema {
                schema,
                strict: true,
            })
        } else if self.json_object {
            Some(Spec::JsonObject)
        } else if let Some(p) = &self.grammar {
            let text = read(p)?;
            Some(if webmoe_grammar::gbnf::looks_like_gbnf(&text) {
                Spec::Gbnf(text)
            } else {
                Spec::Lark(text)
            })
        } else {
            self.regex.clone().map(Spec::Regex)
        })
    }
}

/// Sampling flags of `run` and `chat`.
#[derive(clap::Args, Clone)]
struct SamplingArgs {
    /// Most tokens to generate (per answer in `chat`).
    #[arg(long, default_value_t = 256)]
    max_tokens: usize,
    /// 0 = greedy.
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    #[arg(long, default_value_t = 40)]
    top_k: u32,
    #[arg(long, default_value_t = 0.95)]
    top_p: f32,
    #[arg(long, default_value_t = 0.05)]
    min_p: f32,
    #[arg(long, default_value_t = 1.0)]
    repeat_penalty: f32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

impl SamplingArgs {
    /// The sampler settings, validated.
    fn params(&self) -> Result<SamplingParams> {
        let params = SamplingParams {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            seed: self.seed,
            ..Default::default()
        };
        params
            .validate()
            .map_err(|e| anyhow::anyhow!("invalid sampling parameters: {e}"))?;
        Ok(params)
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// Architecture, dimensions, quant types, tensors and the memory plan on this device.
    Info {
        /// GGUF file (path or http(s):// URL) or Hugging Face folder (directory or URL).
        model: String,
    },
    /// Generate text from a prompt or a chat message.
    Run {
        /// GGUF file (path or http(s):// URL) or Hugging Face folder (directory or URL).
        model: String,
        /// Raw prompt (special-token strings in it are parsed).
        #[arg(long, conflicts_with = "chat")]
        prompt: Option<String>,
        /// A user message, formatted with the model's chat template.
        #[arg(long)]
        chat: Option<String>,
        /// System message for --chat.
        #[arg(long, requires = "chat")]
        system: Option<String>,
        #[command(flatten)]
        sampling: SamplingArgs,
        /// Print one JSON object at the end instead of streaming text.
        #[arg(long)]
        json: bool,
        /// A Hugging Face tokenizer.json to use instead of the tokenizer in the GGUF metadata.
        #[arg(long)]
        tokenizer: Option<String>,
        /// Stop string: generation ends before it (repeatable).
        #[arg(long)]
        stop: Vec<String>,
        #[command(flatten)]
        structured: StructuredArgs,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// Logits of the last position after running the given token ids.
    Logits {
        /// GGUF file (path or http(s):// URL) or Hugging Face folder (directory or URL).
        model: String,
        /// Comma-separated token ids.
        #[arg(long, value_delimiter = ',', required = true)]
        ids: Vec<u32>,
        /// How many top (id, logit) pairs; 0 = all logits.
        #[arg(long, default_value_t = 10)]
        top: usize,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// Chat in the terminal: each line of standard input is a user message (`/reset` starts over,
    /// `/exit` ends). The conversation stays in the KV cache, so a turn prefills only its new tokens.
    Chat {
        /// GGUF file (path or http(s):// URL) or Hugging Face folder (directory or URL).
        model: String,
        /// System message.
        #[arg(long)]
        system: Option<String>,
        #[command(flatten)]
        sampling: SamplingArgs,
        /// Stop string: an answer ends before it (repeatable).
        #[arg(long)]
        stop: Vec<String>,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// Serve a folder (the demo page, model files) over HTTP on localhost, with Range support.
    Serve {
        /// Folder to serve (required unless --openai: serving the current folder by default would
        /// expose `.git` and `.env`). Dotfiles and links leading outside it are never served.
        #[arg(long, required_unless_present = "openai")]
        dir: Option<std::path::PathBuf>,
        /// Load this model (GGUF file or URL, or Hugging Face folder) and serve OpenAI's API for it:
        /// POST /v1/chat/completions, POST /v1/completions (streaming as server-sent events), GET
        /// /v1/models. The engine flags (--device, --ctx, ...) apply.
        #[arg(long, value_name = "MODEL")]
        openai: Option<String>,
        #[command(flatten)]
        engine: EngineArgs,
        /// Port (0 picks a free one).
        #[arg(long, default_value_t = 8080)]
        port: u16,
        /// Address to bind.
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        /// A folder of model files to serve under /models/ as well.
        #[arg(long)]
        models: Option<std::path::PathBuf>,
        /// Accept requests whose `Host` is NAME as well (by default only the bound address,
        /// localhost, 127.0.0.1 and [::1]: a DNS-rebinding page cannot read what is served).
        #[arg(long = "allow-host", value_name = "NAME")]
        allow_hosts: Vec<String>,
        /// Let scripts of pages from ORIGIN (`http://host:port`, or `*` for any) call the OpenAI API
        /// (CORS), e.g. a page using `createEngine({ remote })`. None by default.
        #[arg(long = "allow-origin", value_name = "ORIGIN")]
        allow_origins: Vec<String>,
        /// Seconds a connection may take to send a request's headers, or stay idle between requests.
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
        timeout: u64,
    },
    /// Prefill and decode speed, and decode bandwidth against the device's own copy bandwidth.
    Bench {
        /// GGUF file (path or http(s):// URL) or Hugging Face folder (directory or URL).
        model: String,
        #[arg(long, default_value_t = 128)]
        prompt_tokens: usize,
        #[arg(long, default_value_t = 64)]
        gen_tokens: usize,
        #[arg(long)]
        json: bool,
        /// Also time each kind of kernel launch of one decode step (milliseconds per step).
        #[arg(long)]
        profile: bool,
        /// Instead: a scripted chat of N turns (--gen-tokens per answer), the time to first token
        /// of each turn with the conversation in the cache against the same prompt prefilled whole.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=64))]
        chat_turns: Option<u64>,
        #[command(flatten)]
        engine: EngineArgs,
    },
}

fn main() {
    if let Err(e) = real_main() {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn real_main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Info { model } => info(&model),
        Cmd::Run {
            model,
            prompt,
            chat,
            system,
            sampling,
            json,
            tokenizer,
            stop,
            structured,
            engine,
        } => {
            let params = sampling.params()?;
            let spec = structured.spec()?;
            let mut m = load::load_on(&model, &engine.open(), engine.quantize(), json)?;
            if let Some(path) = tokenizer {
                let text = webmoe_loader::read_small_file(std::path::Path::new(&path))
                    .with_context(|| format!("reading {path}"))?;
                let t = &m.tokenizer;
                m.tokenizer =
                    Tokenizer::from_json(&text, t.special.clone(), t.chat_template.clone())
                        .with_context(|| format!("tokenizer {path}"))?;
            }
            let prompt_ids = match (prompt, chat) {
                (Some(p), None) => m.tokenizer.encode(&p, true, true)?,
                (None, Some(c)) => {
                    let mut msgs = Vec::new();
                    if let Some(s) = system {
                        msgs.push(Message::new("system", &s));
                    }
                    msgs.push(Message::new("user", &c));
                    encode_chat(&m.tokenizer, &msgs, true)?
                }
                _ => bail!("give --prompt TEXT or --chat TEXT"),
            };
            let stdout = std::io::stdout();
            let req = webmoe_core::generate::Request {
                prompt: &prompt_ids,
                params: &params,
                max_tokens: sampling.max_tokens,
                stop: &stop,
                constraint: None,
                logprobs: None,
            };
            let mut constraint = match &spec {
                Some(spec) => Some(webmoe_grammar::Grammars::new(&m.tokenizer)?.constraint(spec)?),
                None => None,
            };
            let req = webmoe_core::generate::Request {
                constraint: constraint
                    .as_mut()
                    .map(|c| c as &mut dyn webmoe_core::generate::Constraint),
                ..req
            };
            let g = generate::generate(&mut m.engine, &m.tokenizer, req, |t| {
                if !json {
                    let mut o = stdout.lock();
                    let _ = o.write_all(t.as_bytes());
                    let _ = o.flush();
                }
            })?;
            if json {
                let mut v = serde_json::to_value(&g)?;
                v["adapter"] = m.device.adapter.clone().unwrap_or_default().into();
                v["device"] = serde_json::to_value(&m.device)?;
                println!("{v}");
            } else {
                println!();
                eprintln!(
                    "[{} prompt tokens, {:.1} tok/s prefill; {} generated, {:.1} tok/s decode; {}]",
                    g.prompt_ids.len(),
                    g.prefill_tokens_per_s,
                    g.ids.len(),
                    g.decode_tokens_per_s,
                    serde_json::to_value(g.finish_reason)?
                );
            }
            Ok(())
        }
        Cmd::Logits {
            model,
            ids,
            top,
            json,
            engine,
        } => {
            let mut m = load::load_on(&model, &engine.open(), engine.quantize(), true)?;
            pollster::block_on(webmoe_core::generate::Backend::forward(
                &mut m.engine,
                &ids,
                None,
            ))?;
            let logits = pollster::block_on(m.engine.logits())?;
            if let Some(bad) = logits.iter().position(|v| !v.is_finite()) {
                bail!(
                    "numerical error: the model produced a non-finite logit ({} for token {bad}) at position {}; the weights or the model configuration are broken",
                    logits[bad],
                    ids.len() - 1
                );
            }
            let mut pairs: Vec<(u32, f32)> = logits
                .iter()
                .enumerate()
                .map(|(i, &v)| (i as u32, v))
                .collect();
            if top > 0 {
                pairs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                pairs.truncate(top);
            }
            if json {
                let v = serde_json::json!({
                    "ids": ids,
                    "top": pairs.iter().map(|(i, l)| serde_json::json!([i, l])).collect::<Vec<_>>(),
                    "adapter": m.device.adapter.clone().unwrap_or_default(),
                    "device": m.device,
                });
                println!("{v}");
            } else {
                for (i, l) in pairs {
                    println!(
                        "{i}\t{l:.6}\t{:?}",
                        m.tokenizer.decode(&[i]).unwrap_or_default()
                    );
                }
            }
            Ok(())
        }
        Cmd::Chat {
            model,
            system,
            sampling,
            stop,
            engine,
        } => chat::run(
            &model,
            &engine.open(),
            engine.quantize(),
            chat::ChatOptions {
                system,
                params: sampling.params()?,
                max_tokens: sampling.max_tokens,
                stop: &stop,
            },
        ),
        Cmd::Serve {
            dir,
            openai,
            engine,
            port,
            host,
            models,
            allow_hosts,
            allow_origins,
            timeout,
        } => {
            let api = match &openai {
                Some(model) => {
                    let name = std::path::Path::new(model.trim_end_matches('/'))
                        .file_name()
                        .map_or(model.clone(), |n| n.to_string_lossy().into_owned());
                    let (model, engine) = (model.clone(), engine.clone());
                    Some(openai::Api::start(
                        move || load::load_on(&model, &engine.open(), engine.quantize(), false),
                        name,
                    )?)
                }
                None => None,
            };
            serve::run(&serve::ServeOptions {
                dir,
                models,
                host,
                port,
                allow_hosts,
                timeout: std::time::Duration::from_secs(timeout),
                openai: api,
                allow_origins,
            })
        }
        Cmd::Bench {
            model,
            prompt_tokens: _,
            gen_tokens,
            json,
            profile: _,
            chat_turns: Some(turns),
            engine,
        } => bench_chat::run(
            &model,
            turns as usize,
            gen_tokens,
            json,
            &engine.open(),
            engine.quantize(),
        ),
        Cmd::Bench {
            model,
            prompt_tokens,
            gen_tokens,
            json,
            profile,
            chat_turns: None,
            engine,
        } => bench::run(
            &model,
            prompt_tokens,
            gen_tokens,
            json,
            profile,
            &engine.open(),
            engine.quantize(),
        ),
    }
}

fn info(model: &str) -> Result<()> {
    let f = load::open(model)?;
    let c = &f.desc.config;
    // A checkpoint's header is the GGUF-style plan over it (no metadata, data from offset 0).
    let format = if f.header.metadata.is_empty() {
        "Hugging Face folder".to_string()
    } else {
        format!("GGUF v{}", f.header.version)
    };
    println!(
        "file: {} ({format}, {} tensors, {:.1} MiB)",
        model,
        f.header.tensors.len(),
        f.header.file_size as f64 / 1048576.0
    );
    if let Some(n) = f.header.get("general.name").and_then(|v| v.as_str()) {
        println!("name: {n}");
    }
    println!("architecture: {}", c.arch);
    println!(
        "dims: vocab {} hidden {} layers {} heads {} kv_heads {} head_dim {} ffn {} context {}",
        c.vocab_size,
        c.hidden,
        c.n_layers,
        c.n_heads,
        c.n_kv_heads,
        c.head_dim,
        c.ffn_dim,
        c.context_length
    );
    println!(
        "rope: base {} dims {} {:?} llama3-freqs {}; rms eps {:e}; tied output {}",
        c.rope_base,
        c.rope_dim,
        c.rope_style,
        c.rope_freq_divisors.is_some(),
        c.rms_eps,
        c.tied_output
    );
    if let Some(m) = &c.moe {
        let moe_layers = f.desc.layers.iter().filter(|l| l.router.is_some()).count();
        let shared = f.desc.layers.iter().find_map(|l| l.shared.as_ref());
        println!(
            "experts: {} per MoE layer ({moe_layers} of {} layers), {} per token, width {}, routing {:?}{}",
            m.n_experts,
            c.n_layers,
            m.n_used,
            m.expert_ffn_dim,
            m.routing,
            shared.map_or(String::new(), |s| format!(
                ", shared expert width {}{}",
                s.width,
                if s.gate_inp.is_some() { " (gated)" } else { "" }
            ))
        );
    }
    let nope: Vec<usize> = (0..c.n_layers)
        .filter(|&i| !f.desc.layers[i].rope)
        .collect();
    println!(
        "attention: q/k norm {:?}; NoPE layers {nope:?}; chunk {:?}; temperature tuning {:?}",
        c.qk_norm, c.attn_chunk, c.temperature
    );
    let mut by_type: std::collections::BTreeMap<&str, (usize, u64)> = Default::default();
    for t in &f.header.tensors {
        let e = by_type.entry(t.ggml_type.name()).or_default();
        e.0 += 1;
        e.1 += t.size_bytes;
    }
    for (ty, (n, b)) in by_type {
        println!("  {ty:>5}: {n:4} tensors, {:9.1} MiB", b as f64 / 1048576.0);
    }
    let opts = EngineOptions::default();
    match webmoe_cpu::plan(&f.desc, &f.header, &opts, Some(webmoe_cpu::WASM_HEAP_LIMIT)) {
        Ok(p) => println!(
            "memory plan on the CPU backend: weights {:.1} MiB + KV cache {:.1} MiB + scratch {:.1} MiB; fits a WebAssembly heap ({:.1} GiB)",
            p.weights as f64 / 1048576.0,
            p.kv_cache as f64 / 1048576.0,
            p.scratch as f64 / 1048576.0,
            webmoe_cpu::WASM_HEAP_LIMIT as f64 / (1u64 << 30) as f64,
        ),
        Err(e) => println!("memory plan on the CPU backend: {e} (natively it runs without that limit)"),
    }
    let gpu = match pollster::block_on(webmoe_gpu::Gpu::new(Default::default())) {
        Ok(g) => g,
        Err(e) => {
            println!("GPU: none ({e})");
            return Ok(());
        }
    };
    match webmoe_gpu::executor::plan(&gpu, &f.desc, &f.header, &opts) {
        Ok(p) => println!(
            "memory plan on {}: weights {:.1} MiB + KV cache {:.1} MiB (ctx {}, f16) + scratch {:.1} MiB; largest buffer {:.1} MiB of {:.1} MiB allowed: fits",
            gpu.adapter_name(),
            p.weights as f64 / 1048576.0,
            p.kv_cache as f64 / 1048576.0,
            opts.max_context.min(c.context_length),
            p.scratch as f64 / 1048576.0,
            p.largest_buffer as f64 / 1048576.0,
            gpu.max_binding_bytes as f64 / 1048576.0
        ),
        Err(e) => println!("memory plan on {}: does not fit: {e}", gpu.adapter_name()),
    }
    Ok(())
}
