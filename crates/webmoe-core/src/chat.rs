//! Chat templates (`tokenizer.chat_template`, Jinja) rendered with minijinja, and safe tokenization of
//! the result: text from the template may contain control tokens; text from messages may not.

use crate::error::TokenizerError;
use crate::tokenizer::Tokenizer;
use minijinja::{context, Environment, Error as JinjaError, ErrorKind};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One chat message (the fields chat templates read, as Hugging Face passes them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Message {
    /// `system`, `user`, `assistant` or `tool`.
    pub role: String,
    /// Message text.
    pub content: String,
    /// The speaker's name, or the function a `tool` message answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The calls an assistant message made: `{ id, type: "function", function: { name, arguments } }`
    /// with `arguments` a JSON object (templates read its fields; OpenAI's JSON-text form is parsed by
    /// the API layer).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<Value>,
    /// The call a `tool` message answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl Message {
    /// A message with the given role and content.
    pub fn new(role: &str, content: &str) -> Self {
        Message {
            role: role.into(),
            content: content.into(),
            ..Default::default()
        }
    }
}

/// ChatML, used when the model has no template of its own.
pub const CHATML_TEMPLATE: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// Most template instructions one rendering may run (minijinja fuel): real templates use a few
/// thousand per message; a loop of 10^10 iterations stops here with an error instead of hanging.
pub const TEMPLATE_FUEL: u64 = 5_000_000;

/// Most bytes a rendering may produce: what one encoding takes
/// ([`crate::tokenizer::MAX_TEXT_BYTES`]; a 128 k-token context is about 512 KiB). Output past this
/// ends the rendering with an error, before it is kept.
pub const TEMPLATE_OUTPUT_LIMIT: usize = crate::tokenizer::MAX_TEXT_BYTES;

/// Longest template source accepted.
pub const TEMPLATE_SOURCE_LIMIT: usize = 1 << 20;

fn env() -> Environment<'static> {
    let mut env = Environment::new();
    // As transformers' `apply_chat_template` renders.
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.set_fuel(Some(TEMPLATE_FUEL));
    env.add_function(
        "raise_exception",
        |msg: String| -> Result<String, JinjaError> {
            Err(JinjaError::new(ErrorKind::InvalidOperation, msg))
        },
    );
    env.add_function("strftime_now", |_fmt: String| -> String { String::new() });
    env.add_filter("tojson", crate::pyjson::tojson_filter);
    env
}

/// An `io::Write` that refuses to grow past [`TEMPLATE_OUTPUT_LIMIT`].
struct Bounded(Vec<u8>);

impl std::io::Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.0.len() + buf.len() > TEMPLATE_OUTPUT_LIMIT {
            return Err(std::io::Error::other("output limit"));
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Renders `template` for `messages`, within [`TEMPLATE_FUEL`] instructions and
/// [`TEMPLATE_OUTPUT_LIMIT`] bytes of output.
///
/// # Errors
/// [`TokenizerError::Template`] when the template is too long, does not parse, raises, runs out of
/// fuel or produces too much text.
pub fn render(
    template: &str,
    messages: &[Message],
    tools: &[Value],
    add_generation_prompt: bool,
    bos: &str,
    eos: &str,
) -> Result<String, TokenizerError> {
    if template.len() > TEMPLATE_SOURCE_LIMIT {
        return Err(TokenizerError::Template(format!(
            "the template is {} bytes, more than the {TEMPLATE_SOURCE_LIMIT} accepted",
            template.len()
        )));
    }
    let env = env();
    let tmpl = env
        .template_from_str(template)
        .map_err(|e| TokenizerError::Template(e.to_string()))?;
    let mut out = Bounded(Vec::new());
    // Templates test `tools is defined` / `if tools`: no tools means no `tools` at all.
    let tools = (!tools.is_empty()).then_some(tools);
    let ctx = context! { messages => messages, tools => tools, add_generation_prompt => add_generation_prompt, bos_token => bos, eos_token => eos };
    if let Err(e) = tmpl.render_captured_to(ctx, &mut out) {
        let why = if e.kind() == ErrorKind::OutOfFuel {
            format!(
                "the template ran more than {TEMPLATE_FUEL} instructions (a loop that does not end?)"
            )
        } else if out.0.len() + 4096 > TEMPLATE_OUTPUT_LIMIT || e.kind() == ErrorKind::WriteFailure
        {
            format!("the template produced more than {TEMPLATE_OUTPUT_LIMIT} bytes")
        } else {
            e.to_string()
        };
        return Err(TokenizerError::Template(why));
    }
    String::from_utf8(out.0).map_err(|e| TokenizerError::Template(e.to_string()))
}

/// Fence markers around message contents: private-use characters with a number that occurs in no
/// caller string, so that no message can forge or close a fence.
struct Fences {
    tag: String,
}

const FENCE: char = '\u{F0001}';
const SEP: char = '\u{F0002}';
const OPEN: char = '\u{F0003}';
const CLOSE: char = '\u{F0004}';

impl Fences {
    fn new(strings: &[&str]) -> Self {
        let tag = (0u64..)
            .map(|k| format!("{FENCE}{k}{SEP}"))
            .find(|t| strings.iter().all(|s| !s.contains(t.as_str())))
            .expect("some number occurs in no string");
        Fences { tag }
    }

