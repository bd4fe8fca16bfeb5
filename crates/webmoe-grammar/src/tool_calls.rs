//! Tool calls read back from generated text, as it streams: content passes through at once, text
//! that may be a call is held until it is one or is not. One reader takes every format the families
//! write (see `webmoe_core::tool_prompt::ToolFormat`): `<tool_call>{…}</tool_call>` blocks anywhere
//! in the answer, or an answer that is only calls: `{"name": …, "parameters"|"arguments": …}`
//! objects (after an optional `<|python_tag|>`, separated by `;` or new lines) or a JSON list of them
//! (after an optional `[TOOL_CALLS]`). Only calls of declared functions with object arguments count;
//! anything else stays content.

use serde_json::Value;

const OPEN: &str = "<tool_call>";
const CLOSE: &str = "</tool_call>";
const PREFIXES: [&str; 2] = ["<|python_tag|>", "[TOOL_CALLS]"];

/// One call the model made.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    /// Unique within the generation's id prefix: `{prefix}{n}`, or for the Mistral format nine
    /// letters and digits hashed from them (Mistral's templates refuse any other call id).
    pub id: String,
    /// A declared function's name.
    pub name: String,
    /// The arguments as compact JSON text (OpenAI's `function.arguments`).
    pub arguments: String,
}

/// What the reader gives back.
#[derive(Debug, Clone, PartialEq)]
pub enum Piece {
    /// Answer text.
    Content(String),
    /// A complete call.
    Call(ToolCall),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    /// Nothing but white space yet.
    Start,
    /// Text, with `<tool_call>` blocks.
    Text,
    /// The answer is calls only (it began with `{`, `[` or a call prefix): held to the end.
    Calls,
}

/// The streaming reader for one generation.
#[derive(Debug)]
pub struct CallReader {
    names: Vec<String>,
    id_prefix: String,
    nine_char_ids: bool,
    pending: String,
    mode: Mode,
    calls: usize,
    /// White space after a call block is not content.
    after_call: bool,
}

impl CallReader {
    /// A reader for calls of `names`, whose ids start with `id_prefix`.
    pub fn new(names: Vec<String>, id_prefix: &str) -> Self {
        CallReader {
            names,
            id_prefix: id_prefix.into(),
            nine_char_ids: false,
            pending: String::new(),
            mode: Mode::Start,
            calls: 0,
            after_call: false,
        }
    }

    /// Ids of nine letters and digits (hashed from the prefix and the call's number), as Mistral's
    /// chat templates require of the calls they render back.
    pub fn with_nine_char_ids(mut self) -> Self {
        self.nine_char_ids = true;
        self
    }

    fn id(&self, n: usize) -> String {
        let id = format!("{}{n}", self.id_prefix);
        if !self.nine_char_ids {
            return id;
        }
        // FNV-1a, then base 62.
        let mut h = id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
        (0..9)
            .map(|_| {
                let d = DIGITS[(h % 62) as usize] as char;
                h /= 62;
                d
            })
            .collect()
    }

    /// The number of calls read so far.
    pub fn calls(&self) -> usize {
        self.calls
    }

    /// Takes the next piece of generated text; returns what is decided.
    pub fn push(&mut self, text: &str) -> Vec<Piece> {
        self.pending.push_str(text);
        let mut out = Vec::new();
        if self.mode == Mode::Start {
            let t = self.pending.trim_start();
            if t.is_empty() {
                return out;
            }
            let calls_first = t.starts_with('{')
                || t.starts_with('[')
                || PREFIXES.iter().any(|p| t.starts_with(p));
            if calls_first {
                self.mode = Mode::Calls;
            } else if PREFIXES.iter().any(|p| p.starts_with(t)) {
                return out;
            } else {
                self.mode = Mode::Text;
            }
        }
        if self.mode == Mode::Text {
            self.blocks(&mut out, false);
        }
        out
    }

    /// The end of the generation: whatever is held is decided.
    pub fn finish(&mut self) -> Vec<Piece> {
        let mut out = Vec::new();
        match self.mode {
            Mode::Calls => {
                let text = std::mem::take(&mut self.pending);
                match self.answer_of_calls(&text) {
                    Some(calls) => out.extend(calls.into_iter().map(Piece::Call)),
                    None => out.push(Piece::Content(text)),
                }
            }
            _ => self.blocks(&mut out, true),
        }
        out.retain(|p| !matches!(p, Piece::Content(c) if c.is_empty()));
        out
    }

