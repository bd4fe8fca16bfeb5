//! Model description: architecture, dimensions and the per-layer tensor plan, built from GGUF metadata.
//!
//! Reference semantics: `spec/models.md` §1 (dense Llama, transformers `modeling_llama.py`). A family is
//! data plus a few switches (rope style, tied output, biases); the forward pass is shared.

use crate::error::ModelError;
use crate::gguf::{GgufHeader, TensorInfo};
use crate::moe::Routing;
use crate::quant::GgmlType;

/// How RoPE pairs dimensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeStyle {
    /// ggml "NORM": pairs `(x[2i], x[2i+1])` (GGUF llama, with q/k rows permuted by the converter).
    Interleaved,
    /// ggml "NEOX" / HF `rotate_half`: pairs `(x[i], x[i+d/2])`.
    NeoX,
}

/// Dimensions and hyper-parameters of a model.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// `general.architecture`.
    pub arch: String,
    /// Vocabulary size (rows of the embedding).
    pub vocab_size: usize,
    /// Hidden size H.
    pub hidden: usize,
    /// Number of transformer blocks.
    pub n_layers: usize,
    /// Query heads.
    pub n_heads: usize,
    /// Key/value heads (GQA).
    pub n_kv_heads: usize,
    /// Per-head dimension.
    pub head_dim: usize,
    /// SwiGLU intermediate width.
    pub ffn_dim: usize,
    /// RMSNorm epsilon.
    pub rms_eps: f32,
    /// RoPE base θ.
    pub rope_base: f32,
    /// Rotated dimensions per head (≤ head_dim).
    pub rope_dim: usize,
    /// RoPE convention.
    pub rope_style: RopeStyle,
    /// llama3 frequency divisors (`rope_freqs.weight`), `rope_dim/2` values, if the model has them.
    pub rope_freq_divisors: Option<Vec<f32>>,
    /// Maximum context length the model was trained for.
    pub context_length: usize,
    /// The output projection is the token embedding.
    pub tied_output: bool,
    /// q/k/v projections have biases.
    pub qkv_bias: bool,
    /// Mixture-of-Experts settings (`None`: dense).
    pub moe: Option<MoeConfig>,
}

/// Mixture-of-Experts settings of a model whose feed-forward blocks are routed experts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MoeConfig {
    /// Experts per MoE layer (E).
    pub n_experts: usize,
    /// Experts per token (k).
    pub n_used: usize,
    /// SwiGLU width of one expert (I).
    pub expert_ffn_dim: usize,
    /// How router logits become weights.
    pub routing: Routing,
}

/// Names of one block's tensors.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerNames {
    /// `attn_norm` weight.
    pub attn_norm: String,
    /// Query projection.
    pub wq: String,
    /// Key projection.
    pub wk: String,
    /// Value projection.
    pub wv: String,
    /// Output projection.
    pub wo: String,
    /// Biases of q, k, v (when `qkv_bias`).
    pub bias: Option<[String; 3]>,
    /// `ffn_norm` weight.
    pub ffn_norm: String,
    /// SwiGLU gate (a MoE layer: the stacked experts' gates, `[E * I, H]`).
    pub gate: String,
    /// SwiGLU up (stacked for MoE, `[E * I, H]`).
    pub up: String,
    /// SwiGLU down (stacked for MoE, `[E * H, I]`).
    pub down: String,
    /// The router `[E, H]` of a MoE layer (`None`: dense feed-forward).
    pub router: Option<String>,
}

impl LayerNames {
    fn new(i: usize, qkv_bias: bool, moe: bool) -> Self {
        let n = |s: &str| format!("blk.{i}.{s}.weight");
        let b = |s: &str| format!("blk.{i}.{s}.bias");
        LayerNames {
            attn_norm: n("attn_norm"),
            wq: n("attn_q"),
            wk: n("attn_k"),
            wv: n("attn_v"),
            wo: n("attn_output"),
            bias: qkv_bias.then(|| [b("attn_q"), b("attn_k"), b("attn_v")]),
            ffn_norm: n("ffn_norm"),
            gate: n(if moe { "ffn_gate_exps" } else { "ffn_gate" }),
            up: n(if moe { "ffn_up_exps" } else { "ffn_up" }),
            down: n(if moe { "ffn_down_exps" } else { "ffn_down" }),
            router: moe.then(|| n("ffn_gate_inp")),
        }
    }
}

