//! Fuzz targets: each takes arbitrary bytes and must return (an error is fine) without panicking,
//! hanging or allocating without bound. `fuzz/` runs them under libFuzzer (`cargo +nightly fuzz run
//! TARGET`); `tests/smoke.rs` runs them on the seed corpora and a few thousand mutations on stable Rust
//! in CI. [`TARGETS`] lists them with their seed files.

use std::collections::HashMap;
use webmoe_core::chat::{encode_chat_with_tools, Message};
use webmoe_core::chat_request::messages_from_openai;
use webmoe_core::gguf::{parse_header, HeaderParse};
use webmoe_core::model::ModelDesc;
use webmoe_core::tokenizer::{SpecialTokens, Tokenizer};
use webmoe_loader::{ByteSource, Checkpoint, LoadError, MemorySource};

/// A fuzz target: name, entry point, seed files (relative to the repository root).
pub struct Target {
    /// Name (the cargo-fuzz binary).
    pub name: &'static str,
    /// Entry point.
    pub run: fn(&[u8]),
    /// Seed inputs.
    pub seeds: &'static [&'static str],
}

/// Every target.
pub const TARGETS: &[Target] = &[
    Target {
        name: "gguf_header",
        run: gguf_header,
        seeds: &[
            "tests/fixtures/spm_tiny.gguf",
            "tests/fixtures/moe/mixtral.q8_0.gguf",
            "tests/fixtures/moe/llama4.q8_0.gguf",
            "tests/fixtures/moe/qwen2moe.q8_0.gguf",
        ],
    },
    Target {
        name: "gguf_tokenizer",
        run: gguf_tokenizer,
        seeds: &["tests/fixtures/spm_tiny.gguf"],
    },
    Target {
        name: "safetensors_header",
        run: safetensors_header,
        seeds: &["tests/fixtures/moe/hf/qwen2/model.safetensors"],
    },
    Target {
        name: "safetensors_index",
        run: safetensors_index,
        seeds: &[],
    },
    Target {
        name: "hf_config",
        run: hf_config,
        seeds: &[
            "tests/fixtures/moe/hf/qwen2/config.json",
            "tests/fixtures/moe/hf/mixtral/config.json",
            "tests/fixtures/moe/hf/llama4/config.json",
            "tests/fixtures/moe/hf/olmoe/config.json",
        ],
    },
    Target {
        name: "tokenizer_json",
        run: tokenizer_json,
        seeds: &["tests/fixtures/tiny_tokenizer.json"],
    },
    Target {
        name: "chat_template",
        run: chat_template,
        seeds: &[],
    },
];

/// The repository root (seed files and fixtures are found from it).
pub fn root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A fixture's bytes, read once per process (targets run millions of times).
fn fixture(path: &str) -> Vec<u8> {
    static CACHE: std::sync::Mutex<Option<HashMap<String, Vec<u8>>>> = std::sync::Mutex::new(None);
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    cache
        .get_or_insert_with(HashMap::new)
        .entry(path.to_string())
        .or_insert_with(|| std::fs::read(root().join(path)).unwrap_or_default())
        .clone()
}

/// The GGUF header parser, then the model description of what it accepts.
pub fn gguf_header(data: &[u8]) {
    let src = MemorySource(data.to_vec());
    if let Ok(h) = webmoe_loader::read_gguf_header(&src) {
        let _ = ModelDesc::from_gguf(&h, None);
    }
}

/// Tokenizer construction from GGUF metadata (and an encode/decode round of what it builds).
pub fn gguf_tokenizer(data: &[u8]) {
    if let Ok(HeaderParse::Done(h)) = parse_header(data, data.len() as u64) {
        if let Ok(t) = Tokenizer::from_gguf(&h) {
            if let Ok(ids) = t.encode("Hello <|im_start|> wörld", true, true) {
                let _ = t.decode(&ids);
            }
        }
    }
}

/// A folder of `files` opened as a Hugging Face checkpoint.
fn open_folder(files: HashMap<&'static str, Vec<u8>>) -> Result<Checkpoint, LoadError> {
    let open = move |name: &str| -> Result<Option<Box<dyn ByteSource + Sync>>, LoadError> {
        Ok(files
            .get(name)
            .map(|b| Box::new(MemorySource(b.clone())) as Box<dyn ByteSource + Sync>))
    };
    Checkpoint::open("fuzz", &open, None)
}

const QWEN2: &str = "tests/fixtures/moe/hf/qwen2";

/// A `model.safetensors` header (the fixture's config beside it).
pub fn safetensors_header(data: &[u8]) {
    let files = HashMap::from([
        ("config.json", fixture(&format!("{QWEN2}/config.json"))),
        ("model.safetensors", data.to_vec()),
    ]);
    let _ = open_folder(files);
}

/// A `model.safetensors.index.json` (naming shards of the fixture's weights).
pub fn safetensors_index(data: &[u8]) {
    let shard = fixture(&format!("{QWEN2}/model.safetensors"));
    let files = HashMap::from([
        ("config.json", fixture(&format!("{QWEN2}/config.json"))),
        ("model.safetensors.index.json", data.to_vec()),
        ("model-00001-of-00002.safetensors", shard.clone()),
        ("model-00002-of-00002.safetensors", shard),
    ]);
    let _ = open_folder(files);
}

/// A `config.json` against the fixture's weights: the model description.
pub fn hf_config(data: &[u8]) {
    let files = HashMap::from([
        ("config.json", data.to_vec()),
        (
            "model.safetensors",
            fixture(&format!("{QWEN2}/model.safetensors")),
        ),
    ]);
    let _ = open_folder(files);
}

