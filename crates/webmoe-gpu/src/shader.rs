//! WGSL sources (embedded from `shaders/`) and a small preprocessor: `#include "file"` (each file once),
//! `#include_for NAME "file" ...` (the files again for a second weight binding: every `w` becomes `NAME`
//! and every function they define `f` becomes `f_NAME`) and `defines`, which replace whole identifiers
//! (e.g. `DQ4` → `dq4_q4_k`, `LANES` → `8u`).

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
    "common/attention_params.wgsl",
    "common/linear_params.wgsl",
    "common/expert_params.wgsl",
    "common/workgroup_sum.wgsl",
    "common/expert_rows.wgsl",
    "common/kv_pair.wgsl",
    "matvec.wgsl",
    "matmul.wgsl",
    "embed.wgsl",
    "rmsnorm.wgsl",
    "rope.wgsl",
    "kv_store.wgsl",
    "attention.wgsl",
    "attention_reduce.wgsl",
    "attention_scores.wgsl",
    "attention_softmax.wgsl",
    "attention_pv.wgsl",
    "elementwise.wgsl",
    "sample.wgsl",
    "copy.wgsl",
    "moe_route.wgsl",
    "matvec_experts.wgsl",
    "matvec_experts_glu.wgsl",
    "moe_combine.wgsl",
    "qk_norm.wgsl",
    "moe_group.wgsl",
    "matmul_experts.wgsl",
    "quantize.wgsl",
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