/// A model: its configuration and the tensors each part reads.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelDesc {
    /// Dimensions and hyper-parameters.
    pub config: ModelConfig,
    /// Token embedding tensor name.
    pub token_embd: String,
    /// Final norm weight name.
    pub output_norm: String,
    /// Output projection name (`token_embd` when tied).
    pub output: String,
    /// Per-block tensor names.
    pub layers: Vec<LayerNames>,
}

/// Architectures this build runs.
pub const SUPPORTED_ARCHITECTURES: &[&str] = &["llama"];

fn get_u(h: &GgufHeader, key: &str) -> Result<usize, ModelError> {
    h.get(key)
        .and_then(|v| v.as_u64())
        .map(|v| v as usize)
        .ok_or_else(|| ModelError::MissingKey(key.into()))
}

fn get_f(h: &GgufHeader, key: &str) -> Option<f64> {
    h.get(key).and_then(|v| v.as_f64())
}

impl ModelDesc {
    /// Builds the description from a GGUF header and checks that every tensor it needs exists with the
    /// right shape and a supported type.
    ///
    /// `rope_freqs` must be given when the file has a `rope_freqs.weight` tensor (its decoded values;
    /// read it with the loader first), otherwise `None`.
    ///
    /// # Errors
    /// [`ModelError`] for an unknown architecture, missing keys or tensors, or inconsistent shapes.
    pub fn from_gguf(h: &GgufHeader, rope_freqs: Option<Vec<f32>>) -> Result<Self, ModelError> {
        let arch = h
            .architecture()
            .ok_or_else(|| ModelError::MissingKey("general.architecture".into()))?
            .to_string();
        if !SUPPORTED_ARCHITECTURES.contains(&arch.as_str()) {
            return Err(ModelError::UnknownArchitecture(arch));
        }
        let k = |s: &str| format!("{arch}.{s}");
        let n_experts = h
            .get(&k("expert_count"))
            .and_then(|v| v.as_u64())
            .unwrap_or(0) as usize;
        let hidden = get_u(h, &k("embedding_length"))?;
        let n_layers = get_u(h, &k("block_count"))?;
        let n_heads = get_u(h, &k("attention.head_count"))?;
        let n_kv_heads = match h.get(&k("attention.head_count_kv")) {
            None => n_heads,
            Some(v) => match (v.as_u64(), v.as_num_array()) {
                (Some(n), _) => n as usize,
                (None, Some(a)) if !a.is_empty() && a.iter().all(|&x| x == a[0]) => a[0] as usize,
                _ => return Err(ModelError::MissingKey(k("attention.head_count_kv"))),
            },
        };
        if n_heads == 0 || n_kv_heads == 0 || n_heads % n_kv_heads != 0 {
            return Err(ModelError::Inconsistent(format!(
                "{n_heads} query heads is not a multiple of {n_kv_heads} kv heads"
            )));
        }
        let head_dim = match h.get(&k("attention.key_length")).and_then(|v| v.as_u64()) {
            Some(d) => d as usize,
            None if hidden % n_heads == 0 => hidden / n_heads,
            None => {
                return Err(ModelError::Inconsistent(format!(
                    "hidden {hidden} not divisible by {n_heads} heads"
                )))
            }
        };
        if head_dim % 2 != 0 || head_dim > 256 {
            return Err(ModelError::Inconsistent(format!(
                "head_dim {head_dim} must be even and at most 256"
            )));
        }
        let embd = h
            .tensor("token_embd.weight")
            .ok_or_else(|| ModelError::MissingTensor("token_embd.weight".into()))?;
        let vocab_size = match h.get(&k("vocab_size")).and_then(|v| v.as_u64()) {
            Some(v) => v as usize,
            None => embd.dims.get(1).copied().unwrap_or(0) as usize,
        };
        let rope_dim = h
            .get(&k("rope.dimension_count"))
            .and_then(|v| v.as_u64())
            .map(|v| v as usize)
            .unwrap_or(head_dim);
        if rope_dim > head_dim || !rope_dim.is_multiple_of(2) {
            return Err(ModelError::Inconsistent(format!(
                "rope dimension {rope_dim} must be even and ≤ head_dim {head_dim}"
            )));
        }
        if let Some(f) = &rope_freqs {
            if f.len() != rope_dim / 2 {
                return Err(ModelError::Inconsistent(format!(
                    "rope_freqs has {} values, expected {}",
                    f.len(),
                    rope_dim / 2
                )));
            }
        }
        // Bounds that keep every size computation far from overflow on hostile metadata.
        for (what, v, max) in [
            ("hidden size", hidden, 1 << 20),
            ("block count", n_layers, 4096),
            ("head count", n_heads, 4096),
            ("vocabulary", vocab_size, 1 << 24),
        ] {
            if v == 0 || v > max {
                return Err(ModelError::Inconsistent(format!(
                    "{what} {v} is outside 1..={max}"
                )));
            }
        }
        let qkv_bias = h.tensor("blk.0.attn_q.bias").is_some();
        let tied_output = h.tensor("output.weight").is_none();
        let ffn_dim = match get_u(h, &k("feed_forward_length"))? {
            f if f > 0 && f <= 1 << 22 => f,
            f => {
                return Err(ModelError::Inconsistent(format!(
                    "feed_forward_length {f} is outside 1..=4194304"
                )))
            }
        };
        // Mixtral: GGUF arch `llama` with experts; softmax routing renormalized over the k.
        let moe = if n_experts > 0 {
            let n_used = get_u(h, &k("expert_used_count"))?;
            if n_experts > 256 || n_used == 0 || n_used > 8 || n_used > n_experts {
                return Err(ModelError::Inconsistent(format!(
                    "{n_used} experts per token of {n_experts}: supported are 1..=8 of at most 256, and no more than there are"
                )));
            }
            Some(MoeConfig {
                n_experts,
                n_used,
                expert_ffn_dim: h
                    .get(&k("expert_feed_forward_length"))
                    .and_then(|v| v.as_u64())
                    .map_or(ffn_dim, |v| v as usize),
                routing: Routing::Softmax { renorm: true },
            })
        } else {
            None
        };
        let config = ModelConfig {
            vocab_size,
            hidden,
            n_layers,
            n_heads,
            n_kv_heads,
            head_dim,
            ffn_dim,
            rms_eps: get_f(h, &k("attention.layer_norm_rms_epsilon")).unwrap_or(1e-5) as f32,
            rope_base: get_f(h, &k("rope.freq_base")).unwrap_or(10000.0) as f32,
            rope_dim,
            rope_style: RopeStyle::Interleaved,
            rope_freq_divisors: rope_freqs,
            context_length: get_u(h, &k("context_length")).unwrap_or(2048),
            tied_output,
            qkv_bias,
            moe,
            arch,
        };
        let desc = ModelDesc {
            token_embd: "token_embd.weight".into(),
            output_norm: "output_norm.weight".into(),
            output: if tied_output {
                "token_embd.weight".into()
            } else {
                "output.weight".into()
            },
            layers: (0..n_layers)
                .map(|i| LayerNames::new(i, qkv_bias, moe.is_some()))
                .collect(),
            config,
        };
        desc.check_tensors(h)?;
        Ok(desc)
    }

