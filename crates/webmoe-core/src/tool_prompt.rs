//! Tools in the prompt: which call format a chat template teaches its model, and, for templates that
//! know no tools (ChatML, SmolLM2), a system message that describes the tools and asks for calls in
//! `<tool_call>` tags, with earlier calls and tool answers rewritten into that form.

use crate::chat::Message;
use crate::pyjson::{dumps, Style};
use serde_json::Value;

/// How a model writes its tool calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolFormat {
    /// `<tool_call>{"name": …, "arguments": {…}}</tool_call>` (Hermes, Qwen 2.5/3, and webmoe's
    /// description for templates without tools).
    Hermes,
    /// A bare `{"name": …, "parameters": {…}}` object, possibly after `<|python_tag|>` (Llama 3.1+, 4).
    Llama3Json,
    /// `[TOOL_CALLS][{"name": …, "arguments": {…}}]` (Mistral, Mixtral).
    Mistral,
}

/// Whether `template` renders a `tools` list itself.
pub fn template_knows_tools(template: &str) -> bool {
    template.contains("tools")
}

/// The call format `template` (the model's chat template, `None` for ChatML) asks for.
pub fn tool_format(template: Option<&str>) -> ToolFormat {
    let Some(t) = template.filter(|t| template_knows_tools(t)) else {
        return ToolFormat::Hermes;
    };
    if t.contains("[TOOL_CALLS]") {
        ToolFormat::Mistral
    } else if t.contains("<tool_call>") {
        ToolFormat::Hermes
    } else if t.contains("<|python_tag|>") || t.contains("parameters") {
        ToolFormat::Llama3Json
    } else {
        ToolFormat::Hermes
    }
}

/// The control token a format's calls begin with, when the tokenizer has it as one special token
/// (Mistral's `[TOOL_CALLS]`): a forced call starts with that token, as the model was trained to.
pub fn call_marker(tok: &crate::tokenizer::Tokenizer, format: ToolFormat) -> Option<u32> {
    let text = match format {
        ToolFormat::Mistral => "[TOOL_CALLS]",
        ToolFormat::Hermes | ToolFormat::Llama3Json => return None,
    };
    match tok.encode(text, true, false).ok()?.as_slice() {
        [id] if tok.encode(text, false, false).ok()?.len() > 1 => Some(*id),
        _ => None,
    }
}

/// One call as the Hermes format writes it.
pub fn hermes_call(name: &str, arguments: &Value) -> String {
    let call = serde_json::json!({ "name": name, "arguments": arguments });
    format!(
        "<tool_call>\n{}\n</tool_call>",
        dumps(&call, &Style::default())
    )
}

/// `messages` for a template without tools: the tools described in the system message (one is added
/// when there is none), each assistant's calls written as `<tool_call>` blocks after its text, and
/// each `tool` message turned into a user message holding a `<tool_response>` block.
pub fn describe(messages: &[Message], tools: &[Value]) -> Vec<Message> {
    let mut out: Vec<Message> = messages
        .iter()
        .map(|m| {
            if m.role == "tool" {
                return Message::new(
                    "user",
                    &format!("<tool_response>\n{}\n</tool_response>", m.content),
                );
            }
            let mut content = m.content.clone();
            for call in &m.tool_calls {
                let f = &call["function"];
                let name = f["name"].as_str().unwrap_or_default();
                if !content.is_empty() {
                    content.push('\n');
                }
                content += &hermes_call(name, &f["arguments"]);
            }
            Message {
                tool_calls: Vec::new(),
                content,
                ..m.clone()
            }
        })
        .collect();
    if tools.is_empty() {
        return out;
    }
    let listed: Vec<String> = tools.iter().map(|t| dumps(t, &Style::default())).collect();
    let text = format!(
        "You can call these functions (JSON signatures, one per line):\n<tools>\n{}\n</tools>\n\
         To call one, answer with only a JSON object holding the function's name and its arguments, \
         inside <tool_call></tool_call> tags:\n<tool_call>\n{{\"name\": \"function name\", \
         \"arguments\": {{\"parameter\": \"value\"}}}}\n</tool_call>\nEach result comes back inside \
         <tool_response></tool_response> tags.",
        listed.join("\n")
    );
    match out.first_mut() {
        Some(m) if m.role == "system" => m.content = format!("{}\n\n{text}", m.content),
        _ => out.insert(0, Message::new("system", &text)),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_follow_the_template() {
        assert_eq!(tool_format(None), ToolFormat::Hermes);
        assert_eq!(
            tool_format(Some("{% if tools %}[TOOL_CALLS]{% endif %}")),
            ToolFormat::Mistral
        );
        assert_eq!(
            tool_format(Some("{% for t in tools %}<tool_call>{% endfor %}")),
            ToolFormat::Hermes
        );
        assert_eq!(
            tool_format(Some(
                "{% if tools %}\"parameters\"<|python_tag|>{% endif %}"
            )),
            ToolFormat::Llama3Json
        );
        // Mentions of tool calls without a tools list are not tool support.
        assert_eq!(
            tool_format(Some("[TOOL_CALLS] {{ messages }}")),
            ToolFormat::Hermes
        );
    }

    #[test]
    fn describes_tools_and_rewrites_calls_and_answers() {
        let tools = [serde_json::json!({"type": "function", "function": {"name": "f"}})];
        let call = serde_json::json!({"id": "c1", "type": "function",
            "function": {"name": "f", "arguments": {"x": 1}}});
        let msgs = [
            Message::new("user", "hi"),
            Message {
                tool_calls: vec![call],
                ..Message::new("assistant", "")
            },
            Message {
                tool_call_id: Some("c1".into()),
                ..Message::new("tool", "42")
            },
        ];
        let out = describe(&msgs, &tools);
        assert_eq!(out.len(), 4);
        assert_eq!(out[0].role, "system");
        assert!(out[0]
            .content
            .contains(r#"{"type": "function", "function": {"name": "f"}}"#));
        assert_eq!(
            out[2].content,
            "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"x\": 1}}\n</tool_call>"
        );
        assert!(out[2].tool_calls.is_empty());
        assert_eq!(
            (out[3].role.as_str(), out[3].content.as_str()),
            ("user", "<tool_response>\n42\n</tool_response>")
        );
    }
}
