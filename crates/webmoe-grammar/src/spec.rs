//! What a request constrains its output to, read from OpenAI's `response_format` and webmoe's
//! `grammar` / `regex` extensions (the same fields in the JS API and `webmoe serve --openai`).

use serde_json::Value;
use thiserror::Error;

/// A constraint on the generated text.
#[derive(Debug, Clone, PartialEq)]
pub enum Spec {
    /// Any JSON object (`response_format: { type: 'json_object' }`).
    JsonObject,
    /// JSON valid for `schema` (`{ type: 'json_schema', json_schema: { schema, strict } }`).
    JsonSchema {
        /// The JSON schema.
        schema: Value,
        /// Refuse schemas with keywords the engine cannot enforce (else they are ignored).
        strict: bool,
    },
    /// A grammar in llguidance's Lark dialect.
    Lark(String),
    /// A grammar in llama.cpp's GBNF.
    Gbnf(String),
    /// A regular expression the whole output matches.
    Regex(String),
}

/// A request field that does not describe a constraint.
#[derive(Debug, Error, PartialEq)]
#[error("{0}")]
pub struct SpecError(pub String);

impl Spec {
    /// What it is, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Spec::JsonObject | Spec::JsonSchema { .. } => "JSON schema",
            Spec::Lark(_) | Spec::Gbnf(_) => "grammar",
            Spec::Regex(_) => "regex",
        }
    }

    /// The constraint of a request: `response_format` (OpenAI's `text`, `json_object`, `json_schema`),
    /// `grammar` (a string, Lark unless it defines `root ::=`, or `{ type: 'lark' | 'gbnf', grammar }`)
    /// and `regex` (a string). At most one may constrain.
    ///
    /// # Errors
    /// Unknown types, missing schemas, wrong JSON types, or more than one constraint.
    pub fn from_request(
        response_format: Option<&Value>,
        grammar: Option<&Value>,
        regex: Option<&Value>,
    ) -> Result<Option<Spec>, SpecError> {
        let bad = |m: String| Err(SpecError(m));
        let mut found = Vec::new();
        if let Some(rf) = response_format.filter(|v| !v.is_null()) {
            let Some(ty) = rf.get("type").and_then(Value::as_str) else {
                return bad("response_format must be an object with a string `type` ('text', 'json_object' or 'json_schema')".into());
            };
            match ty {
                "text" => {}
                "json_object" => found.push(Spec::JsonObject),
                "json_schema" => {
                    let Some(js) = rf.get("json_schema").filter(|v| v.is_object()) else {
                        return bad("response_format.json_schema must be an object { name, schema, strict }".into());
                    };
                    let schema = match js.get("schema") {
                        None | Some(Value::Null) => serde_json::json!({}),
                        Some(s @ (Value::Object(_) | Value::Bool(_))) => s.clone(),
                        Some(_) => {
                            return bad("response_format.json_schema.schema must be a JSON schema object".into())
                        }
                    };
                    let strict = match js.get("strict") {
                        None | Some(Value::Null) => false,
                        Some(Value::Bool(b)) => *b,
                        Some(_) => {
                            return bad("response_format.json_schema.strict must be a boolean".into())
                        }
                    };
                    found.push(Spec::JsonSchema { schema, strict });
                }
                other => {
                    return bad(format!(
                        "response_format.type must be 'text', 'json_object' or 'json_schema', not {other:?}"
                    ))
                }
            }
        }
        if let Some(g) = grammar.filter(|v| !v.is_null()) {
            found.push(match g {
                Value::String(s) if crate::gbnf::looks_like_gbnf(s) => Spec::Gbnf(s.clone()),
                Value::String(s) => Spec::Lark(s.clone()),
                Value::Object(o) => {
                    let text = o.get("grammar").and_then(Value::as_str);
                    match (o.get("type").and_then(Value::as_str), text) {
                        (Some("lark"), Some(t)) => Spec::Lark(t.into()),
                        (Some("gbnf"), Some(t)) => Spec::Gbnf(t.into()),
                        _ => return bad("grammar must be a string or { type: 'lark' | 'gbnf', grammar: string }".into()),
                    }
                }
                _ => return bad("grammar must be a string or { type: 'lark' | 'gbnf', grammar: string }".into()),
            });
        }
        if let Some(r) = regex.filter(|v| !v.is_null()) {
            let Some(r) = r.as_str() else {
                return bad("regex must be a string".into());
            };
            found.push(Spec::Regex(r.into()));
        }
        match found.len() {
            0 => Ok(None),
            1 => Ok(found.pop()),
            _ => bad("give at most one of response_format (JSON), grammar and regex".into()),
        }
    }
}
