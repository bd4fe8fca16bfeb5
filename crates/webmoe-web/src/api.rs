//! The functions JavaScript calls (the worker in `web/src/worker.js`; see `web/src/webmoe.d.ts` for the
//! public API built on them). One model per WebAssembly instance (one per worker).

use crate::error::WebError;
use crate::js::{call1, heap_bytes, now_s, to_js};
use crate::load::{load as load_model, LoadReport, LoadSpec, Loaded};
use crate::yielding::Yielding;
use serde::{Deserialize, Serialize};
use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicBool, Ordering};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use webmoe_core::chat::encode_chat_with_tools;
use webmoe_core::chat_request::messages_from_openai;
use webmoe_core::generate::{generate as run_generation, Backend, Finish, Request};
use webmoe_core::options::{EngineOptions, KvDtype};
use webmoe_core::quant::GgmlType;
use webmoe_core::sampling::SamplingParams;
use webmoe_core::tool_prompt::tool_format;
use webmoe_engine::{DeviceReport, DeviceRequest, OpenOptions};
use webmoe_gpu::{GpuOptions, Tuning, Variants};
use webmoe_grammar::{Answer, Tools};
use webmoe_loader::{DEFAULT_CHUNK_BYTES, DEFAULT_PARALLEL};

thread_local! {
    /// The loaded model; taken out while a generation runs.
    static MODEL: RefCell<Option<Loaded>> = const { RefCell::new(None) };
    static BUSY: Cell<bool> = const { Cell::new(false) };
    static LAST_SPEED: Cell<(f64, f64)> = const { Cell::new((0.0, 0.0)) };
    static STATIC_STATS: RefCell<Option<StaticStats>> = const { RefCell::new(None) };
    /// The grammar engine for the loaded tokenizer, built at the first constrained request.
    static GRAMMARS: RefCell<Option<std::rc::Rc<webmoe_grammar::Grammars>>> = const { RefCell::new(None) };
}

static INTERRUPT: AtomicBool = AtomicBool::new(false);

#[derive(Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct StaticStats {
    model: ModelInfo,
    /// `"gpu"` or `"cpu"`, why, the self-test, the CPU kernels.
    device: DeviceReport,
    /// The adapter (empty on the CPU without one).
    adapter: String,
    backend: String,
    device_type: String,
    /// The mat-vec kernel shape in use on the GPU: [threads per row, rows per thread].
    tuning: Option<[u32; 2]>,
    /// Optional WebGPU features the kernels use.
    features_used: Vec<&'static str>,
    /// GPU kernel variants in use (`Variants::names`).
    kernels: Option<String>,
    /// Bytes planned on the device that runs the model (GPU memory, or the CPU backend's heap).
    bytes_planned: u64,
    gpu_bytes_planned: u64,
    kv_dtype: &'static str,
    context_size: usize,
    load: LoadReport,
}

#[derive(Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct ModelInfo {
    architecture: String,
    vocab_size: usize,
    hidden_size: usize,
    layers: usize,
    context_length: usize,
    has_chat_template: bool,
}

fn opt<T: for<'de> Deserialize<'de>>(o: &JsValue, key: &str) -> Result<Option<T>, JsValue> {
    let v = js_sys::Reflect::get(o, &key.into())?;
    if v.is_undefined() || v.is_null() {
        return Ok(None);
    }
    serde_wasm_bindgen::from_value(v)
        .map(Some)
        .map_err(|e| WebError::Invalid(format!("option {key}: {e}")).into())
}

/// A folder's files from JS: `[[name, File], …]` (what `web/src/webmoe.js` makes of a `FileList`, an
/// array of `File`s or a directory handle), or `None` when absent.
fn folder_files(
    v: &JsValue,
) -> Result<Option<std::collections::HashMap<String, web_sys::Blob>>, JsValue> {
    if v.is_undefined() || v.is_null() {
        return Ok(None);
    }
    let bad = || WebError::Invalid("files must be a list of [name, File] pairs".into());
    let list: &js_sys::Array = v.dyn_ref().ok_or_else(bad)?;
    let mut out = std::collections::HashMap::new();
    for pair in list.iter() {
        let pair: &js_sys::Array = pair.dyn_ref().ok_or_else(bad)?;
        let name = pair.get(0).as_string().ok_or_else(bad)?;
        let blob = crate::source::as_blob(&pair.get(1)).ok_or_else(bad)?;
        out.insert(name, blob);
    }
    Ok(Some(out))
}

