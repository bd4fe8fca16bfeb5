//! WGSL sources (embedded from `shaders/`) and a small preprocessor: `#include "file"` (each file once)
//! and `defines`, which replace whole identifiers (e.g. `DQ4` → `dq4_q4_k`, `LANES` → `8u`).

use crate::GpuError;

macro_rules! sources {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("../../../shaders/", $name)))),*]
    };
}

const SOURCES: &[(&str, &str)] = sources![
    "common/bytes.wgsl",
    "common/dequant.wgsl",
    "common/step.wgsl",
    "matvec.wgsl",
    "matmul.wgsl",
    "embed.wgsl",
    "rmsnorm.wgsl",
    "rope.wgsl",
    "kv_store.wgsl",
    "attention.wgsl",
    "attention_reduce.wgsl",
    "elementwise.wgsl",
    "sample.wgsl",
    "copy.wgsl",
];

fn source(name: &str) -> Result<&'static str, GpuError> {
    SOURCES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, s)| *s)
        .ok_or_else(|| GpuError::Shader {
            name: name.into(),
            reason: "no such shader".into(),
        })
}

/// Assembles shader `name`: resolves includes and substitutes `defines`.
///
/// # Errors
/// [`GpuError::Shader`] for an unknown file or a malformed include line.
pub fn preprocess(name: &str, defines: &[(&str, String)]) -> Result<String, GpuError> {
    let mut out = String::new();
    let mut seen = Vec::new();
    include(name, &mut out, &mut seen)?;
    Ok(substitute(&out, defines))
}

fn include(name: &str, out: &mut String, seen: &mut Vec<String>) -> Result<(), GpuError> {
    if seen.iter().any(|s| s == name) {
        return Ok(());
    }
    seen.push(name.to_string());
    for line in source(name)?.lines() {
        if let Some(rest) = line.trim().strip_prefix("#include") {
            let file = rest.trim().trim_matches('"');
            if file.is_empty() {
                return Err(GpuError::Shader {
                    name: name.into(),
                    reason: format!("malformed include: {line}"),
                });
            }
            include(file, out, seen)?;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    Ok(())
}

fn substitute(src: &str, defines: &[(&str, String)]) -> String {
    if defines.is_empty() {
        return src.to_string();
    }
    let mut out = String::with_capacity(src.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        match defines.iter().find(|(k, _)| *k == word.as_str()) {
            Some((_, v)) => out.push_str(v),
            None => out.push_str(word),
        }
        word.clear();
    };
    for c in src.chars() {
        if c.is_ascii_alphanumeric() || c == '_' {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn includes_once_and_substitutes_whole_words() {
        let s = preprocess(
            "matvec.wgsl",
            &[
                ("HDR", "hdr_q8_0".into()),
                ("DQ4", "dq4_q8_0".into()),
                ("ALIGNED", "0u".into()),
                ("LANES", "8u".into()),
                ("ACCUMULATE", "0u".into()),
            ],
        )
        .unwrap();
        assert_eq!(s.matches("fn rw(").count(), 1);
        assert!(s.contains("dq4_q8_0(row, g, i, h)"));
        assert!(s.contains("64u / 8u"));
        assert!(!s.contains("#include"));
    }

    #[test]
    fn unknown_shader_is_an_error() {
        assert!(matches!(
            preprocess("nope.wgsl", &[]),
            Err(GpuError::Shader { .. })
        ));
    }
}
