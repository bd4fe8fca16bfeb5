//! llama.cpp's GBNF grammar format translated to llguidance's Lark dialect: `name ::= …` rules (`root`
//! is the start), strings, character classes (`[a-z]`, `[^"\\]`), `.`, groups, alternatives and the
//! repetitions `* + ? {m} {m,} {m,n}`; `#` comments. Rules may span lines; each becomes one Lark line.
//! Strings are re-quoted as JSON strings and character classes become regexes with every character
//! written as `\x{…}`, so no character of the source can change the meaning of the output.

/// Whether `text` reads as GBNF rather than Lark (it defines a rule with `::=`).
pub fn looks_like_gbnf(text: &str) -> bool {
    text.lines()
        .any(|l| l.split('#').next().unwrap_or("").contains("::="))
}

/// Translates a GBNF grammar.
///
/// # Errors
/// A message with the byte offset of what is not GBNF, or a grammar without a `root` rule.
pub fn to_lark(src: &str) -> Result<String, String> {
    let chars: Vec<(usize, char)> = src.char_indices().collect();
    let mut i = 0;
    let mut out = String::new();
    let mut has_root = false;
    let at = |i: usize| chars.get(i).map_or(src.len(), |c| c.0);
    while i < chars.len() {
        let c = chars[i].1;
        match c {
            '#' => {
                while i < chars.len() && chars[i].1 != '\n' {
                    i += 1;
                }
            }
            c if c.is_whitespace() => i += 1,
            c if c.is_ascii_alphanumeric() || c == '-' || c == '_' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].1.is_ascii_alphanumeric() || matches!(chars[i].1, '-' | '_'))
                {
                    i += 1;
                }
                let name: String = chars[start..i].iter().map(|c| c.1).collect();
                let mut j = i;
                while j < chars.len() && chars[j].1.is_whitespace() {
                    j += 1;
                }
                let defines = src[at(j)..].starts_with("::=");
                if defines {
                    has_root |= name == "root";
                    if !out.is_empty() {
                        out.push('\n');
                    }
                    out.push_str(&rule_name(&name));
                    out.push_str(": ");
                    i = j + 3;
                } else {
                    out.push_str(&rule_name(&name));
                    out.push(' ');
                }
            }
            '"' => {
                let (text, next) =
                    string(&chars, i + 1).map_err(|e| format!("{e} at byte {}", at(i)))?;
                out.push_str(&serde_json::to_string(&text).map_err(|e| e.to_string())?);
                out.push(' ');
                i = next;
            }
            '[' => {
                let (class, next) =
                    class(&chars, i + 1).map_err(|e| format!("{e} at byte {}", at(i)))?;
                out.push_str(&class);
                out.push(' ');
                i = next;
            }
            '.' => {
                out.push_str("/(?s:.)/ ");
                i += 1;
            }
            '(' | ')' | '|' | '*' | '+' | '?' => {
                out.push(c);
                out.push(' ');
                i += 1;
            }
            '{' => {
                let start = i;
                while i < chars.len() && chars[i].1 != '}' {
                    i += 1;
                }
                let body: String = chars[start + 1..i.min(chars.len())]
                    .iter()
                    .map(|c| c.1)
                    .collect();
                let ok = !body.is_empty()
                    && body.split(',').count() <= 2
                    && body.split(',').enumerate().all(|(k, n)| {
                        n.trim().parse::<u32>().is_ok() || (k == 1 && n.trim().is_empty())
                    });
                if i >= chars.len() || !ok {
                    return Err(format!("bad repetition {{{body}}} at byte {}", at(start)));
                }
                out.push('{');
                out.push_str(&body.replace(' ', ""));
                out.push_str("} ");
                i += 1;
            }
            other => return Err(format!("unexpected {other:?} at byte {}", at(i))),
        }
    }
    if !has_root {
        return Err("a GBNF grammar needs a `root ::= …` rule".into());
    }
    Ok(out)
}

