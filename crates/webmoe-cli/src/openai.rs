//! `webmoe serve --openai MODEL`: OpenAI's HTTP API for the loaded model, on the same engine (GPU or
//! CPU) and with the same request fields as the JS API: `POST /v1/chat/completions`,
//! `POST /v1/completions` (JSON, or server-sent events with `stream: true`) and `GET /v1/models`.
//! One engine thread runs the requests one after another, in arrival order, so the KV cache carries
//! a conversation from one request to the next; a client that disconnects stops its generation.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use std::sync::mpsc;
use std::sync::Arc;
use tokio::sync::mpsc as tmpsc;
use webmoe_cli::load::Loaded;
use webmoe_core::chat::encode_chat_with_tools;
use webmoe_core::chat_request::messages_from_openai;
use webmoe_core::generate::{generate, Backend, Constraint, Finish, Generation, Request};
use webmoe_core::sampling::SamplingParams;
use webmoe_core::tool_prompt::tool_format;
use webmoe_grammar::{Answer, ToolCall, Tools};

/// Chat or text completion.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Chat,
    Text,
}

/// Token texts by id.
type Texts = std::collections::HashMap<u32, String>;

/// What the engine thread sends back for a request.
enum Event {
    /// Text of choice `.0`.
    Text(usize, String),
    /// All choices finished (with the text of every token their log probabilities name).
    Done(Vec<Choice>, Texts),
    /// The request failed before or while generating.
    Error(StatusCode, String),
}

/// One finished choice: the generation, its answer text without tool calls, and its calls.
struct Choice {
    g: Generation,
    content: String,
    calls: Vec<ToolCall>,
}

impl Choice {
    fn finish_reason(&self) -> &'static str {
        if self.calls.is_empty() {
            finish(self.g.finish_reason)
        } else {
            "tool_calls"
        }
    }

    fn tool_calls(&self, streamed: bool) -> Value {
        Value::Array(
            self.calls
                .iter()
                .enumerate()
                .map(|(k, c)| {
                    let mut v = json!({ "id": c.id, "type": "function",
                        "function": { "name": c.name, "arguments": c.arguments } });
                    if streamed {
                        v["index"] = k.into();
                    }
                    v
                })
                .collect(),
        )
    }
}

struct Job {
    kind: Kind,
    body: Value,
    events: tmpsc::UnboundedSender<Event>,
}

/// The API's shared state: the engine thread's queue and the model's name.
pub struct Api {
    jobs: std::sync::Mutex<mpsc::Sender<Job>>,
    model: String,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Api({})", self.model)
    }
}

impl Api {
    /// Starts the engine thread, which loads the model with `load` (on that thread: engines stay on
    /// the thread that made them) and then serves requests; `model` names it in responses.
    ///
    /// # Errors
    /// The load's error.
    pub fn start(
        load: impl FnOnce() -> anyhow::Result<Loaded> + Send + 'static,
        model: String,
    ) -> anyhow::Result<Arc<Api>> {
        let (tx, rx) = mpsc::channel::<Job>();
        let (ready, loaded) = mpsc::channel::<anyhow::Result<()>>();
        std::thread::spawn(move || match load() {
            Ok(m) => {
                let _ = ready.send(Ok(()));
                engine_thread(m, rx);
            }
            Err(e) => {
                let _ = ready.send(Err(e));
            }
        });
        loaded
            .recv()
            .map_err(|_| anyhow::anyhow!("the engine thread stopped while loading"))??;
        Ok(Arc::new(Api {
            jobs: std::sync::Mutex::new(tx),
            model,
        }))
    }

    fn submit(&self, kind: Kind, body: Value) -> tmpsc::UnboundedReceiver<Event> {
        let (events, rx) = tmpsc::unbounded_channel();
        let job = Job { kind, body, events };
        let sent = self
            .jobs
            .lock()
            .map(|j| j.send(job).is_ok())
            .unwrap_or(false);
        if !sent {
            let (events, rx) = tmpsc::unbounded_channel();
            let _ = events.send(Event::Error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the engine stopped".into(),
            ));
            return rx;
        }
        rx
    }
}

/// The routes, for `serve` to mount.
pub fn routes(api: Arc<Api>) -> axum::Router {
    axum::Router::new()
        .route("/v1/models", axum::routing::get(models))
        .route("/v1/chat/completions", axum::routing::post(chat))
        .route("/v1/completions", axum::routing::post(text))
        .with_state(api)
}