    /// Reads `<tool_call>` blocks out of the pending text; at the `end`, an unclosed block is read up
    /// to the end of the text.
    fn blocks(&mut self, out: &mut Vec<Piece>, end: bool) {
        loop {
            if self.after_call {
                let rest = self.pending.trim_start_matches([' ', '\n']).len();
                self.pending.drain(..self.pending.len() - rest);
                if self.pending.is_empty() {
                    return;
                }
                self.after_call = false;
            }
            let Some(open) = self.pending.find(OPEN) else {
                // Hold back a tail that may begin a block, and the white space before it (which
                // is dropped if a call follows).
                let cut = if end {
                    self.pending.len()
                } else {
                    let t = &self.pending[..self.pending.len() - held_tail(&self.pending, OPEN)];
                    t.trim_end_matches([' ', '\n']).len()
                };
                out.push(Piece::Content(self.pending[..cut].to_string()));
                self.pending.drain(..cut);
                return;
            };
            let body_start = open + OPEN.len();
            let (body_end, next) = match self.pending[body_start..].find(CLOSE) {
                Some(c) => (body_start + c, body_start + c + CLOSE.len()),
                None if end => (self.pending.len(), self.pending.len()),
                None => {
                    let c = self.pending[..open].trim_end_matches([' ', '\n']).len();
                    out.push(Piece::Content(self.pending[..c].to_string()));
                    self.pending.drain(..c);
                    return;
                }
            };
            let body = self.pending[body_start..body_end].to_string();
            let skip = match parse_objects(&body).and_then(|objs| self.calls_of(objs)) {
                Some(calls) => {
                    // White space around blocks is not content.
                    let before = self.pending[..open].trim_end_matches([' ', '\n']);
                    out.push(Piece::Content(before.to_string()));
                    out.extend(calls.into_iter().map(Piece::Call));
                    self.after_call = true;
                    next
                }
                None => {
                    out.push(Piece::Content(self.pending[..next].to_string()));
                    next
                }
            };
            self.pending.drain(..skip);
            if self.pending.is_empty() {
                return;
            }
        }
    }

    /// An answer that is only calls: every call, or `None` if any part is not one.
    fn answer_of_calls(&mut self, text: &str) -> Option<Vec<ToolCall>> {
        let mut t = text.trim();
        for p in PREFIXES {
            t = t.strip_prefix(p).unwrap_or(t).trim_start();
        }
        if t.starts_with(OPEN) {
            return None;
        }
        let objs = if t.starts_with('[') {
            match serde_json::from_str::<Value>(t).ok()? {
                Value::Array(a) => a,
                _ => return None,
            }
        } else {
            parse_objects(t)?
        };
        self.calls_of(objs)
    }

    fn calls_of(&mut self, objs: Vec<Value>) -> Option<Vec<ToolCall>> {
        if objs.is_empty() {
            return None;
        }
        let mut calls = Vec::new();
        for o in objs {
            let name = o.get("name")?.as_str()?;
            if !self.names.iter().any(|n| n == name) {
                return None;
            }
            let args = match o.get("arguments").or_else(|| o.get("parameters")) {
                None => Value::Object(Default::default()),
                Some(Value::String(s)) => serde_json::from_str(s).ok()?,
                Some(v) => v.clone(),
            };
            if !args.is_object() {
                return None;
            }
            calls.push(ToolCall {
                id: self.id(self.calls + calls.len()),
                name: name.into(),
                arguments: args.to_string(),
            });
        }
        self.calls += calls.len();
        Some(calls)
    }
}

/// One generation's answer as it streams: the content (handed on as it is decided) and the tool calls,
/// read by a [`CallReader`] when the request has tools, else all content.
#[derive(Debug, Default)]
pub struct Answer {
    reader: Option<CallReader>,
    /// The answer text without its calls.
    pub content: String,
    /// The complete calls.
    pub calls: Vec<ToolCall>,
}

impl Answer {
    /// An answer read by `reader` (or all content without one).
    pub fn new(reader: Option<CallReader>) -> Self {
        Answer {
            reader,
            ..Default::default()
        }
    }

