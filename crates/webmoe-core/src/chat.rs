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

/// Most template instructions one rendering may run (minijinja fuel): real templates use a few
/// thousand per message; a loop of 10^10 iterations stops here with an error instead of hanging.
pub const TEMPLATE_FUEL: u64 = 5_000_000;

/// Most bytes a rendering may produce. A chat prompt is text for the context window (a 128 k-token
/// context is about 512 KiB); output past this ends the rendering with an error, before it is kept.
pub const TEMPLATE_OUTPUT_LIMIT: usize = 8 << 20;

/// Longest template source accepted.
pub const TEMPLATE_SOURCE_LIMIT: usize = 1 << 20;

fn env() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.set_fuel(Some(TEMPLATE_FUEL));
    env.add_function(
        "raise_exception",
        |msg: String| -> Result<String, JinjaError> {
            Err(JinjaError::new(ErrorKind::InvalidOperation, msg))
        },
    );
    env.add_function("strftime_now", |_fmt: String| -> String { String::new() });
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
    let ctx = context! { messages => messages, add_generation_prompt => add_generation_prompt, bos_token => bos, eos_token => eos };
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

/// Applies the model's chat template (or ChatML) and tokenizes the result. Special tokens written by
/// the template are recognised; special-token text inside message contents is plain text, whatever
/// the template does with the content (drop it, repeat it, trim or slice it).
///
/// Each content is rendered inside fences that no caller string can contain, and the pieces inside
/// fences are tokenized without special-token parsing. When the template changed the fenced text so
/// that the fences no longer match the plain rendering (`| trim`, slicing), and some caller string
/// holds special-token text, the prompt is refused rather than risk a forged control token.
///
/// # Errors
/// [`TokenizerError::Template`] when the template fails, a role is not a plain word, or message
/// content with special-token text cannot be fenced under this template; tokenizer errors.
pub fn encode_chat(
    tok: &Tokenizer,
    messages: &[Message],
    add_generation_prompt: bool,
) -> Result<Vec<u32>, TokenizerError> {
    let template = tok.chat_template.as_deref().unwrap_or(CHATML_TEMPLATE);
    let (bos, eos) = (&tok.special.bos_text, &tok.special.eos_text);
    for m in messages {
        check_role(&m.role)?;
    }
    let plain = render(template, messages, add_generation_prompt, bos, eos)?;
    let contents: Vec<&str> = messages.iter().map(|m| m.content.as_str()).collect();
    let fences = Fences::new(&contents);
    let fenced: Vec<Message> = messages
        .iter()
        .enumerate()
        .map(|(i, m)| Message {
            role: m.role.clone(),
            content: fences.wrap(i, &m.content),
        })
        .collect();
    let marked = render(template, &fenced, add_generation_prompt, bos, eos)?;
    // The fences are trustworthy when removing them gives exactly the plain rendering.
    let segments = fences
        .split(&marked)
        .filter(|segs| segs.iter().map(|(s, _)| s.as_str()).collect::<String>() == plain);
    let has_special = |s: &str| tok.encode(s, true, false).ok() != tok.encode(s, false, false).ok();
    let segments = match segments {
        Some(s) => s,
        None if contents.iter().any(|c| has_special(c)) => {
            return Err(TokenizerError::Template(
                "a message contains special-token text and this chat template changes message \
                 content (trim, slicing), so it cannot be kept as plain text; remove the \
                 special-token text from the message"
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