    fn wrap(&self, i: usize, content: &str) -> String {
        format!("{0}{i}{OPEN}{content}{0}{i}{CLOSE}", self.tag)
    }

    /// The rendering cut into (text, is caller content) pieces, or `None` when the fences are not
    /// well nested (the template cut through one).
    fn split(&self, rendered: &str) -> Option<Vec<(String, bool)>> {
        let mut out = Vec::new();
        let mut open: Vec<usize> = Vec::new();
        let mut rest = rendered;
        while let Some(p) = rest.find(self.tag.as_str()) {
            let after = &rest[p + self.tag.len()..];
            let digits = after.bytes().take_while(u8::is_ascii_digit).count();
            let i: usize = after[..digits].parse().ok()?;
            let kind = after[digits..].chars().next()?;
            out.push((rest[..p].to_string(), !open.is_empty()));
            match kind {
                OPEN => open.push(i),
                CLOSE if open.last() == Some(&i) => {
                    open.pop();
                }
                _ => return None,
            }
            rest = &after[digits + kind.len_utf8()..];
        }
        if !open.is_empty() {
            return None;
        }
        out.push((rest.to_string(), false));
        out.retain(|(s, _)| !s.is_empty());
        Some(out)
    }
}

/// A role as templates compare it: plain words only, so that no role can carry control tokens.
fn check_role(role: &str) -> Result<(), TokenizerError> {
    let ok = !role.is_empty()
        && role.len() <= 64
        && role
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(TokenizerError::Template(format!(
            "message role {:?} is not a plain word (letters, digits, '_', '-'; at most 64)",
            role.chars().take(80).collect::<String>()
        )))
    }
}

/// Applies the model's chat template (or ChatML) and tokenizes the result: [`encode_chat_with_tools`]
/// without tools.
///
/// # Errors
/// As [`encode_chat_with_tools`].
pub fn encode_chat(
    tok: &Tokenizer,
    messages: &[Message],
    add_generation_prompt: bool,
) -> Result<Vec<u32>, TokenizerError> {
    encode_chat_with_tools(tok, messages, &[], add_generation_prompt)
}

/// The JSON key whose string values templates interpret (a JSON schema's `type`, which Hermes-style
/// templates map to Python types): its values are never fenced, and are checked like keys.
const SCHEMA_TYPE: &str = "type";

/// Every string leaf of `v` passed through `f` (object keys, and the values of the `keep` keys, stay
/// as they are).
fn map_strings(v: &Value, keep: &[&str], f: &mut impl FnMut(&str) -> String) -> Value {
    match v {
        Value::String(s) => Value::String(f(s)),
        Value::Array(a) => Value::Array(a.iter().map(|x| map_strings(x, keep, f)).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| {
                    let x = if keep.contains(&k.as_str()) {
                        x.clone()
                    } else {
                        map_strings(x, keep, f)
                    };
                    (k.clone(), x)
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Every object key in `v`, and every string under a [`SCHEMA_TYPE`] key.
fn keys<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::Array(a) => a.iter().for_each(|x| keys(x, out)),
        Value::Object(o) => o.iter().for_each(|(k, x)| {
            out.push(k);
            if k == SCHEMA_TYPE {
                strings(x, out);
            }
            keys(x, out)
        }),
        _ => {}
    }
}

/// Every string leaf of `v`.
fn strings<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::String(s) => out.push(s),
        Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        Value::Object(o) => o.values().for_each(|x| strings(x, out)),
        _ => {}
    }
}