    /// Takes generated text; returns the content decided now (empty while text is held back).
    pub fn push(&mut self, text: &str) -> String {
        let pieces = match self.reader.as_mut() {
            Some(r) => r.push(text),
            None => vec![Piece::Content(text.to_string())],
        };
        self.take(pieces)
    }

    /// The end of the generation; returns the content decided last.
    pub fn finish(&mut self) -> String {
        let pieces = self.reader.as_mut().map_or(Vec::new(), CallReader::finish);
        self.take(pieces)
    }

    fn take(&mut self, pieces: Vec<Piece>) -> String {
        let mut decided = String::new();
        for p in pieces {
            match p {
                Piece::Content(c) => decided += &c,
                Piece::Call(c) => self.calls.push(c),
            }
        }
        self.content += &decided;
        decided
    }
}

/// JSON objects one after another, separated by white space or `;`.
fn parse_objects(text: &str) -> Option<Vec<Value>> {
    let mut out = Vec::new();
    let mut rest = text;
    loop {
        rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == ';');
        if rest.is_empty() {
            return Some(out);
        }
        let mut it = serde_json::Deserializer::from_str(rest).into_iter::<Value>();
        let v = it.next()?.ok()?;
        if !v.is_object() {
            return None;
        }
        out.push(v);
        rest = &rest[it.byte_offset()..];
    }
}

/// The length of the longest tail of `text` that is a proper prefix of `marker`.
fn held_tail(text: &str, marker: &str) -> usize {
    (1..marker.len().min(text.len() + 1))
        .rev()
        .find(|&n| {
            text.is_char_boundary(text.len() - n) && marker.starts_with(&text[text.len() - n..])
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(chunks: &[&str]) -> (String, Vec<(String, String)>) {
        let mut r = CallReader::new(vec!["get_weather".into(), "add".into()], "call_");
        let mut pieces = Vec::new();
        for c in chunks {
            pieces.extend(r.push(c));
        }
        pieces.extend(r.finish());
        let mut content = String::new();
        let mut calls = Vec::new();
        for p in pieces {
            match p {
                Piece::Content(c) => content += &c,
                Piece::Call(c) => calls.push((c.name, c.arguments)),
            }
        }
        (content, calls)
    }

    /// Every split of `text` into two chunks reads the same.
    fn read_all_splits(text: &str) -> (String, Vec<(String, String)>) {
        let whole = read(&[text]);
        for i in (0..=text.len()).filter(|&i| text.is_char_boundary(i)) {
            assert_eq!(read(&[&text[..i], &text[i..]]), whole, "split at {i}");
        }
        whole
    }

    #[test]
    fn hermes_blocks_among_text() {
        let (content, calls) = read_all_splits(
            "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"add\", \"arguments\": \"{\\\"a\\\": 1}\"}\n</tool_call>",
        );
        assert_eq!(content, "Let me check.");
        assert_eq!(
            calls,
            [
                ("get_weather".into(), r#"{"city":"Paris"}"#.into()),
                ("add".into(), r#"{"a":1}"#.into())
            ]
        );
    }

    #[test]
    fn llama_and_mistral_answers_of_calls() {
        let (content, calls) = read_all_splits(
            "<|python_tag|>{\"name\": \"add\", \"parameters\": {\"a\": 1}}; {\"name\": \"add\", \"parameters\": {\"a\": 2}}",
        );
        assert_eq!(content, "");
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[1].1, r#"{"a":2}"#);
        let (content, calls) =
            read_all_splits("[TOOL_CALLS] [{\"name\": \"get_weather\", \"arguments\": {}}]");
        assert_eq!((content.as_str(), calls.len()), ("", 1));
    }

    #[test]
    fn what_is_not_a_call_stays_content() {
        for text in [
            "Plain answer with <tool and a < sign.",
            "{\"name\": \"unknown_fn\", \"arguments\": {}}",
            "[1, 2, 3]",
            "<tool_call>\nnot json\n</tool_call> after",
            "{\"answer\": 42}",
        ] {
            let (content, calls) = read_all_splits(text);
            assert!(calls.is_empty(), "{text}");
            assert_eq!(content, text);
        }
    }

    #[test]
    fn an_unclosed_block_at_the_end_is_still_read() {
        let (content, calls) =
            read(&["<tool_call>\n{\"name\": \"add\", \"arguments\": {\"a\": 3}}\n"]);
        assert_eq!((content.as_str(), calls.len()), ("", 1));
    }
}