/// Lark rule names are lowercase; prefixing keeps `start` (the Lark entry) free for `root`.
fn rule_name(gbnf: &str) -> String {
    if gbnf == "root" {
        return "start".into();
    }
    let mut s = String::from("r_");
    for c in gbnf.chars() {
        match c {
            '-' => s.push_str("_d"),
            '_' => s.push_str("__"),
            c if c.is_ascii_uppercase() => {
                s.push_str("_u");
                s.push(c.to_ascii_lowercase());
            }
            c => s.push(c),
        }
    }
    s
}

/// One escaped or plain character at `i`; returns it and the next index.
fn escaped(chars: &[(usize, char)], i: usize) -> Result<(char, usize), String> {
    let Some(&(_, c)) = chars.get(i) else {
        return Err("unterminated".into());
    };
    if c != '\\' {
        return Ok((c, i + 1));
    }
    let Some(&(_, e)) = chars.get(i + 1) else {
        return Err("unterminated escape".into());
    };
    let hex = |n: usize| -> Result<(char, usize), String> {
        let digits: String = chars
            .get(i + 2..i + 2 + n)
            .ok_or("short escape")?
            .iter()
            .map(|c| c.1)
            .collect();
        let v =
            u32::from_str_radix(&digits, 16).map_err(|_| format!("bad escape \\{e}{digits}"))?;
        Ok((
            char::from_u32(v).ok_or(format!("bad code point {v:#x}"))?,
            i + 2 + n,
        ))
    };
    match e {
        'n' => Ok(('\n', i + 2)),
        'r' => Ok(('\r', i + 2)),
        't' => Ok(('\t', i + 2)),
        'x' => hex(2),
        'u' => hex(4),
        'U' => hex(8),
        '\\' | '"' | '[' | ']' | '-' | '^' => Ok((e, i + 2)),
        other => Err(format!("unknown escape \\{other}")),
    }
}

fn string(chars: &[(usize, char)], mut i: usize) -> Result<(String, usize), String> {
    let mut s = String::new();
    loop {
        match chars.get(i) {
            None => return Err("unterminated string".into()),
            Some((_, '"')) => return Ok((s, i + 1)),
            _ => {
                let (c, next) = escaped(chars, i)?;
                s.push(c);
                i = next;
            }
        }
    }
}

fn class(chars: &[(usize, char)], mut i: usize) -> Result<(String, usize), String> {
    let mut out = String::from("/[");
    if chars.get(i).is_some_and(|c| c.1 == '^') {
        out.push('^');
        i += 1;
    }
    let lit = |c: char| format!("\\x{{{:x}}}", c as u32);
    loop {
        match chars.get(i) {
            None => return Err("unterminated character class".into()),
            Some((_, ']')) => {
                out.push_str("]/");
                return Ok((out, i + 1));
            }
            _ => {
                let (lo, next) = escaped(chars, i)?;
                i = next;
                out.push_str(&lit(lo));
                if chars.get(i).is_some_and(|c| c.1 == '-')
                    && chars.get(i + 1).is_some_and(|c| c.1 != ']')
                {
                    let (hi, next) = escaped(chars, i + 1)?;
                    if hi < lo {
                        return Err(format!("empty range {lo:?}-{hi:?}"));
                    }
                    out.push('-');
                    out.push_str(&lit(hi));
                    i = next;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_strings_classes_and_repetitions_translate() {
        let g = r#"
            # a comment
            root ::= "yes" | "no" ws-tail
            ws-tail ::= [ \t]{1,3}
                digit+
            digit ::= [0-9] .?
        "#;
        assert!(looks_like_gbnf(g));
        let lark = to_lark(g).unwrap();
        let want = "start: \"yes\" | \"no\" r_ws_dtail \nr_ws_dtail: /[\\x{20}\\x{9}]/ {1,3} r_digit + \nr_digit: /[\\x{30}-\\x{39}]/ /(?s:.)/ ? ";
        assert_eq!(lark, want);
    }

    #[test]
    fn bad_gbnf_names_the_place() {
        assert!(to_lark("root ::= \"a")
            .unwrap_err()
            .contains("unterminated"));
        assert!(to_lark("other ::= \"a\"").unwrap_err().contains("root"));
        assert!(to_lark("root ::= [z-a]")
            .unwrap_err()
            .contains("empty range"));
        assert!(to_lark("root ::= \"a\"{x}")
            .unwrap_err()
            .contains("repetition"));
    }
}