/// Loads a model. `options`: `{ url?: string (a GGUF file, or a Hugging Face folder when its path
/// does not end in `.gguf`), file?: Blob (a GGUF file), files?: [name, File][] (a Hugging Face
/// folder's files), quantize?: "q8_0" | "q4_0" | "q4_k" (a folder's matrices, on load), chunkSize?: number, parallel?: number,
/// cache?: boolean, kvDtype?: "f16" | "f32", contextSize?: number, tuning?: [lanes, rowsPerThread],
/// device?: "auto" | "gpu" | "cpu", selfTest?: boolean, forceSelfTestFailure?: boolean,
/// cpuHeapLimit?: number, kernels?: string (GPU kernel variants, `Variants::parse`), stallTimeout?: number
/// (seconds a server may stall a read), cpuThreads?: number
/// (the worker started the threaded CPU module with that many threads),
/// softwareAdapter?: boolean, noGpuReason?: string, loseDeviceAfterBytesForTesting?: number (testing:
/// the GPU device is destroyed once that many weight bytes are in) }` (`softwareAdapter`: the page saw
/// `isFallbackAdapter` or a software adapter's name in `GPUAdapterInfo`; `noGpuReason`: the page found
/// no WebGPU adapter, and why). `onProgress` gets
/// `{ phase, loadedBytes, totalBytes, cachedBytes, bytesPerSecond, fromCache, heapBytes, warning? }`.
/// Resolves to `stats()`.
///
/// # Errors
/// An `Error` with a `code` (see `WebError::code`) and a message that names the cause.
#[wasm_bindgen]
pub async fn load(options: JsValue, on_progress: js_sys::Function) -> Result<JsValue, JsValue> {
    if BUSY.get() {
        return Err(WebError::Invalid("a generation is running; interrupt it first".into()).into());
    }
    MODEL.with(|m| m.borrow_mut().take());
    STATIC_STATS.with(|s| s.borrow_mut().take());
    GRAMMARS.with(|g| g.borrow_mut().take());
    let file = js_sys::Reflect::get(&options, &"file".into())?;
    let blob = crate::source::as_blob(&file);
    let files = folder_files(&js_sys::Reflect::get(&options, &"files".into())?)?;
    let quantize = match opt::<String>(&options, "quantize")?.as_deref() {
        None => None,
        Some("q8_0") => Some(GgmlType::Q8_0),
        Some("q4_0") => Some(GgmlType::Q4_0),
        Some("q4_k") => Some(GgmlType::Q4_K),
        Some(other) => {
            return Err(WebError::Invalid(format!(
                "quantize must be \"q8_0\", \"q4_0\" or \"q4_k\", not {other:?}"
            ))
            .into())
        }
    };
    let kv = match opt::<String>(&options, "kvDtype")?.as_deref() {
        None | Some("f16") => KvDtype::F16,
        Some("f32") => KvDtype::F32,
        Some(other) => {
            return Err(WebError::Invalid(format!(
                "kvDtype must be \"f16\" or \"f32\", not {other:?}"
            ))
            .into())
        }
    };
    let mut engine = EngineOptions {
        kv_dtype: kv,
        ..Default::default()
    };
    if let Some(ctx) = opt::<usize>(&options, "contextSize")? {
        engine.max_context = ctx.max(1);
    }
    let chunk_bytes = opt::<f64>(&options, "chunkSize")?
        .map(|v| v as u64)
        .unwrap_or(DEFAULT_CHUNK_BYTES);
    if chunk_bytes < 4096 {
        return Err(
            WebError::Invalid(format!("chunkSize {chunk_bytes} is below 4096 bytes")).into(),
        );
    }
    let device = match opt::<String>(&options, "device")? {
        None => DeviceRequest::Auto,
        Some(d) => d.parse::<DeviceRequest>().map_err(WebError::Invalid)?,
    };
    let software = opt::<bool>(&options, "softwareAdapter")?.unwrap_or(false);
    if let Some(s) = opt::<f64>(&options, "stallTimeout")? {
        if !(s.is_finite() && (1.0..=3600.0).contains(&s)) {
            return Err(WebError::Invalid(format!(
                "option stallTimeout must be a number of seconds from 1 to 3600, not {s}"
            ))
            .into());
        }
        crate::source::set_stall_timeout(s);
    }
    let spec = LoadSpec {
        url: opt::<String>(&options, "url")?,
        blob,
        files,
        quantize,
        chunk_bytes,
        parallel: opt::<usize>(&options, "parallel")?
            .unwrap_or(DEFAULT_PARALLEL)
            .clamp(1, 16),
        use_cache: opt::<bool>(&options, "cache")?.unwrap_or(true),
        open: OpenOptions {
            device,
            engine,
            gpu: GpuOptions {
                tuning: opt::<[u32; 2]>(&options, "tuning")?.map(|[lanes, rows_per_thread]| {
                    Tuning {
                        lanes,
                        rows_per_thread,
                    }
                }),
                // Software adapters keep the baseline kernels unless the page asks for variants.
                variants: match opt::<String>(&options, "kernels")? {
                    Some(k) => Some(
                        Variants::parse(&k)
                            .map_err(|e| WebError::Invalid(format!("option kernels: {e}")))?,
                    ),
                    None => software.then(Variants::default),
                },
                ..Default::default()
            },
            // `cpuHeapLimit` lowers the limit (tests of the model-too-large path).
            cpu_limit: Some(
                opt::<f64>(&options, "cpuHeapLimit")?.map_or(webmoe_cpu::WASM_HEAP_LIMIT, |l| {
                    (l.max(0.0) as u64).min(webmoe_cpu::WASM_HEAP_LIMIT)
                }),
            ),
            skip_self_test: !opt::<bool>(&options, "selfTest")?.unwrap_or(true),
            force_self_test_failure: opt::<bool>(&options, "forceSelfTestFailure")?
                .unwrap_or(false),
            software_adapter: software,
            no_gpu_reason: opt::<String>(&options, "noGpuReason")?,
            software_adapter_is_gpu: false,
            external_cpu: None,
        },
        threaded_cpu: opt::<u32>(&options, "cpuThreads")?.is_some_and(|n| n > 1),
        lose_device_after_bytes: opt::<f64>(&options, "loseDeviceAfterBytesForTesting")?
            .map(|b| b.max(0.0) as u64),
    };
    let loaded = load_model(spec, &on_progress).await?;
    let e = &loaded.engine;
    let c = &e.desc().config;
    let gpu = e.gpu().map(|g| &g.gpu);
    let snapshot = StaticStats {
        model: ModelInfo {
            architecture: c.arch.clone(),
            vocab_size: c.vocab_size,
            hidden_size: c.hidden,
            layers: c.n_layers,
            context_length: c.context_length,
            has_chat_template: loaded.tokenizer.chat_template.is_some(),
        },
        adapter: loaded.device.adapter.clone().unwrap_or_default(),
        backend: gpu.map_or("cpu".into(), |g| format!("{:?}", g.info.backend)),
        device_type: gpu.map_or("Cpu".into(), |g| format!("{:?}", g.info.device_type)),
        tuning: gpu.map(|g| [g.tuning.lanes, g.tuning.rows_per_thread]),
        // The baseline kernels need no optional WebGPU feature (f16 is packed in u32).
        features_used: gpu.map_or(Vec::new(), |g| {
            let v = g.variants;
            [
                (v.subgroups, "subgroups"),
                (v.tiled_prefill && v.f16, "shader-f16"),
            ]
            .into_iter()
            .filter_map(|(on, f)| on.then_some(f))
            .collect()
        }),
        kernels: gpu.map(|g| g.variants.names()),
        bytes_planned: loaded.device.bytes_planned,
        gpu_bytes_planned: if gpu.is_some() {
            loaded.device.bytes_planned
        } else {
            0
        },
        device: loaded.device.clone(),
        kv_dtype: if kv == KvDtype::F16 { "f16" } else { "f32" },
        context_size: e.opts().max_context,
        load: loaded.report.clone(),
    };
    STATIC_STATS.with(|s| *s.borrow_mut() = Some(snapshot));
    LAST_SPEED.set((0.0, 0.0));
    MODEL.with(|m| *m.borrow_mut() = Some(loaded));
    stats()
}

