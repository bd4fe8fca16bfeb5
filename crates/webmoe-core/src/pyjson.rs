//! JSON text as Python's `json.dumps` writes it, for the `tojson` filter of chat templates.
//!
//! Templates were written against Hugging Face's renderer, whose `tojson` is `json.dumps` with
//! `ensure_ascii=False`: `", "` and `": "` separators, keys in the caller's order, non-ASCII text
//! as it is. minijinja's own `tojson` is HTML-safe (`<` becomes `\u003c`) and compact, so tool
//! definitions would reach the model in a form it never saw in training.

use minijinja::value::{Kwargs, Value as JinjaValue};
use minijinja::{Error, ErrorKind};
use serde_json::Value;

/// How to write: `indent` spaces per level (none: one line), the separators, key order, escapes.
#[derive(Debug, Clone)]
pub struct Style {
    /// Spaces per nesting level; `None` writes one line.
    pub indent: Option<usize>,
    /// Between items (`", "`, or `","` with an indent).
    pub item_sep: String,
    /// Between a key and its value.
    pub key_sep: String,
    /// Sort object keys.
    pub sort_keys: bool,
    /// Escape non-ASCII characters as `\uXXXX`.
    pub ensure_ascii: bool,
}

impl Default for Style {
    fn default() -> Self {
        Style {
            indent: None,
            item_sep: ", ".into(),
            key_sep: ": ".into(),
            sort_keys: false,
            ensure_ascii: false,
        }
    }
}

/// `v` as `json.dumps(v, ...)` with `style` writes it.
pub fn dumps(v: &Value, style: &Style) -> String {
    let mut out = String::new();
    write(v, style, 0, &mut out);
    out
}

fn newline(style: &Style, level: usize, out: &mut String) {
    if let Some(n) = style.indent {
        out.push('\n');
        out.extend(std::iter::repeat_n(' ', n * level));
    }
}

fn string(s: &str, style: &Style, out: &mut String) {
    let quoted = serde_json::to_string(s).unwrap_or_default();
    if !style.ensure_ascii {
        out.push_str(&quoted);
        return;
    }
    for c in quoted.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{u:04x}"));
            }
        }
    }
}

fn write(v: &Value, style: &Style, level: usize, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => out.push_str(&i.to_string()),
            (_, Some(u), _) => out.push_str(&u.to_string()),
            // Python writes floats with a fraction or an exponent: 1.0, 1e+20.
            (_, _, Some(f)) => out
                .push_str(&serde_json::Number::from_f64(f).map_or("NaN".into(), |x| x.to_string())),
            _ => out.push_str(&n.to_string()),
        },
        Value::String(s) => string(s, style, out),
        Value::Array(a) if a.is_empty() => out.push_str("[]"),
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(&style.item_sep);
                }
                newline(style, level + 1, out);
                write(x, style, level + 1, out);
            }
            newline(style, level, out);
            out.push(']');
        }
        Value::Object(o) if o.is_empty() => out.push_str("{}"),
        Value::Object(o) => {
            let mut entries: Vec<(&String, &Value)> = o.iter().collect();
            if style.sort_keys {
                entries.sort_by(|a, b| a.0.cmp(b.0));
            }
            out.push('{');
            for (i, (k, x)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(&style.item_sep);
                }
                newline(style, level + 1, out);
                string(k, style, out);
                out.push_str(&style.key_sep);
                write(x, style, level + 1, out);
            }
            newline(style, level, out);
            out.push('}');
        }
    }
}

/// The `tojson` filter: `value | tojson`, `tojson(indent=2)`, `tojson(2)`, with `ensure_ascii`,
/// `separators` (a pair of strings) and `sort_keys` as Python takes them.
///
/// # Errors
/// A value that is not JSON (a function, a non-finite number), or bad arguments.
pub fn tojson_filter(
    value: &JinjaValue,
    indent: Option<JinjaValue>,
    kwargs: Kwargs,
) -> Result<JinjaValue, Error> {
    let bad = |m: String| Error::new(ErrorKind::InvalidOperation, m);
    let v = serde_json::to_value(value).map_err(|e| bad(format!("tojson: {e}")))?;
    let indent = match indent.or(kwargs.get::<Option<JinjaValue>>("indent")?) {
        None => None,
        Some(i) if i.is_none() || i.is_undefined() => None,
        Some(i) => Some(
            usize::try_from(i.clone())
                .ok()
                .filter(|&n| n <= 16)
                .ok_or_else(|| bad(format!("tojson: indent must be 0 to 16, not {i}")))?,
        ),
    };
    let mut style = Style {
        indent,
        ..Default::default()
    };
    if indent.is_some() {
        style.item_sep = ",".into();
    }
    if let Some(seps) = kwargs.get::<Option<Vec<String>>>("separators")? {
        let [item, key] = <[String; 2]>::try_from(seps)
            .map_err(|_| bad("tojson: separators must be a pair of strings".into()))?;
        style.item_sep = item;
        style.key_sep = key;
    }
    style.sort_keys = kwargs.get::<Option<bool>>("sort_keys")?.unwrap_or(false);
    style.ensure_ascii = kwargs.get::<Option<bool>>("ensure_ascii")?.unwrap_or(false);
    kwargs.assert_all_used()?;
    Ok(JinjaValue::from_safe_string(dumps(&v, &style)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    // Expected texts are what CPython 3's json.dumps prints for the same values.
    #[test]
    fn writes_as_python_json_dumps() {
        let v = json!({"name": "f", "b": [1, 2.5, true, null], "é": "<x>"});
        assert_eq!(
            dumps(&v, &Style::default()),
            r#"{"name": "f", "b": [1, 2.5, true, null], "é": "<x>"}"#
        );
        let indented = Style {
            indent: Some(2),
            item_sep: ",".into(),
            ..Default::default()
        };
        assert_eq!(
            dumps(&json!({"a": [1], "b": {}}), &indented),
            "{\n  \"a\": [\n    1\n  ],\n  \"b\": {}\n}"
        );
        let ascii = Style {
            ensure_ascii: true,
            sort_keys: true,
            ..Default::default()
        };
        assert_eq!(
            dumps(&json!({"z": 1, "a": "é😀"}), &ascii),
            r#"{"a": "\u00e9\ud83d\ude00", "z": 1}"#
        );
    }
}
