//! CPU dequantization of every supported type equals gguf-py's (llama.cpp's Python package) on random
//! blocks (MXFP4 bit for bit, subnormal and large scales included). Reference data: tests/reference/quant_ref.json, made by tests/reference/make_quant_ref.py.

use webmoe_core::quant::{dequantize, GgmlType};

#[test]
fn cpu_dequantization_matches_gguf_py_for_every_type() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/reference/quant_ref.json"
    ))
    .unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut seen = Vec::new();
    for case in v["cases"].as_array().unwrap() {
        let name = case["type"].as_str().unwrap();
        let ty = GgmlType::ALL
            .into_iter()
            .chain([GgmlType::MXFP4])
            .find(|t| t.name() == name)
            .unwrap();
        let exact = case["exact"].as_bool().unwrap_or(false);
        let hex = case["bytes"].as_str().unwrap();
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        let want: Vec<f32> = case["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect();
        let mut got = vec![0f32; want.len()];
        dequantize(ty, &bytes, &mut got);
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                if exact {
                    g.to_bits() == w.to_bits()
                } else {
                    (g - w).abs() <= 1e-6 * w.abs().max(1.0)
                },
                "{name} element {i}: {g} != {w}"
            );
        }
        seen.push(ty);
    }
    assert_eq!(
        seen.len(),
        GgmlType::ALL.len() + 1,
        "every type (and MXFP4) has reference data"
    );
}
