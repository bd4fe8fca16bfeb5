//! OpenAI's `messages` (as the JS API and `webmoe serve --openai` receive them) read into
//! [`Message`]s: content as a string, null or a list of text parts; `name`; an assistant's
//! `tool_calls` (whose `arguments` JSON text becomes the object templates read); a tool message's
//! `tool_call_id`.

use crate::chat::Message;
use serde_json::Value;

/// Most messages one request may hold.
pub const MAX_MESSAGES: usize = 4096;

fn content_of(i: usize, v: &Value) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Null => Ok(String::new()),
        Value::Array(parts) => parts
            .iter()
            .map(|p| match (p["type"].as_str(), p["text"].as_str()) {
                (Some("text"), Some(t)) => Ok(t),
                (Some(other), _) if other != "text" => Err(format!(
                    "messages[{i}]: content parts of type {other:?} are not supported (text only)"
                )),
                _ => Err(format!(
                    "messages[{i}]: content parts must be {{ type: 'text', text }}"
                )),
            })
            .collect(),
        _ => Err(format!(
            "messages[{i}].content must be a string or a list of text parts"
        )),
    }
}

fn optional_string(i: usize, m: &Value, key: &str) -> Result<Option<String>, String> {
    match &m[key] {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        _ => Err(format!("messages[{i}].{key} must be a string")),
    }
}

fn tool_call(i: usize, j: usize, c: &Value) -> Result<Value, String> {
    let at = format!("messages[{i}].tool_calls[{j}]");
    let f = &c["function"];
    let Some(name) = f["name"].as_str() else {
        return Err(format!("{at}.function.name must be a string"));
    };
    let arguments = match &f["arguments"] {
        Value::Null => Value::Object(Default::default()),
        Value::String(s) => serde_json::from_str::<Value>(s)
            .ok()
            .filter(Value::is_object)
            .ok_or(format!(
                "{at}.function.arguments must be a JSON object's text"
            ))?,
        v @ Value::Object(_) => v.clone(),
        _ => {
            return Err(format!(
                "{at}.function.arguments must be a JSON object's text"
            ))
        }
    };
    let mut call = serde_json::json!({
        "type": "function",
        "function": { "name": name, "arguments": arguments },
    });
    if let Some(id) = c["id"].as_str() {
        call["id"] = id.into();
    }
    Ok(call)
}

/// The messages of a request.
///
/// # Errors
/// Not a non-empty list (of at most [`MAX_MESSAGES`]), a message without a string role, content that
/// is not text, malformed tool calls; the message is named by its index.
pub fn messages_from_openai(v: &Value) -> Result<Vec<Message>, String> {
    let Some(list) = v.as_array().filter(|a| !a.is_empty()) else {
        return Err("messages must be a non-empty list of { role, content }".into());
    };
    if list.len() > MAX_MESSAGES {
        return Err(format!(
            "{} messages given, at most {MAX_MESSAGES} are accepted",
            list.len()
        ));
    }
    list.iter()
        .enumerate()
        .map(|(i, m)| {
            if !m.is_object() {
                return Err(format!(
                    "messages[{i}] must be an object {{ role, content }}"
                ));
            }
            let Some(role) = m["role"].as_str() else {
                return Err(format!("messages[{i}] needs a string role"));
            };
            let tool_calls = match &m["tool_calls"] {
                Value::Null => Vec::new(),
                Value::Array(a) => a
                    .iter()
                    .enumerate()
                    .map(|(j, c)| tool_call(i, j, c))
                    .collect::<Result<_, _>>()?,
                _ => return Err(format!("messages[{i}].tool_calls must be a list")),
            };
            Ok(Message {
                role: role.into(),
                content: content_of(i, &m["content"])?,
                name: optional_string(i, m, "name")?,
                tool_calls,
                tool_call_id: optional_string(i, m, "tool_call_id")?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_openai_messages() {
        let msgs = messages_from_openai(&json!([
            { "role": "user", "content": [{ "type": "text", "text": "a" }, { "type": "text", "text": "b" }] },
            { "role": "assistant", "content": null, "tool_calls": [{ "id": "c1", "type": "function",
                "function": { "name": "f", "arguments": "{\"x\": 1}" } }] },
            { "role": "tool", "tool_call_id": "c1", "content": "2" },
        ]))
        .unwrap();
        assert_eq!(msgs[0].content, "ab");
        assert_eq!(
            msgs[1].tool_calls[0]["function"]["arguments"],
            json!({ "x": 1 })
        );
        assert_eq!(msgs[1].tool_calls[0]["id"], "c1");
        assert_eq!(msgs[2].tool_call_id.as_deref(), Some("c1"));
    }

    #[test]
    fn names_what_is_wrong() {
        for (v, why) in [
            (json!([]), "non-empty"),
            (
                json!([{ "content": "x" }]),
                "messages[0] needs a string role",
            ),
            (
                json!([{ "role": "user", "content": 5 }]),
                "messages[0].content",
            ),
            (
                json!([{ "role": "user", "content": [{ "type": "image_url" }] }]),
                "image_url",
            ),
            (
                json!([{ "role": "user" }, { "role": "assistant", "tool_calls": [{ "function": { "name": "f", "arguments": "[1]" } }] }]),
                "messages[1].tool_calls[0]",
            ),
        ] {
            let e = messages_from_openai(&v).unwrap_err();
            assert!(e.contains(why), "{e} should mention {why}");
        }
    }
}