/// Assembles shader `name`: resolves includes and substitutes `defines` (whole identifiers, not
/// members after a `.`).
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
        if let Some(rest) = line.trim().strip_prefix("#include_for") {
            let mut parts = rest.split_whitespace().map(|p| p.trim_matches('"'));
            let (Some(binding), files) = (parts.next(), parts.collect::<Vec<_>>()) else {
                return Err(GpuError::Shader {
                    name: name.into(),
                    reason: format!("malformed include: {line}"),
                });
            };
            out.push_str(&renamed_copy(name, binding, &files)?);
        } else if let Some(rest) = line.trim().strip_prefix("#include") {
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

/// `files` (with their includes) once more, reading the weight binding `binding` instead of `w`: each
/// function they define gets the suffix `_binding`.
fn renamed_copy(name: &str, binding: &str, files: &[&str]) -> Result<String, GpuError> {
    if files.is_empty() {
        return Err(GpuError::Shader {
            name: name.into(),
            reason: format!("#include_for {binding} names no file"),
        });
    }
    let mut text = String::new();
    let mut seen = Vec::new();
    for f in files {
        include(f, &mut text, &mut seen)?;
    }
    let mut renames: Vec<(&str, String)> = vec![("w", binding.to_string())];
    for line in text.lines() {
        if let Some(rest) = line.trim_start().strip_prefix("fn ") {
            let f = rest.split('(').next().unwrap_or("").trim();
            renames.push((f, format!("{f}_{binding}")));
        }
    }
    Ok(substitute(&text, &renames))
}

fn substitute(src: &str, defines: &[(&str, String)]) -> String {
    if defines.is_empty() {
        return src.to_string();
    }
    let mut out = String::with_capacity(src.len());
    let mut word = String::new();
    // A word right after `.` is a member (`h.w`), never replaced.
    let flush = |word: &mut String, out: &mut String| {
        let member = out.ends_with('.');
        match defines.iter().find(|(k, _)| *k == word.as_str()) {
            Some((_, v)) if !member => out.push_str(v),
            _ => out.push_str(word),
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
                ("WG", "64u".into()),
                ("LANES", "8u".into()),
                ("ACCUMULATE", "0u".into()),
            ],
        )
        .unwrap();
        assert_eq!(s.matches("fn rw(").count(), 1);
        assert!(s.contains("dq4_q8_0(rows.x, g, i, h0)"));
        assert!(s.contains("64u / 8u"));
        assert!(!s.contains("#include"));
    }

    /// Every shader variant the launchers build parses and validates without any optional capability
    /// (no shader-f16, no subgroups): the baseline runs on every WebGPU adapter.
    #[cfg(not(target_arch = "wasm32"))]
    #[test]
    fn every_shader_variant_validates_without_optional_features() {
        use webmoe_core::quant::GgmlType;
        use wgpu::naga;
        let check = |name: &str, defines: &[(&str, String)]| {
            let src = preprocess(name, defines).unwrap();
            let module = naga::front::wgsl::parse_str(&src)
                .unwrap_or_else(|e| panic!("{name} {defines:?}: {}", e.emit_to_string(&src)));
            // unpack2x16float/pack2x16float are core WGSL; naga lists them as a capability only
            // because some GL targets lack them. Nothing else (no f16 type, no subgroups) is allowed.
            naga::valid::Validator::new(
                naga::valid::ValidationFlags::all(),
                naga::valid::Capabilities::SHADER_FLOAT16_IN_FLOAT32,
            )
            .validate(&module)
            .unwrap_or_else(|e| panic!("{name} {defines:?}: {e:?}"));
        };
        for ty in GgmlType::ALL {
            let (h, d) = (crate::kernels::hdr_name(ty), crate::kernels::dq4_name(ty));
            for aligned in ["0u", "1u"] {
                for acc in ["0u", "1u"] {
                    let base = [
                        ("HDR", h.clone()),
                        ("DQ4", d.clone()),
                        ("ALIGNED", aligned.into()),
                        ("ACCUMULATE", acc.into()),
                    ];
                    check("matmul.wgsl", &base);
                    for (lanes, rpt, wg) in [(1, 1, 8), (1, 4, 8), (16, 1, 64)] {
                        let mut v = base.to_vec();
                        v.push(("WG", format!("{wg}u")));
                        v.push(("LANES", format!("{lanes}u")));
                        v.push(("RPT", format!("{rpt}u")));
                        check("matvec.wgsl", &v);
                    }
                }
                for per_slot in ["0u", "1u"] {
                    for shader in ["matvec_experts.wgsl", "matmul_experts.wgsl"] {
                        check(
                            shader,
                            &[
                                ("WG", "8u".into()),
                                ("HDR", h.clone()),
                                ("DQ4", d.clone()),
                                ("ALIGNED", aligned.into()),
                                ("X_PER_SLOT", per_slot.into()),
                            ],
                        );
                    }
                }
                check(
                    "embed.wgsl",
                    &[
                        ("HDR", h.clone()),
                        ("DQ4", d.clone()),
                        ("ALIGNED", aligned.into()),
                    ],
                );
            }
        }
        for kv in ["0u", "1u"] {
            check("kv_store.wgsl", &[("KV_F16", kv.into())]);
            check("attention.wgsl", &[("KV_F16", kv.into())]);
            check("attention_scores.wgsl", &[("KV_F16", kv.into())]);
            check("attention_pv.wgsl", &[("KV_F16", kv.into())]);
        }
        for ty in GgmlType::ALL {
            for per_slot in ["0u", "1u"] {
                check(
                    "matvec_experts_glu.wgsl",
                    &[
                        ("WG", "64u".into()),
                        ("HDR", crate::kernels::hdr_name(ty)),
                        ("DQ4", crate::kernels::dq4_name(ty)),
                        ("HDR_UP", format!("{}_w_up", crate::kernels::hdr_name(ty))),
                        ("DQ4_UP", format!("{}_w_up", crate::kernels::dq4_name(ty))),
                        ("ALIGNED", "0u".into()),
                        ("X_PER_SLOT", per_slot.into()),
                    ],
                );
            }
        }
        for name in [
            "attention_reduce.wgsl",
            "attention_softmax.wgsl",
            "rmsnorm.wgsl",
            "rope.wgsl",
            "elementwise.wgsl",
            "sample.wgsl",
            "copy.wgsl",
            "moe_combine.wgsl",
            "qk_norm.wgsl",
            "moe_group.wgsl",
        ] {
            check(name, &[]);
        }
        for mode in ["0u", "1u"] {
            check(
                "moe_route.wgsl",
                &[
                    ("N_EXPERTS", "128u".into()),
                    ("K_USED", "8u".into()),
                    ("MODE", mode.into()),
                    ("RENORM", mode.into()),
                ],
            );
        }
        for src in [GgmlType::F32, GgmlType::F16, GgmlType::BF16] {
            for target in ["0u", "1u", "2u"] {
                check(
                    "quantize.wgsl",
                    &[
                        ("SRC", crate::kernels::dq4_name(src)),
                        ("ALIGNED", "1u".into()),
                        ("TARGET", target.into()),
                    ],
                );
            }
        }
    }

    #[test]
    fn include_for_renames_the_binding_and_the_functions() {
        let s = preprocess("matvec_experts_glu.wgsl", &[]).unwrap();
        assert_eq!(s.matches("fn rw(").count(), 1);
        assert_eq!(s.matches("fn rw_w_up(").count(), 1);
        assert!(s.contains("return w_up[off >> 2u];"));
        assert!(s.contains("fn dq4_q4_k_w_up("));
        assert!(s.contains("let dm = unpack2x16float(rw_w_up(b));"));
        assert!(s.contains("unpack4x8unorm((w_up[a] & mask) ^ flip)"));
    }

    #[test]
    fn unknown_shader_is_an_error() {
        assert!(matches!(
            preprocess("nope.wgsl", &[]),
            Err(GpuError::Shader { .. })
        ));
    }
}
