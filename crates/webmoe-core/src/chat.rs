//! Chat templates (`tokenizer.chat_template`, Jinja) rendered with minijinja, and safe tokenization of
//! the result: text from the template may contain control tokens; text from messages may not.

use crate::error::TokenizerError;
use crate::tokenizer::Tokenizer;
use minijinja::{context, Environment, Error as JinjaError, ErrorKind};
use serde::{Deserialize, Serialize};

/// One chat message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// Message text.
    pub content: String,
}

impl Message {
    /// A message with the given role and content.
    pub fn new(role: &str, content: &str) -> Self {
        Message {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// ChatML, used when the model has no template of its own.
pub const CHATML_TEMPLATE: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

// Private-use characters frame each message's content while rendering, so that the content can be found
// again in the output and tokenized without special-token parsing.
const OPEN: char = '\u{F0001}';
const CLOSE: char = '\u{F0002}';

fn env() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function(
        "raise_exception",
        |msg: String| -> Result<String, JinjaError> {
            Err(JinjaError::new(ErrorKind::InvalidOperation, msg))
        },
    );
    env.add_function("strftime_now", |_fmt: String| -> String { String::new() });
    env
}

/// Renders `template` for `messages`.
///
/// # Errors
/// [`TokenizerError::Template`] when the template does not parse or raises.
pub fn render(
    template: &str,
    messages: &[Message],
    add_generation_prompt: bool,
    bos: &str,
    eos: &str,
) -> Result<String, TokenizerError> {
    let env = env();
    let tmpl = env
        .template_from_str(template)
        .map_err(|e| TokenizerError::Template(e.to_string()))?;
    tmpl.render(context! { messages => messages, add_generation_prompt => add_generation_prompt, bos_token => bos, eos_token => eos })
        .map_err(|e| TokenizerError::Template(e.to_string()))
}

/// Applies the model's chat template (or ChatML) and tokenizes the result. Special tokens written by
/// the template are recognised; special-token strings inside message contents are plain text.
///
/// # Errors
/// [`TokenizerError`] when the template fails or tokenization fails.
pub fn encode_chat(
    tok: &Tokenizer,
    messages: &[Message],
    add_generation_prompt: bool,
) -> Result<Vec<u32>, TokenizerError> {
    let template = tok.chat_template.as_deref().unwrap_or(CHATML_TEMPLATE);
    let (bos, eos) = (&tok.special.bos_text, &tok.special.eos_text);
    let marked: Vec<Message> = messages
        .iter()
        .map(|m| Message {
            role: m.role.clone(),
            content: format!("{OPEN}{}{CLOSE}", m.content),
        })
        .collect();
    let rendered = render(template, &marked, add_generation_prompt, bos, eos)?;
    let clean = |s: &str| s.replace([OPEN, CLOSE], "");
    // A template that transformed the content (e.g. trimmed it) may have moved the markers; then the
    // message text is located by search in a plain rendering.
    let wellformed = rendered.matches(OPEN).count() == messages.len()
        && rendered.matches(CLOSE).count() == messages.len();
    let mut segments: Vec<(String, bool)> = Vec::new(); // (text, is_user_content)
    if wellformed {
        let mut rest = rendered.as_str();
        while let Some(o) = rest.find(OPEN) {
            let c = rest[o..]
                .find(CLOSE)
                .map(|c| c + o)
                .ok_or_else(|| TokenizerError::Template("unbalanced content markers".into()))?;
            segments.push((rest[..o].to_string(), false));
            segments.push((rest[o + OPEN.len_utf8()..c].to_string(), true));
            rest = &rest[c + CLOSE.len_utf8()..];
        }
        segments.push((rest.to_string(), false));
    } else {
        let plain = render(template, messages, add_generation_prompt, bos, eos)?;
        let mut rest = plain.as_str();
        for m in messages.iter().filter(|m| !m.content.is_empty()) {
            if let Some(p) = rest.find(m.content.as_str()) {
                segments.push((rest[..p].to_string(), false));
                segments.push((m.content.clone(), true));
                rest = &rest[p + m.content.len()..];
            }
        }
        segments.push((clean(rest), false));
    }
    // Tokenize the whole rendering once with specials parsed, unless user content is affected: splitting
    // into segments can change BPE merges at segment borders, so only split where the content actually
    // contains a special-token string.
    let joined: String = segments.iter().map(|(s, _)| s.as_str()).collect();
    // Templates that write `{{ bos_token }}` themselves must not get a second BOS.
    let starts_with_bos = !bos.is_empty() && joined.starts_with(bos.as_str());
    let content_is_plain = segments
        .iter()
        .filter(|(_, u)| *u)
        .all(|(s, _)| tok.encode(s, true, false).ok() == tok.encode(s, false, false).ok());
    if content_is_plain {
        return tok.encode(&joined, true, !starts_with_bos);
    }
    let mut ids = Vec::new();
    if tok.special.add_bos && !starts_with_bos {
        ids.extend(tok.special.bos);
    }
    for (s, user) in &segments {
        if !s.is_empty() {
            ids.extend(tok.encode(s, !user, false)?);
        }
    }
    Ok(ids)
}