fn error(status: StatusCode, message: &str) -> Response {
    let kind = if status.is_client_error() {
        "invalid_request_error"
    } else {
        "server_error"
    };
    (
        status,
        Json(json!({ "error": { "message": message, "type": kind, "param": null, "code": null } })),
    )
        .into_response()
}

async fn models(State(api): State<Arc<Api>>) -> Response {
    Json(json!({ "object": "list", "data": [{ "id": api.model, "object": "model", "created": 0, "owned_by": "webmoe" }] }))
        .into_response()
}

async fn chat(State(api): State<Arc<Api>>, body: axum::body::Bytes) -> Response {
    respond(api, Kind::Chat, body).await
}

async fn text(State(api): State<Arc<Api>>, body: axum::body::Bytes) -> Response {
    respond(api, Kind::Text, body).await
}

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

async fn respond(api: Arc<Api>, kind: Kind, body: axum::body::Bytes) -> Response {
    let body: Value = match serde_json::from_slice(&body) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) => return error(StatusCode::BAD_REQUEST, "the body must be a JSON object"),
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("the body is not JSON: {e}"),
            )
        }
    };
    let stream = body["stream"].as_bool().unwrap_or(false);
    let include_usage = body["stream_options"]["include_usage"]
        .as_bool()
        .unwrap_or(false);
    let logprobs = logprobs_of(kind, &body).unwrap_or(None);
    let id = format!(
        "{}-{:x}",
        if kind == Kind::Chat {
            "chatcmpl"
        } else {
            "cmpl"
        },
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    );
    let head = Head {
        id,
        created: now_s(),
        model: api.model.clone(),
        kind,
        logprobs: logprobs.is_some(),
    };
    let mut rx = api.submit(kind, body);
    if !stream {
        while let Some(ev) = rx.recv().await {
            match ev {
                Event::Text(..) => {}
                Event::Error(s, m) => return error(s, &m),
                Event::Done(gens, texts) => {
                    return Json(head.completion(&gens, &texts)).into_response();
                }
            }
        }
        return error(StatusCode::INTERNAL_SERVER_ERROR, "the engine stopped");
    }
    // The first event decides between an error status and a stream.
    let first = rx.recv().await;
    if let Some(Event::Error(s, m)) = first {
        return error(s, &m);
    }
    let stream = futures_util::stream::unfold(
        (rx, first, head, false, std::collections::HashSet::new()),
        move |(mut rx, pending, head, done, mut started)| async move {
            if done {
                return None;
            }
            let ev = match pending {
                Some(ev) => Some(ev),
                None => rx.recv().await,
            };
            let frame = |v: Value| format!("data: {v}\n\n");
            let (out, done) = match ev {
                Some(Event::Text(i, t)) => {
                    let first = started.insert(i);
                    (frame(head.chunk(i, &t, first)), false)
                }
                Some(Event::Done(gens, texts)) => {
                    let mut s = String::new();
                    for (i, c) in gens.iter().enumerate() {
                        if !c.calls.is_empty() {
                            let first = started.insert(i);
                            s += &frame(head.calls_chunk(i, c, first));
                        }
                        s += &frame(head.last_chunk(i, c, !started.contains(&i), &texts));
                    }
                    if include_usage {
                        s += &frame(json!({
                            "id": head.id, "object": head.chunk_object(), "created": head.created,
                            "model": head.model, "choices": [], "usage": usage(&gens)
                        }));
                    }
                    s += "data: [DONE]\n\n";
                    (s, true)
                }
                Some(Event::Error(_, m)) => (
                    frame(json!({ "error": { "message": m, "type": "server_error" } })),
                    true,
                ),
                None => return None,
            };
            Some((
                Ok::<_, std::convert::Infallible>(axum::body::Bytes::from(out)),
                (rx, None, head, done, started),
            ))
        },
    );
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| error(StatusCode::INTERNAL_SERVER_ERROR, "response"))
}

/// The fields every response object repeats.
struct Head {
    id: String,
    created: u64,
    model: String,
    kind: Kind,
    logprobs: bool,
}

fn finish(f: Finish) -> &'static str {
    match f {
        Finish::Stop => "stop",
        Finish::Length | Finish::Context => "length",
        Finish::Abort => "abort",
    }
}