/// `stop` may be a string or a list of strings.
#[derive(Deserialize)]
#[serde(untagged)]
enum Stop {
    One(String),
    Many(Vec<String>),
}

/// A generation request (OpenAI-shaped field names).
#[derive(Deserialize)]
struct GenRequest {
    /// OpenAI's messages (`webmoe_core::chat_request`).
    messages: Option<serde_json::Value>,
    tools: Option<serde_json::Value>,
    tool_choice: Option<serde_json::Value>,
    prompt: Option<String>,
    max_tokens: Option<usize>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    top_k: Option<u32>,
    min_p: Option<f32>,
    repeat_penalty: Option<f32>,
    presence_penalty: Option<f32>,
    frequency_penalty: Option<f32>,
    seed: Option<f64>,
    stop: Option<Stop>,
    response_format: Option<serde_json::Value>,
    grammar: Option<serde_json::Value>,
    regex: Option<serde_json::Value>,
    /// Log probabilities with this many alternatives per token (normalized by webmoe.js).
    logprobs: Option<usize>,
}

#[derive(Serialize)]
struct Usage {
    prompt_tokens: usize,
    completion_tokens: usize,
    total_tokens: usize,
    /// OpenAI's field: `cached_tokens` are the prompt tokens the KV cache already held.
    prompt_tokens_details: PromptDetails,
}

