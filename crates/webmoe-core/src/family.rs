//! The family table: one row per model family, which both the GGUF mapping (`model.rs`, keyed by
//! `general.architecture`) and the Hugging Face mapping (`hf.rs`, keyed by `model_type`) read. What a
//! row cannot say (values a format stores or lacks) stays with that format's mapping.

use crate::model::{QkNorm, RopeStyle};

/// How a Hugging Face checkpoint names a family's feed-forward tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HfNaming {
    /// `mlp.*` (Llama, Qwen, OLMoE).
    Mlp,
    /// Mixtral `block_sparse_moe.*`.
    Mixtral,
    /// Llama 4 `feed_forward.*`.
    Llama4,
}

/// What sets a family apart: a few switches over the shared forward pass.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Family {
    /// GGUF `general.architecture` (several rows may share one: Mixtral is `llama` with experts).
    pub gguf_arch: &'static str,
    /// Hugging Face `model_type` values.
    pub hf_model_types: &'static [&'static str],
    /// RoPE pairing of GGUF files (llama.cpp's converter permutes Llama's q/k rows to interleaved).
    pub gguf_rope: RopeStyle,
    /// RoPE pairing of Hugging Face checkpoints.
    pub hf_rope: RopeStyle,
    /// Query/key normalization.
    pub qk_norm: QkNorm,
    /// Softmax top-k weights are renormalized when a GGUF file has no `expert_weights_norm`.
    pub gguf_renorm: bool,
    /// Renormalization of a Hugging Face checkpoint: fixed, or `None` for `norm_topk_prob`.
    pub hf_renorm: Option<bool>,
    /// Llama 4: sigmoid routing weighting the expert input, NoPE layers, chunked attention and
    /// temperature tuning.
    pub llama4: bool,
    /// Tensor naming of a Hugging Face checkpoint.
    pub hf_naming: HfNaming,
}

const fn row(gguf_arch: &'static str, hf_model_types: &'static [&'static str]) -> Family {
    Family {
        gguf_arch,
        hf_model_types,
        gguf_rope: RopeStyle::NeoX,
        hf_rope: RopeStyle::NeoX,
        qk_norm: QkNorm::None,
        gguf_renorm: false,
        hf_renorm: None,
        llama4: false,
        hf_naming: HfNaming::Mlp,
    }
}

/// Every family this build runs.
pub const FAMILIES: &[Family] = &[
    // Llama 2/3, SmolLM2, Mistral; GGUF Mixtral is `llama` with experts and renormalizes.
    Family {
        gguf_rope: RopeStyle::Interleaved,
        gguf_renorm: true,
        ..row("llama", &["llama", "mistral"])
    },
    Family {
        gguf_rope: RopeStyle::Interleaved,
        gguf_renorm: true,
        hf_renorm: Some(true),
        hf_naming: HfNaming::Mixtral,
        ..row("llama", &["mixtral"])
    },
    row("qwen2", &["qwen2"]),
    Family {
        qk_norm: QkNorm::PerHead,
        ..row("qwen3", &["qwen3"])
    },
    row("qwen2moe", &["qwen2_moe"]),
    // llama.cpp always renormalizes Qwen3-MoE (its released checkpoints set `norm_topk_prob`).
    Family {
        qk_norm: QkNorm::PerHead,
        gguf_renorm: true,
        ..row("qwen3moe", &["qwen3_moe"])
    },
    Family {
        qk_norm: QkNorm::Full,
        ..row("olmoe", &["olmoe"])
    },
    // HF Llama 4 rotates interleaved pairs itself; the converter does not permute.
    Family {
        gguf_rope: RopeStyle::Interleaved,
        hf_rope: RopeStyle::Interleaved,
        qk_norm: QkNorm::L2AfterRope,
        llama4: true,
        hf_naming: HfNaming::Llama4,
        ..row("llama4", &["llama4_text", "llama4"])
    },
];

/// The family of a GGUF `general.architecture` (the first row with it).
pub fn by_gguf_arch(arch: &str) -> Option<&'static Family> {
    FAMILIES.iter().find(|f| f.gguf_arch == arch)
}

/// The family of a Hugging Face `model_type`.
pub fn by_hf_model_type(model_type: &str) -> Option<&'static Family> {
    FAMILIES
        .iter()
        .find(|f| f.hf_model_types.contains(&model_type))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_supported_name_has_exactly_one_family() {
        for f in FAMILIES {
            assert_eq!(
                by_gguf_arch(f.gguf_arch).map(|g| g.gguf_arch),
                Some(f.gguf_arch)
            );
            for t in f.hf_model_types {
                assert_eq!(
                    by_hf_model_type(t).map(|g| g.hf_model_types),
                    Some(f.hf_model_types)
                );
                let n = FAMILIES
                    .iter()
                    .filter(|g| g.hf_model_types.contains(t))
                    .count();
                assert_eq!(n, 1, "{t}");
            }
        }
    }
}