fn usage(choices: &[Choice]) -> Value {
    let prompt = choices.first().map_or(0, |c| c.g.prompt_ids.len());
    let completion: usize = choices.iter().map(|c| c.g.ids.len()).sum();
    json!({
        "prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
        "prompt_tokens_details": { "cached_tokens": choices.first().map_or(0, |c| c.g.reused_tokens) }
    })
}

impl Head {
    fn chunk_object(&self) -> &'static str {
        match self.kind {
            Kind::Chat => "chat.completion.chunk",
            Kind::Text => "text_completion",
        }
    }

    fn logprobs(&self, g: &Generation, texts: &Texts) -> Value {
        let tok = |id: u32| texts.get(&id).cloned().unwrap_or_default();
        if !self.logprobs {
            return Value::Null;
        }
        match self.kind {
            Kind::Chat => json!({ "content": g.logprobs.iter().map(|l| {
                let t = tok(l.id);
                json!({ "token": t, "logprob": l.logprob, "bytes": t.as_bytes(),
                    "top_logprobs": l.top.iter().map(|&(id, lp)| { let t = tok(id); json!({ "token": t, "logprob": lp, "bytes": t.as_bytes() }) }).collect::<Vec<_>>() })
            }).collect::<Vec<_>>(), "refusal": null }),
            Kind::Text => {
                let tokens: Vec<String> = g.logprobs.iter().map(|l| tok(l.id)).collect();
                let mut offset = 0;
                let offsets: Vec<usize> = tokens
                    .iter()
                    .map(|t| {
                        let o = offset;
                        offset += t.len();
                        o
                    })
                    .collect();
                json!({
                    "tokens": tokens,
                    "token_logprobs": g.logprobs.iter().map(|l| l.logprob).collect::<Vec<_>>(),
                    "top_logprobs": g.logprobs.iter().map(|l| l.top.iter().map(|&(id, lp)| (tok(id), json!(lp))).collect::<serde_json::Map<_, _>>()).collect::<Vec<_>>(),
                    "text_offset": offsets,
                })
            }
        }
    }

    fn completion(&self, gens: &[Choice], texts: &Texts) -> Value {
        let choices: Vec<Value> = gens
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let lp = self.logprobs(&c.g, texts);
                let reason = c.finish_reason();
                match self.kind {
                    Kind::Chat => {
                        let mut message = json!({ "role": "assistant", "content": c.content, "refusal": null });
                        if !c.calls.is_empty() {
                            if c.content.is_empty() {
                                message["content"] = Value::Null;
                            }
                            message["tool_calls"] = c.tool_calls(false);
                        }
                        json!({ "index": i, "message": message, "finish_reason": reason, "logprobs": lp })
                    }
                    Kind::Text => json!({ "index": i, "text": c.content, "finish_reason": reason, "logprobs": lp }),
                }
            })
            .collect();
        json!({
            "id": self.id,
            "object": if self.kind == Kind::Chat { "chat.completion" } else { "text_completion" },
            "created": self.created, "model": self.model, "choices": choices, "usage": usage(gens),
            "system_fingerprint": null,
        })
    }

    fn chunk(&self, i: usize, text: &str, first: bool) -> Value {
        let choice = match self.kind {
            Kind::Chat if first => {
                json!({ "index": i, "delta": { "role": "assistant", "content": text }, "finish_reason": null, "logprobs": null })
            }
            Kind::Chat => {
                json!({ "index": i, "delta": { "content": text }, "finish_reason": null, "logprobs": null })
            }
            Kind::Text => {
                json!({ "index": i, "text": text, "finish_reason": null, "logprobs": null })
            }
        };
        json!({ "id": self.id, "object": self.chunk_object(), "created": self.created, "model": self.model, "choices": [choice] })
    }

    /// A chunk with all the calls of choice `i` (sent when they are complete).
    fn calls_chunk(&self, i: usize, c: &Choice, first: bool) -> Value {
        let mut delta = json!({ "tool_calls": c.tool_calls(true) });
        if first {
            delta["role"] = "assistant".into();
        }
        json!({ "id": self.id, "object": self.chunk_object(), "created": self.created, "model": self.model,
            "choices": [{ "index": i, "delta": delta, "finish_reason": null, "logprobs": null }] })
    }

    fn last_chunk(&self, i: usize, c: &Choice, never_started: bool, texts: &Texts) -> Value {
        let g = &c.g;
        let lp = self.logprobs(g, texts);
        let reason = c.finish_reason();
        let choice = match self.kind {
            Kind::Chat => {
                let delta = if never_started {
                    json!({ "role": "assistant", "content": "" })
                } else {
                    json!({})
                };
                json!({ "index": i, "delta": delta, "finish_reason": reason, "logprobs": lp })
            }
            Kind::Text => {
                json!({ "index": i, "text": "", "finish_reason": reason, "logprobs": lp })
            }
        };
        json!({ "id": self.id, "object": self.chunk_object(), "created": self.created, "model": self.model, "choices": [choice] })
    }
}