#[derive(Serialize)]
struct PromptDetails {
    cached_tokens: usize,
}

#[derive(Serialize)]
struct TokenInfo {
    id: u32,
    token: String,
    bytes: Vec<u8>,
    logprob: f32,
}

#[derive(Serialize)]
struct TokenLogprobs {
    #[serde(flatten)]
    token: TokenInfo,
    top: Vec<TokenInfo>,
}

#[derive(Serialize)]
struct FunctionOut {
    name: String,
    arguments: String,
}

/// A call in OpenAI's `message.tool_calls` form.
#[derive(Serialize)]
struct ToolCallOut {
    id: String,
    #[serde(rename = "type")]
    kind: &'static str,
    function: FunctionOut,
}

#[derive(Serialize)]
struct GenResult {
    /// The answer without its tool calls.
    text: String,
    tool_calls: Vec<ToolCallOut>,
    logprobs: Option<Vec<TokenLogprobs>>,
    /// Milliseconds of structured-output masks per generated token.
    constraint_ms_per_token: f64,
    finish_reason: &'static str,
    usage: Usage,
    prompt_ids: Vec<u32>,
    ids: Vec<u32>,
    prefill_tokens_per_s: f64,
    decode_tokens_per_s: f64,
    time_to_first_token_s: f64,
}

/// Restores the model when a generation ends, however it ends.
struct Checkout(Option<Loaded>);

impl Drop for Checkout {
    fn drop(&mut self) {
        if let Some(m) = self.0.take() {
            MODEL.with(|slot| *slot.borrow_mut() = Some(m));
        }
        BUSY.set(false);
    }
}

