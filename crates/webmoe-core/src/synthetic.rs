//! Tiny random Llama models as GGUF bytes (tests and examples; no tokenizer needed for id-level runs).

use crate::gguf::writer::GgufWriter;
use crate::gguf::GgufValue;
use crate::quant::{random_blocks, GgmlType};

/// A reproducible stream of pseudo-random u32s (xorshift) for random weights.
pub fn random_u32s(seed: u64) -> impl FnMut() -> u32 {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407)
        | 1;
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 16) as u32
    }
}

/// Shape of a synthetic Llama model.
#[derive(Debug, Clone)]
pub struct SyntheticLlama {
    /// Vocabulary.
    pub vocab: u64,
    /// Hidden size (multiple of 256 for K-quants, else of 32).
    pub hidden: u64,
    /// Blocks.
    pub layers: u64,
    /// Query heads.
    pub heads: u64,
    /// KV heads.
    pub kv_heads: u64,
    /// SwiGLU width.
    pub ffn: u64,
    /// Type of the matrices (norms are F32).
    pub ty: GgmlType,
    /// Separate output matrix instead of a tied one.
    pub untied: bool,
    /// Context length.
    pub context: u64,
    /// RNG seed.
    pub seed: u64,
    /// Mixture-of-Experts feed-forward blocks: `(experts, experts per token)`, each expert `ffn` wide
    /// (Mixtral layout: `llama` with stacked `ffn_*_exps` and a router `ffn_gate_inp`).
    pub experts: Option<(u64, u64)>,
}

impl SyntheticLlama {
    /// The model as a GGUF writer (add or remove entries to make broken variants).
    pub fn writer(&self) -> GgufWriter {
        let mut next = random_u32s(self.seed);
        let mut w = GgufWriter::default();
        let u = GgufValue::U64;
        w.kv("general.architecture", GgufValue::Str("llama".into()))
            .kv("llama.vocab_size", u(self.vocab))
            .kv("llama.embedding_length", u(self.hidden))
            .kv("llama.block_count", u(self.layers))
            .kv("llama.feed_forward_length", u(self.ffn))
            .kv("llama.attention.head_count", u(self.heads))
            .kv("llama.attention.head_count_kv", u(self.kv_heads))
            .kv(
                "llama.attention.layer_norm_rms_epsilon",
                GgufValue::F64(1e-5),
            )
            .kv("llama.rope.freq_base", GgufValue::F64(10000.0))
            .kv("llama.context_length", u(self.context));
        if let Some((e, k)) = self.experts {
            w.kv("llama.expert_count", u(e))
                .kv("llama.expert_used_count", u(k));
        }
        // A byte-level vocabulary (GPT-2's byte-to-character map) with no merges, so that text can be
        // tokenized; the last id is an end-of-sequence control token.
        let byte_chars: Vec<String> = {
            let printable = |b: u32| {
                (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b)
            };
            let mut extra = 0;
            (0..256u32)
                .map(|b| {
                    let c = if printable(b) {
                        b
                    } else {
                        extra += 1;
                        255 + extra
                    };
                    char::from_u32(c).unwrap().to_string()
                })
                .collect()
        };
        let tokens: Vec<String> = (0..self.vocab as usize)
            .map(|i| {
                if i + 1 == self.vocab as usize {
                    "<|eos|>".into()
                } else {
                    byte_chars
                        .get(i)
                        .cloned()
                        .unwrap_or_else(|| format!("<extra{i}>"))
                }
            })
            .collect();
        let types: Vec<f64> = (0..self.vocab)
            .map(|i| if i + 1 == self.vocab { 3.0 } else { 1.0 })
            .collect();
        w.kv("tokenizer.ggml.model", GgufValue::Str("gpt2".into()))
            .kv("tokenizer.ggml.pre", GgufValue::Str("default".into()))
            .kv("tokenizer.ggml.tokens", GgufValue::StrArray(tokens))
            .kv("tokenizer.ggml.token_type", GgufValue::NumArray(types))
            .kv("tokenizer.ggml.merges", GgufValue::StrArray(Vec::new()))
            .kv("tokenizer.ggml.eos_token_id", u(self.vocab - 1));
        let hd = self.hidden / self.heads;
        let mut tensor = |w: &mut GgufWriter, name: &str, dims: &[u64], ty: GgmlType| {
            let n_blocks = (dims.iter().product::<u64>() / ty.block_elems()) as usize;
            w.tensor(name, dims, ty, random_blocks(ty, n_blocks, &mut next));
        };
        let ty = self.ty;
        let mut mat = |w: &mut GgufWriter, name: &str, dims: &[u64]| tensor(w, name, dims, ty);
        mat(&mut w, "token_embd.weight", &[self.hidden, self.vocab]);
        if self.untied {
            mat(&mut w, "output.weight", &[self.hidden, self.vocab]);
        }
        let norm = |w: &mut GgufWriter, name: &str, n: u64| {
            let v: Vec<u8> = (0..n)
                .flat_map(|i| (1.0f32 + 0.01 * (i % 7) as f32).to_le_bytes())
                .collect();
            w.tensor(name, &[n], GgmlType::F32, v);
        };
        norm(&mut w, "output_norm.weight", self.hidden);
        for l in 0..self.layers {
            let n = |s: &str| format!("blk.{l}.{s}.weight");
            norm(&mut w, &n("attn_norm"), self.hidden);
            norm(&mut w, &n("ffn_norm"), self.hidden);
            mat(&mut w, &n("attn_q"), &[self.hidden, self.heads * hd]);
            mat(&mut w, &n("attn_k"), &[self.hidden, self.kv_heads * hd]);
            mat(&mut w, &n("attn_v"), &[self.hidden, self.kv_heads * hd]);
            mat(&mut w, &n("attn_output"), &[self.heads * hd, self.hidden]);
            match self.experts {
                Some((e, _)) => {
                    // The router stays F32, as llama.cpp's quantizer leaves it.
                    w.tensor(
                        &n("ffn_gate_inp"),
                        &[self.hidden, e],
                        GgmlType::F32,
                        (0..self.hidden * e)
                            .flat_map(|i| {
                                (((i * 7919 + l * 31) % 2001) as f32 / 1000.0 - 1.0).to_le_bytes()
                            })
                            .collect(),
                    );
                    mat(&mut w, &n("ffn_gate_exps"), &[self.hidden, self.ffn, e]);
                    mat(&mut w, &n("ffn_up_exps"), &[self.hidden, self.ffn, e]);
                    mat(&mut w, &n("ffn_down_exps"), &[self.ffn, self.hidden, e]);
                }
                None => {
                    mat(&mut w, &n("ffn_gate"), &[self.hidden, self.ffn]);
                    mat(&mut w, &n("ffn_up"), &[self.hidden, self.ffn]);
                    mat(&mut w, &n("ffn_down"), &[self.ffn, self.hidden]);
                }
            }
        }
        w
    }
}
