//! OpenAI's `tools` and `tool_choice` of a request (the same fields in the JS API and
//! `webmoe serve --openai`): checked, rendered by the chat template, and, for `required` or a named
//! function, enforced by a grammar in the model's own call format whose arguments follow the
//! function's JSON schema.

use crate::spec::{Spec, SpecError};
use crate::tool_calls::CallReader;
use serde_json::{json, Value};
use webmoe_core::tool_prompt::ToolFormat;

/// Most tools one request may declare.
pub const MAX_TOOLS: usize = 128;

/// What the model may do with the tools.
#[derive(Debug, Clone, PartialEq)]
pub enum ToolChoice {
    /// Answer or call, as it likes.
    Auto,
    /// Answer only: the tools are not shown and no calls are read.
    None,
    /// Call one of the tools.
    Required,
    /// Call this function.
    Function(String),
}

/// The tools of a request.
#[derive(Debug, Clone, PartialEq)]
pub struct Tools {
    /// OpenAI tool objects `{ type: "function", function: { name, description?, parameters? } }`.
    pub definitions: Vec<Value>,
    /// `tool_choice`.
    pub choice: ToolChoice,
}

fn plain_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
}

impl Tools {
    /// The tools of a request, or `None` without any.
    ///
    /// # Errors
    /// A malformed tool (not a function, a name that is not a plain word of at most 64 characters, a
    /// duplicate name, parameters that are not a schema object), more than [`MAX_TOOLS`], or a
    /// `tool_choice` that is not `auto`, `none`, `required` or a declared function.
    pub fn from_request(
        tools: Option<&Value>,
        tool_choice: Option<&Value>,
    ) -> Result<Option<Tools>, SpecError> {
        let bad = |m: String| Err(SpecError(m));
        let defs = match tools {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => a.clone(),
            Some(_) => return bad("tools must be a list of { type: 'function', function }".into()),
        };
        if defs.len() > MAX_TOOLS {
            return bad(format!(
                "{} tools given, at most {MAX_TOOLS} are accepted",
                defs.len()
            ));
        }
        let mut names: Vec<&str> = Vec::new();
        for (i, t) in defs.iter().enumerate() {
            if t["type"] != "function" || !t["function"].is_object() {
                return bad(format!(
                    "tools[{i}] must be {{ type: 'function', function: {{ name, description, parameters }} }}"
                ));
            }
            let f = &t["function"];
            let Some(name) = f["name"].as_str().filter(|n| plain_name(n)) else {
                return bad(format!(
                    "tools[{i}].function.name must be letters, digits, '_', '-' or '.' (at most 64)"
                ));
            };
            if names.contains(&name) {
                return bad(format!("tools[{i}]: a second function named {name:?}"));
            }
            if !matches!(f["parameters"], Value::Null | Value::Object(_)) {
                return bad(format!(
                    "tools[{i}].function.parameters must be a JSON schema object"
                ));
            }
            if !matches!(f["description"], Value::Null | Value::String(_)) {
                return bad(format!("tools[{i}].function.description must be a string"));
            }
            names.push(name);
        }
        let choice = match tool_choice {
            None | Some(Value::Null) => ToolChoice::Auto,
            Some(Value::String(s)) => match s.as_str() {
                "auto" => ToolChoice::Auto,
                "none" => ToolChoice::None,
                "required" => ToolChoice::Required,
                other => {
                    return bad(format!(
                        "tool_choice must be 'auto', 'none', 'required' or {{ type: 'function', function: {{ name }} }}, not {other:?}"
                    ))
                }
            },
            Some(v) => match v["function"]["name"].as_str() {
                Some(n) if v["type"] == "function" && names.contains(&n) => {
                    ToolChoice::Function(n.into())
                }
                Some(n) if v["type"] == "function" => {
                    return bad(format!("tool_choice names {n:?}, which is not among the tools"))
                }
                _ => {
                    return bad(
                        "tool_choice must be 'auto', 'none', 'required' or { type: 'function', function: { name } }".into(),
                    )
                }
            },
        };
        if defs.is_empty() {
            return match choice {
                ToolChoice::Auto | ToolChoice::None => Ok(None),
                _ => bad("tool_choice asks for a call, but no tools are given".into()),
            };
        }
        Ok(Some(Tools {
            definitions: defs,
            choice,
        }))
    }

    /// The definitions the chat template renders (none for `tool_choice: 'none'`).
    pub fn rendered(&self) -> &[Value] {
        if self.choice == ToolChoice::None {
            &[]
        } else {
            &self.definitions
        }
    }

    fn names(&self) -> Vec<String> {
        self.definitions
            .iter()
            .filter_map(|t| t["function"]["name"].as_str().map(String::from))
            .collect()
    }