/// Generates for `request` (`{ messages, tools?, tool_choice? } | { prompt }` plus `max_tokens,
/// temperature, top_p, top_k, min_p, repeat_penalty, presence_penalty, frequency_penalty, seed, stop,
/// response_format, grammar, regex, logprobs`), calling `onText(piece)` as answer text is decided
/// (tool calls are held back and parsed). `yieldFn` (a function returning a promise resolved on the
/// next macrotask, or undefined) lets the worker's event loop run between CPU steps, so `interrupt()`
/// arrives. Resolves to `{ text, tool_calls, finish_reason, usage, prompt_ids, ids,
/// prefill_tokens_per_s, decode_tokens_per_s, time_to_first_token_s, logprobs,
/// constraint_ms_per_token }`; `finish_reason` is `stop`, `length`, `tool_calls` or `abort` (after
/// `interrupt()`).
///
/// # Errors
/// No model loaded, a generation already running, bad arguments, a prompt longer than the context, a
/// lost device.
#[wasm_bindgen]
pub async fn generate(
    request: JsValue,
    on_text: js_sys::Function,
    yield_fn: JsValue,
) -> Result<JsValue, JsValue> {
    let req: GenRequest = serde_wasm_bindgen::from_value(request)
        .map_err(|e| WebError::Invalid(format!("bad request: {e}")))?;
    if BUSY.get() {
        return Err(WebError::Invalid("a generation is already running".into()).into());
    }
    let Some(model) = MODEL.with(|m| m.borrow_mut().take()) else {
        return Err(WebError::Invalid("no model is loaded".into()).into());
    };
    BUSY.set(true);
    INTERRUPT.store(false, Ordering::SeqCst);
    let mut checkout = Checkout(Some(model));
    let m = checkout.0.as_mut().expect("just set");
    let invalid = |e: String| WebError::Invalid(e);
    let mut tools = None;
    let prompt_ids = match (&req.messages, &req.prompt) {
        (Some(msgs), None) => {
            let msgs = messages_from_openai(msgs).map_err(invalid)?;
            tools = Tools::from_request(req.tools.as_ref(), req.tool_choice.as_ref())
                .map_err(|e| invalid(e.to_string()))?;
            let rendered = tools.as_ref().map_or(&[][..], Tools::rendered);
            encode_chat_with_tools(&m.tokenizer, &msgs, rendered, true)
        }
        (None, Some(p)) => m.tokenizer.encode(p, true, true),
        _ => {
            return Err(WebError::Invalid("give either messages or prompt".into()).into());
        }
    }
    .map_err(|e| WebError::Invalid(e.to_string()))?;
    let params = SamplingParams {
        temperature: req.temperature.unwrap_or(0.8),
        top_k: req.top_k.unwrap_or(40),
        top_p: req.top_p.unwrap_or(0.95),
        min_p: req.min_p.unwrap_or(0.05),
        repeat_penalty: req.repeat_penalty.unwrap_or(1.0),
        presence_penalty: req.presence_penalty.unwrap_or(0.0),
        frequency_penalty: req.frequency_penalty.unwrap_or(0.0),
        seed: req
            .seed
            .map(|s| s as u64)
            .unwrap_or_else(|| (js_sys::Math::random() * 4294967296.0) as u64),
        ..Default::default()
    };
    let stop = match req.stop {
        None => Vec::new(),
        Some(Stop::One(s)) => vec![s],
        Some(Stop::Many(v)) => v,
    };
    let room = m.engine.max_context().saturating_sub(prompt_ids.len());
    let r = Request {
        prompt: &prompt_ids,
        params: &params,
        max_tokens: req.max_tokens.unwrap_or(room).min(room),
        stop: &stop,
        constraint: None,
        logprobs: req.logprobs.map(|n| n.min(20)),
    };
    let spec = webmoe_grammar::Spec::from_request(
        req.response_format.as_ref(),
        req.grammar.as_ref(),
        req.regex.as_ref(),
    )
    .map_err(|e| WebError::Invalid(e.to_string()))?;
    let format = tool_format(m.tokenizer.chat_template.as_deref());
    let marker = webmoe_core::tool_prompt::call_marker(&m.tokenizer, format);
    let spec = match tools.as_ref().and_then(|t| t.spec(format, marker)) {
        Some(_) if spec.is_some() => {
            return Err(invalid("tool_choice 'required' or a named function cannot be combined with response_format, grammar or regex".into()).into())
        }
        Some(call) => Some(call),
        None => spec,
    };
    let mut constraint = match &spec {
        Some(spec) => Some(
            grammars(&m.tokenizer)?
                .constraint(spec)
                .map_err(|e| WebError::Invalid(e.to_string()))?,
        ),
        None => None,
    };
    let r = Request {
        constraint: constraint
            .as_mut()
            .map(|c| c as &mut dyn webmoe_core::generate::Constraint),
        ..r
    };
    let mut engine = Yielding {
        engine: &mut m.engine,
        yield_fn: yield_fn.dyn_into::<js_sys::Function>().ok(),
    };
    let reader = tools
        .as_ref()
        .and_then(|t| t.reader(&format!("call_{:x}_", params.seed), format));
    let mut answer = Answer::new(reader);
    let send = |t: &str| {
        if !t.is_empty() {
            call1(&on_text, &JsValue::from_str(t));
        }
    };
    // Content goes to the page as it is decided; calls when they are complete.
    let g = run_generation(&mut engine, &m.tokenizer, r, &now_s, &mut |piece| {
        send(&answer.push(piece));
        !INTERRUPT.load(Ordering::SeqCst)
    })
    .await
    .map_err(WebError::from)?;
    send(&answer.finish());
    let tool_calls: Vec<ToolCallOut> = answer
        .calls
        .into_iter()
        .map(|c| ToolCallOut {
            id: c.id,
            kind: "function",
            function: FunctionOut {
                name: c.name,
                arguments: c.arguments,
            },
        })
        .collect();
    LAST_SPEED.set((g.prefill_tokens_per_s, g.decode_tokens_per_s));
    let info = |id: u32, logprob: f32| {
        let token = m.tokenizer.decode(&[id]).unwrap_or_default();
        TokenInfo {
            id,
            bytes: token.as_bytes().to_vec(),
            token,
            logprob,
        }
    };
    let logprobs = req.logprobs.map(|_| {
        g.logprobs
            .iter()
            .map(|l| TokenLogprobs {
                token: info(l.id, l.logprob),
                top: l.top.iter().map(|&(id, lp)| info(id, lp)).collect(),
            })
            .collect()
    });
    let out = GenResult {
        logprobs,
        constraint_ms_per_token: g.constraint_s * 1e3 / g.ids.len().max(1) as f64,
        finish_reason: match g.finish_reason {
            _ if !tool_calls.is_empty() => "tool_calls",
            Finish::Stop => "stop",
            Finish::Length | Finish::Context => "length",
            Finish::Abort => "abort",
        },
        usage: Usage {
            prompt_tokens: g.prompt_ids.len(),
            completion_tokens: g.ids.len(),
            total_tokens: g.prompt_ids.len() + g.ids.len(),
            prompt_tokens_details: PromptDetails {
                cached_tokens: g.reused_tokens,
            },
        },
        text: answer.content,
        tool_calls,
        prompt_ids: g.prompt_ids,
        ids: g.ids,
        prefill_tokens_per_s: g.prefill_tokens_per_s,
        decode_tokens_per_s: g.decode_tokens_per_s,
        time_to_first_token_s: g.time_to_first_token_s,
    };
    drop(checkout);
    to_js(&out)
}