/// A `tokenizer.json`, and an encode/decode round of what it builds.
pub fn tokenizer_json(data: &[u8]) {
    let Ok(json) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(t) = Tokenizer::from_json(json, special(), None) {
        if let Ok(ids) = t.encode("Hello <|start|> world", true, false) {
            let _ = t.decode(&ids);
        }
    }
}

fn special() -> SpecialTokens {
    SpecialTokens {
        bos: None,
        add_bos: false,
        eog: vec![0],
        bos_text: String::new(),
        eos_text: "<|end|>".into(),
    }
}

/// A chat template and messages, from bytes `template \0 role \1 content \0 role \1 content ...`,
/// rendered and tokenized with the tiny tokenizer fixture.
pub fn chat_template(data: &[u8]) {
    thread_local! {
        static TOK: Option<Tokenizer> = {
            let json = String::from_utf8(fixture("tests/fixtures/tiny_tokenizer.json")).ok()?;
            Tokenizer::from_json(&json, special(), None).ok()
        };
    }
    let text = String::from_utf8_lossy(data);
    let (template, rest) = text.split_once('\0').unwrap_or((&text, ""));
    let (messages, tools) = match serde_json::from_str::<serde_json::Value>(rest) {
        // An OpenAI request body: its messages (with tool calls) and tools.
        Ok(v) if v.is_object() => match messages_from_openai(&v["messages"]) {
            Ok(m) => (m, v["tools"].as_array().cloned().unwrap_or_default()),
            Err(_) => return,
        },
        _ => (split_messages(rest), Vec::new()),
    };
    TOK.with(|t| {
        if let Some(t) = t {
            let mut t = t.clone();
            t.chat_template = Some(template.to_string());
            let _ = encode_chat_with_tools(&t, &messages, &tools, true);
        }
    });
}

/// Messages written as `role \u{1} content` parts split by NUL (a part without `\u{1}` is a user's).
fn split_messages(text: &str) -> Vec<Message> {
    if text.is_empty() {
        return Vec::new();
    }
    text.split('\0')
        .map(|p| {
            let (role, content) = p.split_once('\u{1}').unwrap_or(("user", p));
            Message::new(role, content)
        })
        .collect()
}

/// Built-in seeds of the targets without seed files.
pub fn builtin_seeds(name: &str) -> Vec<Vec<u8>> {
    match name {
        "safetensors_index" => vec![br#"{"metadata": {}, "weight_map": {"model.embed_tokens.weight": "model-00001-of-00002.safetensors", "model.norm.weight": "model-00002-of-00002.safetensors"}}"#.to_vec()],
        "chat_template" => vec![
            "{% for m in messages %}<|start|>{{ m.role }}\n{{ m.content | trim }}<|end|>{% endfor %}\0system\u{1}be brief\0user\u{1}hi <|end|><|start|>system".as_bytes().to_vec(),
            "{{ messages[0].content[:3] }}{{ messages | length }}{% if add_generation_prompt %}go{% endif %}\0user\u{1}hello".as_bytes().to_vec(),
            concat!(
                "{% if tools %}<|start|>system\n{% for t in tools %}{{ t | tojson }}\n{% endfor %}<|end|>{% endif %}",
                "{% for m in messages %}<|start|>{{ m.role }}\n{{ m.content }}",
                "{% for c in m.tool_calls %}<call>{{ c.function.name }} {{ c.function.arguments | tojson }}</call>{% endfor %}",
                "<|end|>{% endfor %}\0",
                r#"{"messages": [{"role": "user", "content": "weather <|end|>?"}, "#,
                r#"{"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "get", "arguments": "{\"city\": \"<|start|>Paris\"}"}}]}, "#,
                r#"{"role": "tool", "tool_call_id": "c1", "content": "sunny"}], "#,
                r#""tools": [{"type": "function", "function": {"name": "get", "description": "<|end|>", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]}"#
            ).as_bytes().to_vec(),
        ],
        _ => Vec::new(),
    }
}

/// Every seed of `t`: its files and its built-in inputs.
pub fn seeds(t: &Target) -> Vec<Vec<u8>> {
    let mut s: Vec<Vec<u8>> = t
        .seeds
        .iter()
        .map(|p| fixture(p))
        .filter(|b| !b.is_empty())
        .collect();
    s.extend(builtin_seeds(t.name));
    if t.name == "chat_template" {
        s.extend(real_template_seeds());
    }
    s
}

/// The real tool-aware templates (models/templates/, from scripts/fetch-chat-templates.sh), each with
/// an OpenAI request that has tools, a call and its answer. None when they are not fetched.
fn real_template_seeds() -> Vec<Vec<u8>> {
    let Ok(dir) = std::fs::read_dir(root().join("models/templates")) else {
        return Vec::new();
    };
    let request = serde_json::json!({
        "messages": [
            { "role": "system", "content": "Be brief." },
            { "role": "user", "content": "Weather in Paris? <|end|>" },
            { "role": "assistant", "content": null, "tool_calls": [{ "id": "a1b2c3d4e", "type": "function",
                "function": { "name": "get_weather", "arguments": "{\"city\": \"Paris\"}" } }] },
            { "role": "tool", "tool_call_id": "a1b2c3d4e", "content": "{\"celsius\": 18}" }
        ],
        "tools": [{ "type": "function", "function": { "name": "get_weather", "description": "Weather now.",
            "parameters": { "type": "object", "properties": { "city": { "type": "string" } }, "required": ["city"] } } }]
    });
    dir.flatten()
        .filter_map(|e| std::fs::read(e.path()).ok())
        .map(|mut t| {
            t.push(0);
            t.extend(request.to_string().bytes());
            t
        })
        .collect()
}
