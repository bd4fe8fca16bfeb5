//! The kernels' uniform parameter blocks: one `Pod` struct per WGSL `struct`, field for field as the
//! shader declares it. A test parses each WGSL struct with naga and checks names, types, offsets and
//! size against the Rust struct, so a launcher cannot pass its words in the wrong order.

/// A field's WGSL type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scalar {
    /// `u32`.
    U32,
    /// `f32`.
    F32,
}

/// A uniform block as one WGSL struct declares it.
pub trait Uniform: bytemuck::Pod {
    /// The file under `shaders/` that declares the struct.
    const SOURCE: &'static str;
    /// The WGSL struct's name.
    const STRUCT: &'static str;
    /// `(name, type, byte offset)` of each field, in order.
    fn fields() -> Vec<(&'static str, Scalar, usize)>;
}

macro_rules! scalar {
    (u32) => {
        Scalar::U32
    };
    (f32) => {
        Scalar::F32
    };
}

macro_rules! uniforms {
    ($($(#[$doc:meta])* $name:ident = $src:literal $st:literal { $($f:ident: $t:ident),* $(,)? })*) => {
        $(
            $(#[$doc])*
            #[repr(C)]
            #[derive(Debug, Clone, Copy, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
            #[allow(missing_docs)]
            pub struct $name { $(pub $f: $t),* }

            impl Uniform for $name {
                const SOURCE: &'static str = $src;
                const STRUCT: &'static str = $st;
                fn fields() -> Vec<(&'static str, Scalar, usize)> {
                    vec![$((stringify!($f), scalar!($t), std::mem::offset_of!($name, $f))),*]
                }
            }
        )*

        /// Every uniform: Rust name, WGSL file, WGSL struct, fields, size in bytes.
        #[cfg(test)]
        #[allow(clippy::type_complexity)]
        pub(crate) fn all() -> Vec<(&'static str, &'static str, &'static str, Vec<(&'static str, Scalar, usize)>, usize)> {
            vec![$((stringify!($name), $src, $st, $name::fields(), std::mem::size_of::<$name>())),*]
        }
    };
}

uniforms! {
    /// The per-call step block every token-dependent kernel reads.
    StepParams = "common/step.wgsl" "Step" { n_tokens: u32, pos0: u32, n_splits: u32, pad: u32 }
    /// Quantized mat-vec and mat-mul (`matvec.wgsl`, `matmul.wgsl`, `matmul_tiled.wgsl`).
    LinearParams = "common/linear_params.wgsl" "Params" {
        k: u32, n_rows: u32, row_bytes: u32, out_row0: u32,
        out_stride: u32, x_stride: u32, x_offset: u32, y_offset: u32,
    }
    /// Expert mat-vec and mat-mul over the stacked expert rows.
    ExpertParams = "common/expert_params.wgsl" "Params" {
        k: u32, rows_per_expert: u32, row_bytes: u32, shard_row0: u32,
        shard_rows: u32, n_used: u32, x_stride: u32, pad: u32,
    }
    /// Attention (one-pass and split kernels).
    AttentionParams = "common/attention_params.wgsl" "Params" {
        n_heads: u32, n_kv_heads: u32, head_dim: u32, max_pos: u32,
        scale: f32, chunk: u32, pad1: u32, pad2: u32,
    }
    /// K/V store into the cache.
    KvStoreParams = "kv_store.wgsl" "Params" { n_kv_heads: u32, head_dim: u32, max_pos: u32, pad: u32 }
    /// The GPU sampler.
    SampleParams = "sample.wgsl" "Params" {
        vocab: u32, n_recent: u32, top_k: u32, counter: u32,
        temperature: f32, top_p: f32, min_p: f32, penalty: f32,
        seed_lo: u32, seed_hi: u32, has_mask: u32, presence: f32,
        frequency: f32, pad0: u32, pad1: u32, pad2: u32,
    }
    /// Quantization on load.
    QuantizeParams = "quantize.wgsl" "Params" { k: u32, src_row_bytes: u32, n_blocks: u32, dst_word0: u32 }
    /// RoPE.
    RopeParams = "rope.wgsl" "Params" {
        n_heads: u32, n_kv_heads: u32, head_dim: u32, rope_dim: u32,
        neox: u32, table_len: u32, pad0: u32, pad1: u32,
    }
    /// q/k norm and attention temperature.
    QkNormParams = "qk_norm.wgsl" "Params" {
        q_rows: u32, k_rows: u32, q_len: u32, k_len: u32,
        mode: u32, eps: f32, floor_scale: f32, attn_scale: f32,
    }
    /// RMSNorm.
    RmsNormParams = "rmsnorm.wgsl" "Params" { n: u32, last_only: u32, eps: f32, pad: u32 }
    /// Grouping tokens by expert.
    MoeGroupParams = "moe_group.wgsl" "Params" { n_experts: u32, k: u32, pad0: u32, pad1: u32 }
    /// The fused norm + gate/up mat-vec.
    GluParams = "matvec_glu.wgsl" "Params" {
        k: u32, eps: f32, rows: u32, g_row_bytes: u32,
        u_row_bytes: u32, pad0: u32, pad1: u32, pad2: u32,
    }
    /// Weighted sum of the experts' outputs.
    MoeCombineParams = "moe_combine.wgsl" "Params" { n: u32, k: u32, use_weights: u32, pad: u32 }
    /// Embedding lookup.
    EmbedParams = "embed.wgsl" "Params" { hidden: u32, row_bytes: u32, row0: u32, n_rows: u32 }
    /// Element-wise ops (residual add, SwiGLU).
    ElementwiseParams = "elementwise.wgsl" "Params" { n: u32, pad0: u32, pad1: u32, pad2: u32 }
    /// The fused norm + q/k/v mat-vec.
    QkvParams = "matvec_qkv.wgsl" "Params" {
        k: u32, eps: f32, q_rows: u32, kv_rows: u32, q_row_bytes: u32,
        k_row_bytes: u32, v_row_bytes: u32, q_groups: u32, kv_groups: u32,
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use wgpu::naga;

    /// The text of `struct NAME { … }` in `source`.
    fn struct_text(source: &str, name: &str) -> String {
        let start = source
            .find(&format!("struct {name} {{"))
            .unwrap_or_else(|| panic!("no struct {name}"));
        let end = start + source[start..].find('}').expect("closing brace") + 1;
        source[start..end].to_string()
    }

    #[test]
    fn every_uniform_matches_its_wgsl_struct() {
        let declared = crate::shader::struct_declarations();
        let mut covered = Vec::new();
        for (rust, file, st, fields, size) in all() {
            let src = crate::shader::source(file).unwrap();
            let text = struct_text(src, st);
            let module = naga::front::wgsl::parse_str(&text)
                .unwrap_or_else(|e| panic!("{file}: {}", e.emit_to_string(&text)));
            let (_, ty) = module
                .types
                .iter()
                .find(|(_, t)| t.name.as_deref() == Some(st))
                .expect("the struct");
            let naga::TypeInner::Struct { members, span } = &ty.inner else {
                panic!("{file}: {st} is not a struct")
            };
            assert_eq!(*span as usize, size, "{rust} vs {file} {st}: size");
            assert_eq!(members.len(), fields.len(), "{rust} vs {file} {st}: fields");
            for (m, (name, scalar, offset)) in members.iter().zip(&fields) {
                let wgsl = match module.types[m.ty].inner {
                    naga::TypeInner::Scalar(naga::Scalar::U32) => Scalar::U32,
                    naga::TypeInner::Scalar(naga::Scalar::F32) => Scalar::F32,
                    ref other => panic!("{file} {st}.{:?}: {other:?}", m.name),
                };
                assert_eq!(m.name.as_deref(), Some(*name), "{rust} vs {file} {st}");
                assert_eq!(wgsl, *scalar, "{rust}.{name} vs {file}");
                assert_eq!(
                    m.offset as usize, *offset,
                    "{rust}.{name} vs {file}: offset"
                );
            }
            covered.push((file, st));
        }
        // Every uniform struct a shader declares has its Rust twin.
        for (file, st) in declared {
            assert!(
                covered.contains(&(file, st)),
                "{file} declares struct {st} with no Rust uniform"
            );
        }
    }
}