    /// Every (tensor name, expected GGUF dims) pair this model reads.
    pub fn expected_tensors(&self) -> Vec<(String, Vec<u64>)> {
        let c = &self.config;
        let (hd, q, kv, f) = (
            c.hidden as u64,
            (c.n_heads * c.head_dim) as u64,
            (c.n_kv_heads * c.head_dim) as u64,
            c.ffn_dim as u64,
        );
        let mut v = vec![
            (self.token_embd.clone(), vec![hd, c.vocab_size as u64]),
            (self.output_norm.clone(), vec![hd]),
        ];
        if !c.tied_output {
            v.push((self.output.clone(), vec![hd, c.vocab_size as u64]));
        }
        for l in &self.layers {
            v.push((l.attn_norm.clone(), vec![hd]));
            v.push((l.wq.clone(), vec![hd, q]));
            v.push((l.wk.clone(), vec![hd, kv]));
            v.push((l.wv.clone(), vec![hd, kv]));
            v.push((l.wo.clone(), vec![q, hd]));
            if let Some([bq, bk, bv]) = &l.bias {
                v.push((bq.clone(), vec![q]));
                v.push((bk.clone(), vec![kv]));
                v.push((bv.clone(), vec![kv]));
            }
            v.push((l.ffn_norm.clone(), vec![hd]));
            match (&l.router, &c.moe) {
                (Some(router), Some(m)) => {
                    let (e, i) = (m.n_experts as u64, m.expert_ffn_dim as u64);
                    v.push((router.clone(), vec![hd, e]));
                    v.push((l.gate.clone(), vec![hd, i, e]));
                    v.push((l.up.clone(), vec![hd, i, e]));
                    v.push((l.down.clone(), vec![i, hd, e]));
                }
                _ => {
                    v.push((l.gate.clone(), vec![hd, f]));
                    v.push((l.up.clone(), vec![hd, f]));
                    v.push((l.down.clone(), vec![f, hd]));
                }
            }
        }
        v
    }