/// `logprobs` of a request: the number of alternatives per token, or `None` for none.
fn logprobs_of(kind: Kind, body: &Value) -> Result<Option<usize>, String> {
    let n = match kind {
        Kind::Chat => match &body["logprobs"] {
            Value::Bool(true) => Some(body["top_logprobs"].as_u64().unwrap_or(0)),
            Value::Null | Value::Bool(false) => None,
            _ => return Err("logprobs must be a boolean".into()),
        },
        Kind::Text => match &body["logprobs"] {
            Value::Null => None,
            Value::Number(n) => Some(
                n.as_u64()
                    .ok_or("logprobs must be an integer from 0 to 20")?,
            ),
            _ => return Err("logprobs must be an integer from 0 to 20".into()),
        },
    };
    match n {
        Some(n) if n > 20 => Err("top_logprobs must be at most 20".into()),
        n => Ok(n.map(|n| n as usize)),
    }
}

fn f32_field(body: &Value, key: &str, default: f32) -> Result<f32, String> {
    match &body[key] {
        Value::Null => Ok(default),
        v => v
            .as_f64()
            .map(|v| v as f32)
            .ok_or(format!("{key} must be a number")),
    }
}

/// Prompt ids, sampler settings, stop strings, constraint spec, choices and token budget of a request.
struct Parsed {
    tools: Option<Tools>,
    prompt: Vec<u32>,
    params: SamplingParams,
    stop: Vec<String>,
    spec: Option<webmoe_grammar::Spec>,
    n: usize,
    max_tokens: Option<usize>,
    logprobs: Option<usize>,
}

fn parse(m: &Loaded, kind: Kind, b: &Value) -> Result<Parsed, String> {
    let mut tools = None;
    let prompt = match kind {
        Kind::Chat => {
            let msgs = messages_from_openai(&b["messages"])?;
            tools = Tools::from_request(Some(&b["tools"]), Some(&b["tool_choice"]))
                .map_err(|e| e.to_string())?;
            let rendered = tools.as_ref().map_or(&[][..], Tools::rendered);
            encode_chat_with_tools(&m.tokenizer, &msgs, rendered, true)
                .map_err(|e| e.to_string())?
        }
        Kind::Text => {
            let Some(p) = b["prompt"].as_str() else {
                return Err("prompt must be a string".into());
            };
            m.tokenizer
                .encode(p, true, true)
                .map_err(|e| e.to_string())?
        }
    };
    let seed = match &b["seed"] {
        Value::Null => rand_seed(),
        v => v.as_u64().ok_or("seed must be a non-negative integer")?,
    };
    let params = SamplingParams {
        temperature: f32_field(b, "temperature", 0.8)?,
        top_p: f32_field(b, "top_p", 0.95)?,
        min_p: f32_field(b, "min_p", 0.05)?,
        repeat_penalty: f32_field(b, "repeat_penalty", 1.0)?,
        presence_penalty: f32_field(b, "presence_penalty", 0.0)?,
        frequency_penalty: f32_field(b, "frequency_penalty", 0.0)?,
        top_k: match &b["top_k"] {
            Value::Null => 40,
            v => v.as_u64().ok_or("top_k must be a non-negative integer")? as u32,
        },
        seed,
        ..Default::default()
    };
    params
        .validate()
        .map_err(|e| format!("invalid sampling parameters: {e}"))?;
    let stop = match &b["stop"] {
        Value::Null => Vec::new(),
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .map(|s| {
                s.as_str()
                    .map(String::from)
                    .ok_or("stop must be a string or a list of strings")
            })
            .collect::<Result<_, _>>()?,
        _ => return Err("stop must be a string or a list of strings".into()),
    };
    let n = match &b["n"] {
        Value::Null => 1,
        v => match v.as_u64() {
            Some(n @ 1..=16) => n as usize,
            _ => return Err("n must be an integer from 1 to 16".into()),
        },
    };
    let max_tokens = match (&b["max_tokens"], &b["max_completion_tokens"]) {
        (Value::Null, Value::Null) => None,
        (Value::Null, v) | (v, _) => Some(
            v.as_u64()
                .ok_or("max_tokens must be a non-negative integer")? as usize,
        ),
    };
    let mut spec = webmoe_grammar::Spec::from_request(
        Some(&b["response_format"]),
        Some(&b["grammar"]),
        Some(&b["regex"]),
    )
    .map_err(|e| e.to_string())?;
    let format = tool_format(m.tokenizer.chat_template.as_deref());
    let marker = webmoe_core::tool_prompt::call_marker(&m.tokenizer, format);
    if let Some(call) = tools.as_ref().and_then(|t| t.spec(format, marker)) {
        if spec.is_some() {
            return Err("tool_choice 'required' or a named function cannot be combined with response_format, grammar or regex".into());
        }
        spec = Some(call);
    }
    Ok(Parsed {
        tools,
        prompt,
        params,
        stop,
        spec,
        n,
        max_tokens,
        logprobs: logprobs_of(kind, b)?,
    })
}

