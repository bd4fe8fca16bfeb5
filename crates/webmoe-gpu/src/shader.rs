//! WGSL sources (embedded from `shaders/`) and a small preprocessor: `#include "file"` (each file once),
//! `#include_for NAME "file" ...` (the files again for a second weight binding: every `w` becomes `NAME`
//! and every function they define `f` becomes `f_NAME`, as do `ALIGNED`, `HDR` and `DQ4`), `#if NAME` /
//! `#else` / `#endif` (lines kept when define `NAME` is `1u`: optional language features such as
//! `enable subgroups;` must not appear in a module that does not use them), and `defines`, which
//! replace whole identifiers (e.g. `DQ4` → `dq4_q4_k`, `LANES` → `8u`).

use crate::GpuError;

/// Every file under `shaders/`, by its path there (listed by `build.rs`).
const SOURCES: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/shaders.rs"));

/// The uniform structs (`Params`, `Step`) the shaders declare: `(file, struct name)`.
#[cfg(test)]
pub(crate) fn struct_declarations() -> Vec<(&'static str, &'static str)> {
    let mut out = Vec::new();
    for (file, src) in SOURCES {
        for name in ["Params", "Step"] {
            if src.contains(&format!("\nstruct {name} {{"))
                || src.starts_with(&format!("struct {name} {{"))
            {
                out.push((*file, name));
            }
        }
    }
    out
}

/// The source of `shaders/NAME`.
///
/// # Errors
/// [`GpuError::Shader`] when there is no such file.
pub(crate) fn source(name: &str) -> Result<&'static str, GpuError> {
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
    include(name, defines, &mut out, &mut seen)?;
    Ok(substitute(&out, defines))
}

/// Whether define `name` is on (`1u`).
fn is_on(defines: &[(&str, String)], name: &str) -> bool {
    defines.iter().any(|(k, v)| *k == name && v == "1u")
}