    fn check_tensors(&self, h: &GgufHeader) -> Result<(), ModelError> {
        for (name, dims) in self.expected_tensors() {
            let t: &TensorInfo = h
                .tensor(&name)
                .ok_or_else(|| ModelError::MissingTensor(name.clone()))?;
            if t.dims != dims {
                return Err(ModelError::BadShape {
                    name,
                    found: t.dims.clone(),
                    expected: dims,
                });
            }
            let is_vector = dims.len() == 1;
            if is_vector && t.ggml_type != GgmlType::F32 {
                return Err(ModelError::Inconsistent(format!(
                    "norm/bias tensor {name} must be F32, found {}",
                    t.ggml_type.name()
                )));
            }
        }
        Ok(())
    }

    /// Total bytes of the tensors this model reads from the file.
    pub fn weight_bytes(&self, h: &GgufHeader) -> u64 {
        self.expected_tensors()
            .iter()
            .filter_map(|(n, _)| h.tensor(n))
            .map(|t| t.size_bytes)
            .sum()
    }
}

/// RoPE angle tables for positions `0..n_pos`: `(cos, sin)`, each `n_pos * rope_dim/2` f32, pair `i` of
/// position `p` at `p * rope_dim/2 + i`. Frequencies follow HF: `inv_freq` in f32, θ = `p * inv_freq`
/// in f32 (divided by the llama3 divisor when present), cos/sin evaluated in f64 and rounded.
pub fn rope_tables(c: &ModelConfig, start: usize, n_pos: usize) -> (Vec<f32>, Vec<f32>) {
    let half = c.rope_dim / 2;
    let inv: Vec<f32> = (0..half)
        .map(|i| {
            let base = 1.0f32 / c.rope_base.powf((2 * i) as f32 / c.rope_dim as f32);
            match &c.rope_freq_divisors {
                Some(d) => base / d[i],
                None => base,
            }
        })
        .collect();
    let mut cos = Vec::with_capacity(n_pos * half);
    let mut sin = Vec::with_capacity(n_pos * half);
    for p in start..start + n_pos {
        for &f in &inv {
            let theta = (p as f32 * f) as f64;
            cos.push(theta.cos() as f32);
            sin.push(theta.sin() as f32);
        }
    }
    (cos, sin)
}
