//! One launcher per kernel family. Each builds [`Op`](crate::Op)s (pipeline + bind group + dispatch
//! rule) once at load; the executor only encodes them.

pub mod attention;
#[cfg(not(target_arch = "wasm32"))]
pub mod copy;
pub mod elementwise;
pub mod embed;
pub mod fused;
pub mod kv;
pub mod linear;
pub mod moe;
pub mod norm;
pub mod qk;
pub mod quantize;
pub mod rope;
pub mod sampler;

use webmoe_core::quant::GgmlType;

/// The WGSL function that loads a 32-element group's scales for a type.
pub fn hdr_name(ty: GgmlType) -> String {
    format!("hdr_{}", ty.name().to_lowercase())
}

/// The WGSL dequantization function (4 elements) for a type.
pub fn dq4_name(ty: GgmlType) -> String {
    format!("dq4_{}", ty.name().to_lowercase())
}

/// Workgroups needed for `n` items at `per` items each.
pub fn groups(n: u64, per: u64) -> u32 {
    n.div_ceil(per) as u32
}

/// The `ALIGNED` define of the byte helpers: whether every block of rows of `row_bytes` starts on a
/// 4-byte boundary.
pub fn aligned(ty: GgmlType, row_bytes: u64) -> String {
    let yes = ty.block_bytes().is_multiple_of(4) && row_bytes.is_multiple_of(4);
    if yes { "1u" } else { "0u" }.into()
}

/// A boolean define (`1u` / `0u`).
pub fn on(yes: bool) -> String {
    if yes { "1u" } else { "0u" }.into()
}

/// The defines of common/lane_sum.wgsl's subgroup path: `SUBGROUPS`, and `ENABLE_SUBGROUPS` for the
/// `enable subgroups;` line that browsers require and native wgpu (naga) does not accept yet.
pub fn subgroup_defines(gpu: &crate::Gpu) -> [(&'static str, String); 2] {
    let on_ = gpu.variants.subgroups;
    [
        ("SUBGROUPS", on(on_)),
        ("ENABLE_SUBGROUPS", on(on_ && cfg!(target_arch = "wasm32"))),
    ]
}