fn rand_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn engine_thread(mut m: Loaded, jobs: mpsc::Receiver<Job>) {
    let mut grammars: Option<webmoe_grammar::Grammars> = None;
    while let Ok(job) = jobs.recv() {
        let ev = match run_job(&mut m, &mut grammars, &job) {
            Ok(done) => done,
            Err((s, msg)) => Event::Error(s, msg),
        };
        let _ = job.events.send(ev);
    }
}

fn run_job(
    m: &mut Loaded,
    grammars: &mut Option<webmoe_grammar::Grammars>,
    job: &Job,
) -> Result<Event, (StatusCode, String)> {
    let bad = |e: String| (StatusCode::BAD_REQUEST, e);
    let p = parse(m, job.kind, &job.body).map_err(bad)?;
    let room = m.engine.max_context().saturating_sub(p.prompt.len());
    let mut gens = Vec::new();
    let mut texts = Texts::new();
    for i in 0..p.n {
        let call_format = tool_format(m.tokenizer.chat_template.as_deref());
        let mut constraint = match &p.spec {
            Some(spec) => {
                if grammars.is_none() {
                    *grammars = Some(
                        webmoe_grammar::Grammars::new(&m.tokenizer)
                            .map_err(|e| bad(e.to_string()))?,
                    );
                }
                let g = grammars.as_ref().expect("just built");
                Some(g.constraint(spec).map_err(|e| bad(e.to_string()))?)
            }
            None => None,
        };
        let params = SamplingParams {
            seed: p.params.seed.wrapping_add(i as u64),
            ..p.params.clone()
        };
        let req = Request {
            constraint: constraint.as_mut().map(|c| c as &mut dyn Constraint),
            logprobs: p.logprobs,
            ..Request::new(
                &p.prompt,
                &params,
                p.max_tokens.unwrap_or(room).min(room),
                &p.stop,
            )
        };
        let start = std::time::Instant::now();
        let now = move || start.elapsed().as_secs_f64();
        let events = &job.events;
        let reader = p
            .tools
            .as_ref()
            .and_then(|t| t.reader(&format!("call_{:x}_{i}_", p.params.seed), call_format));
        let mut answer = Answer::new(reader);
        // Content goes out as it is decided; calls when they are complete. `false`: the client went
        // away.
        let send = |t: String| t.is_empty() || events.send(Event::Text(i, t)).is_ok();
        let g = pollster::block_on(generate(&mut m.engine, &m.tokenizer, req, &now, &mut |t| {
            send(answer.push(t))
        }))
        .map_err(|e| {
            let status = match e {
                webmoe_core::generate::GenerateError::Backend(_)
                | webmoe_core::generate::GenerateError::Numerical(_) => {
                    StatusCode::INTERNAL_SERVER_ERROR
                }
                _ => StatusCode::BAD_REQUEST,
            };
            (status, e.to_string())
        })?;
        for l in &g.logprobs {
            for id in std::iter::once(l.id).chain(l.top.iter().map(|x| x.0)) {
                texts
                    .entry(id)
                    .or_insert_with(|| m.tokenizer.decode(&[id]).unwrap_or_default());
            }
        }
        send(answer.finish());
        let aborted = g.finish_reason == Finish::Abort;
        gens.push(Choice {
            g,
            content: answer.content,
            calls: answer.calls,
        });
        if aborted {
            break;
        }
    }
    Ok(Event::Done(gens, texts))
}