/// Applies the model's chat template (or ChatML) to `messages` and `tools` (OpenAI's
/// `{ type: "function", function: { name, description, parameters } }` objects, which the template
/// renders; a template that knows no tools gets them described in a system message by
/// [`crate::tool_prompt`]) and tokenizes the result. Special tokens written by the template are
/// recognised; special-token text in anything from the caller (contents, names, call ids, tool
/// definitions and call arguments) is plain text, whatever the template does with it (drop it,
/// repeat it, trim or slice it).
///
/// Each caller string is rendered inside fences that no caller string can contain, and the pieces
/// inside fences are tokenized without special-token parsing. When the template changed the fenced
/// text so that the fences no longer match the plain rendering (`| trim`, slicing), and some caller
/// string holds special-token text, the prompt is refused rather than risk a forged control token.
/// Empty strings, schema `type` values and (when the template checks them, as Mistral's do) call ids
/// without special-token text are not fenced.
///
/// # Errors
/// [`TokenizerError::Template`] when the template fails, a role is not a plain word, a tool
/// definition's key holds special-token text, or caller text with special-token text cannot be
/// fenced under this template; tokenizer errors.
pub fn encode_chat_with_tools(
    tok: &Tokenizer,
    messages: &[Message],
    tools: &[Value],
    add_generation_prompt: bool,
) -> Result<Vec<u32>, TokenizerError> {
    let template = tok.chat_template.as_deref().unwrap_or(CHATML_TEMPLATE);
    let (bos, eos) = (&tok.special.bos_text, &tok.special.eos_text);
    for m in messages {
        check_role(&m.role)?;
    }
    let described;
    let (messages, tools) = if crate::tool_prompt::template_knows_tools(template) {
        (messages, tools)
    } else {
        described = crate::tool_prompt::describe(messages, tools);
        (described.as_slice(), &[][..])
    };
    let has_special = |s: &str| tok.encode(s, true, false).ok() != tok.encode(s, false, false).ok();
    let mut json_keys = Vec::new();
    for v in tools
        .iter()
        .chain(messages.iter().flat_map(|m| &m.tool_calls))
    {
        keys(v, &mut json_keys);
    }
    if let Some(k) = json_keys.iter().find(|k| has_special(k)) {
        return Err(TokenizerError::Template(format!(
            "a key or schema type in the tools or tool calls holds special-token text: {:?}",
            k.chars().take(80).collect::<String>()
        )));
    }
    let plain = render(template, messages, tools, add_generation_prompt, bos, eos)?;
    let tools_text: Vec<String> = tools
        .iter()
        .chain(messages.iter().flat_map(|m| &m.tool_calls))
        .map(Value::to_string)
        .collect();
    let strings: Vec<&str> = messages
        .iter()
        .flat_map(|m| [Some(&m.content), m.name.as_ref(), m.tool_call_id.as_ref()])
        .flatten()
        .map(String::as_str)
        .chain(tools_text.iter().map(String::as_str))
        .collect();
    let fences = Fences::new(&strings);
    // The caller's strings fenced, call ids too (`fence_ids`) or not; the fences are trustworthy when
    // removing them gives exactly the plain rendering.
    let fenced_rendering = |fence_ids: bool| {
        let mut next = 0usize;
        // Empty strings hold nothing to protect, and templates test them (`if message.content`).
        let mut wrap = |s: &str| {
            if s.is_empty() {
                return String::new();
            }
            next += 1;
            fences.wrap(next, s)
        };
        let keep = &[SCHEMA_TYPE];
        let fenced: Vec<Message> = messages
            .iter()
            .map(|m| Message {
                role: m.role.clone(),
                content: wrap(&m.content),
                name: m.name.as_deref().map(&mut wrap),
                tool_calls: m
                    .tool_calls
                    .iter()
                    .map(|c| {
                        let mut f = map_strings(c, keep, &mut wrap);
                        // Only the call's own id, never an `id` nested in its arguments.
                        if !fence_ids && c["id"].is_string() {
                            f["id"] = c["id"].clone();
                        }
                        f
                    })
                    .collect(),
                tool_call_id: match &m.tool_call_id {
                    Some(id) if fence_ids => Some(wrap(id)),
                    other => other.clone(),
                },
            })
            .collect();
        let fenced_tools: Vec<Value> = tools
            .iter()
            .map(|t| map_strings(t, keep, &mut wrap))
            .collect();
        render(
            template,
            &fenced,
            &fenced_tools,
            add_generation_prompt,
            bos,
            eos,
        )
        .ok()
        .and_then(|m| fences.split(&m))
        .filter(|segs| segs.iter().map(|(s, _)| s.as_str()).collect::<String>() == plain)
    };
    // Templates may check call ids (Mistral's want 9 characters): without special-token text they
    // can stay unfenced.
    let ids_plain = messages.iter().all(|m| {
        m.tool_call_id
            .as_deref()
            .into_iter()
            .chain(m.tool_calls.iter().filter_map(|c| c["id"].as_str()))
            .all(|id| !has_special(id))
    });
    let segments = fenced_rendering(true).or_else(|| {
        if ids_plain {
            fenced_rendering(false)
        } else {
            None
        }
    });
    let segments = match segments {
        Some(s) => s,
        None if strings.iter().any(|c| has_special(c)) => {
            return Err(TokenizerError::Template(
                "a message contains special-token text and this chat template changes or checks \
                 message content (trim, slicing, lengths), so it cannot be kept as plain text; \
                 remove the special-token text from the message"
                    .into(),
            ))
        }
        // No caller text can produce a control token: the plain rendering is safe as it is.
        None => vec![(plain.clone(), false)],
    };
    // Templates that write `{{ bos_token }}` themselves must not get a second BOS.
    let starts_with_bos = !bos.is_empty() && plain.starts_with(bos.as_str());
    // Tokenize the whole rendering once (splitting can change BPE merges at piece borders) unless a
    // piece of caller content holds special-token text.
    if !segments.iter().any(|(s, user)| *user && has_special(s)) {
        return tok.encode(&plain, true, !starts_with_bos);
    }
    let mut ids = Vec::new();
    if tok.special.add_bos && !starts_with_bos {
        ids.extend(tok.special.bos);
    }
    for (s, user) in &segments {
        ids.extend(tok.encode(s, !user, false)?);
    }
    Ok(ids)
}