fn include(
    name: &str,
    defines: &[(&str, String)],
    out: &mut String,
    seen: &mut Vec<String>,
) -> Result<(), GpuError> {
    if seen.iter().any(|s| s == name) {
        return Ok(());
    }
    seen.push(name.to_string());
    let malformed = |line: &str| GpuError::Shader {
        name: name.into(),
        reason: format!("malformed conditional: {line}"),
    };
    // One entry per open `#if`: whether its lines are kept.
    let mut kept: Vec<bool> = Vec::new();
    for line in source(name)?.lines() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("#if ") {
            let outer = kept.iter().all(|k| *k);
            kept.push(outer && is_on(defines, rest.trim()));
            continue;
        } else if t == "#else" {
            let k = kept.pop().ok_or_else(|| malformed(line))?;
            let outer = kept.iter().all(|k| *k);
            kept.push(outer && !k);
            continue;
        } else if t == "#endif" {
            kept.pop().ok_or_else(|| malformed(line))?;
            continue;
        }
        if !kept.iter().all(|k| *k) {
            continue;
        }
        if let Some(rest) = line.trim().strip_prefix("#include_for") {
            let mut parts = rest.split_whitespace().map(|p| p.trim_matches('"'));
            let (Some(binding), files) = (parts.next(), parts.collect::<Vec<_>>()) else {
                return Err(GpuError::Shader {
                    name: name.into(),
                    reason: format!("malformed include: {line}"),
                });
            };
            out.push_str(&renamed_copy(name, binding, &files, defines)?);
        } else if let Some(rest) = line.trim().strip_prefix("#include") {
            let file = rest.trim().trim_matches('"');
            if file.is_empty() {
                return Err(GpuError::Shader {
                    name: name.into(),
                    reason: format!("malformed include: {line}"),
                });
            }
            include(file, defines, out, seen)?;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    if !kept.is_empty() {
        return Err(malformed("#if without #endif"));
    }
    Ok(())
}

/// `files` (with their includes) once more, reading the weight binding `binding` instead of `w`: each
/// function they define gets the suffix `_binding`.
fn renamed_copy(
    name: &str,
    binding: &str,
    files: &[&str],
    defines: &[(&str, String)],
) -> Result<String, GpuError> {
    if files.is_empty() {
        return Err(GpuError::Shader {
            name: name.into(),
            reason: format!("#include_for {binding} names no file"),
        });
    }
    let mut text = String::new();
    let mut seen = Vec::new();
    for f in files {
        include(f, defines, &mut text, &mut seen)?;
    }
    let mut renames: Vec<(&str, String)> = vec![("w", binding.to_string())];
    for d in ["ALIGNED", "HDR", "DQ4"] {
        renames.push((d, format!("{d}_{binding}")));
    }
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
        // unpack2x16float/pack2x16float are core WGSL; naga lists them as a capability only because
        // some GL targets lack them. Nothing else (no f16 type, no subgroups) is allowed.
        let check = |name: &str, defines: &[(&str, String)]| {
            validate(
                name,
                defines,
                naga::valid::Capabilities::SHADER_FLOAT16_IN_FLOAT32,
            )
        };
        for ty in GgmlType::ALL {
            let (h, d) = (crate::kernels::hdr_name(ty), crate::kernels::dq4_name(ty));
            for variant in variant_defines(false) {
                let mut v = type_defines(&h, &d, "");
                v.extend(variant.clone());
                v.push(("ACCUMULATE", "1u".into()));
                v.push(("WT", "f32".into()));
                check("matmul_tiled.wgsl", &v);
                check(
                    "matvec_qkv.wgsl",
                    &fused_defines(&h, &d, &["_w_k", "_w_v"], &variant),
                );
                check(
                    "matvec_glu.wgsl",
                    &fused_defines(&h, &d, &["_w_up"], &variant),
                );
            }
        }
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
                        v.extend(variant_defines(false).remove(0));
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
                        ("ALIGNED_w_up", "0u".into()),
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

    #[cfg(not(target_arch = "wasm32"))]
    fn validate(name: &str, defines: &[(&str, String)], caps: wgpu::naga::valid::Capabilities) {
        use wgpu::naga;
        let src = preprocess(name, defines).unwrap();
        let module = naga::front::wgsl::parse_str(&src)
            .unwrap_or_else(|e| panic!("{name} {defines:?}: {}", e.emit_to_string(&src)));
        naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps)
            .subgroup_stages(naga::valid::ShaderStages::COMPUTE)
            .subgroup_operations(naga::valid::SubgroupOperationSet::all())
            .validate(&module)
            .unwrap_or_else(|e| panic!("{name} {defines:?}: {e:?}"));
    }

    /// HDR/DQ4/ALIGNED of one type for the weight binding with `suffix` (`""`, `"_w_k"` ...).
    #[cfg(not(target_arch = "wasm32"))]
    fn type_defines(h: &str, d: &str, suffix: &str) -> Vec<(&'static str, String)> {
        let key = |k: &str| -> &'static str { Box::leak(format!("{k}{suffix}").into_boxed_str()) };
        vec![
            (key("HDR"), format!("{h}{suffix}")),
            (key("DQ4"), format!("{d}{suffix}")),
            (key("ALIGNED"), "0u".into()),
        ]
    }

    /// The subgroup and f16 defines: the baseline alone, or with `features` every combination.
    #[cfg(not(target_arch = "wasm32"))]
    fn variant_defines(features: bool) -> Vec<Vec<(&'static str, String)>> {
        let on = |b: bool| if b { "1u" } else { "0u" }.to_string();
        let combos: &[(bool, bool)] = if features {
            &[(true, false), (false, true), (true, true)]
        } else {
            &[(false, false)]
        };
        combos
            .iter()
            .map(|&(sg, f16)| {
                vec![
                    ("SUBGROUPS", on(sg)),
                    ("ENABLE_SUBGROUPS", "0u".into()),
                    ("F16", on(f16)),
                ]
            })
            .collect()
    }

    #[cfg(not(target_arch = "wasm32"))]
    fn fused_defines(
        h: &str,
        d: &str,
        others: &[&str],
        variant: &[(&'static str, String)],
    ) -> Vec<(&'static str, String)> {
        let mut v = type_defines(h, d, "");
        for o in others {
            v.extend(type_defines(h, d, o));
        }
        v.extend(variant.iter().cloned());
        v.push(("WG", "64u".into()));
        v.push(("LANES", "16u".into()));
        v
    }

    /// The variants that use optional features (subgroups, shader-f16) validate with them.
    #[cfg(not(target_arch = "wasm32"))]
    #[test]
    fn feature_variants_validate_with_their_features() {
        use webmoe_core::quant::GgmlType;
        use wgpu::naga::valid::Capabilities as C;
        let caps = C::SHADER_FLOAT16_IN_FLOAT32 | C::SUBGROUP | C::SHADER_FLOAT16;
        for ty in GgmlType::ALL {
            let (h, d) = (crate::kernels::hdr_name(ty), crate::kernels::dq4_name(ty));
            for variant in variant_defines(true) {
                let f16 = variant.iter().any(|(k, v)| *k == "F16" && v == "1u");
                let mut v = type_defines(&h, &d, "");
                v.extend(variant.clone());
                v.push(("ACCUMULATE", "0u".into()));
                v.push(("WT", if f16 { "f16" } else { "f32" }.into()));
                validate("matmul_tiled.wgsl", &v, caps);
                let mut mv = type_defines(&h, &d, "");
                mv.extend(variant.clone());
                mv.extend([
                    ("WG", "64u".into()),
                    ("LANES", "16u".into()),
                    ("RPT", "1u".into()),
                    ("ACCUMULATE", "1u".into()),
                ]);
                validate("matvec.wgsl", &mv, caps);
                validate(
                    "matvec_qkv.wgsl",
                    &fused_defines(&h, &d, &["_w_k", "_w_v"], &variant),
                    caps,
                );
                validate(
                    "matvec_glu.wgsl",
                    &fused_defines(&h, &d, &["_w_up"], &variant),
                    caps,
                );
            }
        }
    }

    #[test]
    fn if_else_keeps_the_lines_of_the_define() {
        let base = [("WG", "64u".to_string()), ("LANES", "16u".to_string())];
        let with = |sg: &str| {
            let mut d = base.to_vec();
            d.push(("SUBGROUPS", sg.to_string()));
            d.push(("ENABLE_SUBGROUPS", sg.to_string()));
            d.push(("ACCUMULATE", "0u".into()));
            d.push(("RPT", "1u".into()));
            d.push(("HDR", "hdr_q8_0".into()));
            d.push(("DQ4", "dq4_q8_0".into()));
            d.push(("ALIGNED", "0u".into()));
            preprocess("matvec.wgsl", &d).unwrap()
        };
        let (a, b) = (with("1u"), with("0u"));
        assert!(a.contains("enable subgroups;") && a.contains("subgroupShuffleXor"));
        assert!(!a.contains("var<workgroup> lane_parts"));
        assert!(!b.contains("enable subgroups;") && !b.contains("subgroupShuffleXor"));
        assert!(b.contains("var<workgroup> lane_parts"));
        assert!(!a.contains("#if") && !b.contains("#else") && !b.contains("#endif"));
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