    /// The reader of this request's calls in `format` (ids made from `id_prefix`), or `None` when
    /// calls are not read (`tool_choice: 'none'`).
    pub fn reader(&self, id_prefix: &str, format: ToolFormat) -> Option<CallReader> {
        (self.choice != ToolChoice::None).then(|| {
            let r = CallReader::new(self.names(), id_prefix);
            match format {
                ToolFormat::Mistral => r.with_nine_char_ids(),
                ToolFormat::Hermes | ToolFormat::Llama3Json => r,
            }
        })
    }

    /// For `required` or a named function: the grammar of one call in `format`, with arguments
    /// valid for the function's schema, after `marker` (the id of the format's call token, see
    /// `webmoe_core::tool_prompt::call_marker`) when the tokenizer has one. `None` otherwise.
    pub fn spec(&self, format: ToolFormat, marker: Option<u32>) -> Option<Spec> {
        let args_key = match format {
            ToolFormat::Llama3Json => "parameters",
            ToolFormat::Hermes | ToolFormat::Mistral => "arguments",
        };
        let call = |t: &Value| {
            let f = &t["function"];
            let params = match &f["parameters"] {
                Value::Object(o) if !o.is_empty() => Value::Object(o.clone()),
                _ => json!({ "type": "object" }),
            };
            json!({
                "type": "object",
                "properties": { "name": { "const": f["name"] }, args_key: params },
                "required": ["name", args_key],
                "additionalProperties": false,
            })
        };
        let chosen: Vec<Value> = match &self.choice {
            ToolChoice::Auto | ToolChoice::None => return None,
            ToolChoice::Required => self.definitions.iter().map(call).collect(),
            ToolChoice::Function(n) => self
                .definitions
                .iter()
                .filter(|t| t["function"]["name"] == n.as_str())
                .map(call)
                .collect(),
        };
        let schema = match chosen.len() {
            1 => chosen.into_iter().next().expect("one"),
            _ => json!({ "anyOf": chosen }),
        };
        let body = match format {
            ToolFormat::Hermes => "\"<tool_call>\\n\" call \"\\n</tool_call>\"",
            ToolFormat::Llama3Json => "call",
            ToolFormat::Mistral => "\"[\" call \"]\"",
        };
        let start = marker.map_or(String::new(), |id| format!("<[{id}]> "));
        Some(Spec::Lark(format!(
            "start: {start}{body}\ncall: %json {schema}\n"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weather() -> Value {
        json!([{ "type": "function", "function": { "name": "get_weather",
            "parameters": { "type": "object", "properties": { "city": { "type": "string" } }, "required": ["city"] } } }])
    }

    #[test]
    fn requests_are_checked() {
        let t = Tools::from_request(Some(&weather()), None)
            .unwrap()
            .unwrap();
        assert_eq!(t.choice, ToolChoice::Auto);
        let named = json!({ "type": "function", "function": { "name": "get_weather" } });
        assert_eq!(
            Tools::from_request(Some(&weather()), Some(&named))
                .unwrap()
                .unwrap()
                .choice,
            ToolChoice::Function("get_weather".into())
        );
        for (tools, choice, why) in [
            (
                json!([{ "type": "function", "function": { "name": "a b" } }]),
                json!(null),
                "name",
            ),
            (json!([{ "type": "retrieval" }]), json!(null), "tools[0]"),
            (weather(), json!("sometimes"), "tool_choice"),
            (
                weather(),
                json!({ "type": "function", "function": { "name": "other" } }),
                "not among",
            ),
            (json!([]), json!("required"), "no tools"),
            (
                json!([{ "type": "function", "function": { "name": "f", "parameters": [] } }]),
                json!(null),
                "parameters",
            ),
        ] {
            let e = Tools::from_request(Some(&tools), Some(&choice)).unwrap_err();
            assert!(e.0.contains(why), "{e} should mention {why}");
        }
    }

    #[test]
    fn required_calls_are_a_grammar_in_the_models_format() {
        let mut t = Tools::from_request(Some(&weather()), Some(&json!("required")))
            .unwrap()
            .unwrap();
        let Some(Spec::Lark(g)) = t.spec(ToolFormat::Hermes, None) else {
            panic!("a grammar")
        };
        assert!(g.starts_with("start: \"<tool_call>\\n\" call"), "{g}");
        assert!(
            g.contains(r#""arguments":{"type":"object","properties":{"city""#),
            "{g}"
        );
        let Some(Spec::Lark(g)) = t.spec(ToolFormat::Llama3Json, None) else {
            panic!("a grammar")
        };
        assert!(g.contains(r#""parameters":"#), "{g}");
        t.choice = ToolChoice::Auto;
        assert_eq!(t.spec(ToolFormat::Hermes, None), None);
        t.choice = ToolChoice::None;
        assert!(t.rendered().is_empty() && t.reader("c", ToolFormat::Hermes).is_none());
    }
}