/// The grammar engine for `tok` (built once per loaded model).
fn grammars(
    tok: &webmoe_core::tokenizer::Tokenizer,
) -> Result<std::rc::Rc<webmoe_grammar::Grammars>, WebError> {
    if let Some(g) = GRAMMARS.with(|g| g.borrow().clone()) {
        return Ok(g);
    }
    let g = std::rc::Rc::new(
        webmoe_grammar::Grammars::new(tok).map_err(|e| WebError::Invalid(e.to_string()))?,
    );
    GRAMMARS.with(|slot| *slot.borrow_mut() = Some(g.clone()));
    Ok(g)
}

/// Asks a running generation to stop after the current token (its `finish_reason` is `abort`).
#[wasm_bindgen]
pub fn interrupt() {
    INTERRUPT.store(true, Ordering::SeqCst);
}

/// Testing: destroys the GPU device, as a driver reset or `GPUDevice.destroy()` would; the next call
/// fails with `device-lost`. Returns whether a GPU engine was loaded.
#[wasm_bindgen(js_name = loseDeviceForTesting)]
pub fn lose_device_for_testing() -> bool {
    MODEL.with(|m| {
        m.borrow()
            .as_ref()
            .and_then(|m| m.engine.gpu())
            .map(|g| g.gpu.device.destroy())
            .is_some()
    })
}

/// Frees the model and its GPU buffers.
#[wasm_bindgen]
pub fn unload() {
    INTERRUPT.store(true, Ordering::SeqCst);
    MODEL.with(|m| m.borrow_mut().take());
    STATIC_STATS.with(|s| s.borrow_mut().take());
    GRAMMARS.with(|g| g.borrow_mut().take());
}

/// Engine statistics: model, adapter, features used, GPU memory planned, heap size, load report and
/// the last generation's prefill/decode tokens per second. `null` before a model is loaded.
///
/// # Errors
/// Only if serialization fails.
#[wasm_bindgen]
pub fn stats() -> Result<JsValue, JsValue> {
    let Some(s) = STATIC_STATS.with(|s| s.borrow().clone()) else {
        return Ok(JsValue::NULL);
    };
    let (prefill, decode) = LAST_SPEED.get();
    let mut v = serde_json::to_value(&s).map_err(|e| JsValue::from_str(&e.to_string()))?;
    v["prefillTokensPerSecond"] = prefill.into();
    v["decodeTokensPerSecond"] = decode.into();
    v["heapBytes"] = heap_bytes().into();
    v["busy"] = BUSY.get().into();
    to_js(&v)
}
