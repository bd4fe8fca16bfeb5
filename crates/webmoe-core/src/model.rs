//! Model description: architecture, dimensions and the per-layer tensor plan, built from GGUF metadata.
//!
//! Reference semantics: `docs/models.md` §1 (dense Llama, transformers `modeling_llama.py`). A family is
//! data plus a few switches (rope style, tied output, biases); the forward pass is shared.

use crate::error::ModelError;
use crate::gguf::{GgufHeader, TensorInfo};
use crate::quant::GgmlType;

pub use crate::rope::rope_tables;

/// How RoPE pairs dimensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RopeStyle {
    /// ggml "NORM": pairs `(x[2i], x[2i+1])` (GGUF llama, with q/k rows permuted by the converter).
    #[default]
    Interleaved,
    /// ggml "NEOX" / HF `rotate_half`: pairs `(x[i], x[i+d/2])`.
    NeoX,
}

/// Normalization of queries and keys inside attention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QkNorm {
    /// None (Llama, Mixtral, Qwen2).
    #[default]
    None,
    /// Weighted RMSNorm of each head over `head_dim`, before RoPE (Qwen3, Qwen3-MoE).
    PerHead,
    /// Weighted RMSNorm over the whole q (`n_heads * head_dim`) and k projection, before RoPE (OLMoE).
    Full,
    /// Weightless RMS (L2) norm of each head after RoPE, on RoPE layers only (Llama 4).
    L2AfterRope,
}

/// Llama 4 attention temperature tuning on NoPE layers:
/// `q *= 1 + scale * ln(1 + floor((pos + 1) / floor_scale))`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttnTemperature {
    /// `floor_scale`.
    pub floor_scale: f32,
    /// `attn_scale`.
    pub scale: f32,
}

/// Dimensions and hyper-parameters of a model.
#[derive(Debug, Clone, PartialEq, Default)]
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
    /// Query/key normalization.
    pub qk_norm: QkNorm,
    /// Chunked local attention on RoPE layers: a query sees only keys of its own chunk of this many
    /// positions (Llama 4 `attention_chunk_size`).
    pub attn_chunk: Option<usize>,
    /// Attention temperature tuning on NoPE layers (Llama 4).
    pub temperature: Option<AttnTemperature>,
}

/// How router logits become expert weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routing {
    /// Softmax over all experts, top k, renormalized over the k when `renorm`; weights scale outputs.
    Softmax {
        /// Divide the k weights by their sum (`norm_topk_prob`).
        renorm: bool,
    },
    /// Top k of the raw logits, weight `sigmoid(logit)`, applied to the expert input (Llama 4).
    SigmoidInput,
}

impl Routing {
    /// Whether the weights scale the expert input (else the output).
    pub fn weights_input(self) -> bool {
        matches!(self, Routing::SigmoidInput)
    }
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

/// The always-on shared expert of a MoE layer (Qwen2-MoE, Llama 4): a SwiGLU added to the routed output.
#[derive(Debug, Clone, PartialEq)]
pub struct SharedExpert {
    /// Gate `[Ish, H]`.
    pub gate: String,
    /// Up `[Ish, H]`.
    pub up: String,
    /// Down `[H, Ish]`.
    pub down: String,
    /// Its width Ish.
    pub width: usize,
    /// Qwen2-MoE: `[1, H]` whose sigmoid scales the shared output per token.
    pub gate_inp: Option<String>,
}

/// Largest hidden size accepted.
pub const MAX_HIDDEN: usize = 1 << 16;
/// Most layers accepted.
pub const MAX_LAYERS: usize = 1024;
/// Most attention heads accepted.
pub const MAX_HEADS: usize = 1024;
/// Largest head dimension the attention kernels run.
pub const MAX_HEAD_DIM: usize = 256;
/// Largest vocabulary accepted.
pub const MAX_VOCAB: usize = 1 << 22;
/// Largest feed-forward (and expert) width accepted.
pub const MAX_FFN: usize = 1 << 22;
/// Longest context length a model may declare.
pub const MAX_CONTEXT: usize = 1 << 24;

/// Each `(name, value, max)` within `1..=max`, checked before anything is sized by them, so that
/// hostile metadata cannot make an allocation overflow or explode.
///
/// # Errors
/// [`ModelError::Inconsistent`] naming the key and the allowed range.
pub fn check_sizes(sizes: &[(&str, usize, usize)]) -> Result<(), ModelError> {
    for &(what, v, max) in sizes {
        if v == 0 || v > max {
            return Err(ModelError::Inconsistent(format!(
                "{what} {v} is outside 1..={max}"
            )));
        }
    }
    Ok(())
}

/// Checks the `rope_freqs.weight` tensor before it is read and dequantized: one value per rotated
/// pair, so at most [`MAX_HEAD_DIM`] / 2.
///
/// # Errors
/// [`ModelError::BadShape`] for any other shape.
pub fn check_rope_freqs(t: &crate::gguf::TensorInfo) -> Result<(), ModelError> {
    if t.dims.len() == 1 && t.dims[0] as usize <= MAX_HEAD_DIM / 2 {
        Ok(())
    } else {
        Err(ModelError::BadShape {
            name: t.name.clone(),
            found: t.dims.clone(),
            expected: vec![(MAX_HEAD_DIM / 2) as u64],
        })
    }
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
    /// Weights of the query and key norms (see [`QkNorm`]; `None` for none or weightless).
    pub qk_norm: Option<[String; 2]>,
    /// The layer applies RoPE (Llama 4 NoPE layers do not).
    pub rope: bool,
    /// The shared expert of a MoE layer.
    pub shared: Option<SharedExpert>,
}

impl LayerNames {
    fn gguf(i: usize, qkv_bias: bool, moe: bool, qk_norm: bool, rope: bool) -> Self {
        let n = |s: &str| format!("blk.{i}.{s}.weight");
        let b = |s: &str| format!("blk.{i}.{s}.bias");
        LayerNames {
            qk_norm: qk_norm.then(|| [n("attn_q_norm"), n("attn_k_norm")]),
            rope,
            shared: None,
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

/// Llama 4 settings GGUF cannot store; llama.cpp hard-codes the same values.
pub mod llama4_gguf_defaults {
    /// Every this-many-th layer (1-based) skips RoPE.
    pub const NO_ROPE_INTERVAL: usize = 4;
    /// `attention_chunk_size`.
    pub const ATTENTION_CHUNK: usize = 8192;
    /// Temperature tuning `floor_scale`.
    pub const FLOOR_SCALE: f32 = 8192.0;
    /// Temperature tuning `attn_scale`.
    pub const ATTN_SCALE: f32 = 0.1;
}

/// Whether two GGUF-order shapes are the same, trailing dimensions of 1 aside (`[H]` and `[H, 1]`).
pub fn same_shape(a: &[u64], b: &[u64]) -> bool {
    let trim = |d: &[u64]| d[..d.iter().rposition(|&x| x != 1).map_or(0, |i| i + 1)].to_vec();
    trim(a) == trim(b)
}

fn get_u(h: &GgufHeader, key: &str) -> Result<usize, ModelError> {
    h.get(key)
        .and_then(|v| v.as_u64())
        .map(|v| v as usize)
        .ok_or_else(|| ModelError::MissingKey(key.into()))
}

fn get_f(h: &GgufHeader, key: &str) -> Option<f64> {
    h.get(key).and_then(|v| v.as_f64())
}

/// The second dimension of a 2-D tensor, if it exists.
fn rows_of(h: &GgufHeader, name: &str) -> Option<usize> {
    h.tensor(name)
        .and_then(|t| t.dims.get(1).copied())
        .map(|d| d as usize)
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
        let fam = crate::family::by_gguf_arch(&arch)
            .ok_or_else(|| ModelError::UnknownArchitecture(arch.clone()))?;
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
        check_sizes(&[
            (&k("embedding_length"), hidden, MAX_HIDDEN),
            (&k("block_count"), n_layers, MAX_LAYERS),
            (&k("attention.head_count"), n_heads, MAX_HEADS),
            (&k("vocab_size"), vocab_size, MAX_VOCAB),
        ])?;
        let ffn_dim = match get_u(h, &k("feed_forward_length"))? {
            f if f > 0 && f <= 1 << 22 => f,
            f => {
                return Err(ModelError::Inconsistent(format!(
                    "feed_forward_length {f} is outside 1..=4194304"
                )))
            }
        };
        let moe = if n_experts > 0 {
            let n_used = get_u(h, &k("expert_used_count"))?;
            let renorm = h
                .get(&k("expert_weights_norm"))
                .and_then(|v| v.as_bool())
                .unwrap_or(fam.gguf_renorm);
            Some(MoeConfig {
                n_experts,
                n_used,
                expert_ffn_dim: h
                    .get(&k("expert_feed_forward_length"))
                    .and_then(|v| v.as_u64())
                    .map_or(ffn_dim, |v| v as usize),
                routing: if fam.llama4 {
                    Routing::SigmoidInput
                } else {
                    Routing::Softmax { renorm }
                },
            })
        } else {
            None
        };
        // Llama 4 GGUF: what the file cannot say is hard-coded as in llama.cpp. A `sliding_window` of 0
        // marks a model without NoPE layers or chunking (MobileLLM-style).
        let llama4_local = fam.llama4
            && h.get(&k("attention.sliding_window"))
                .and_then(|v| v.as_u64())
                != Some(0);
        let qk_norm = match fam.qk_norm {
            QkNorm::L2AfterRope if moe.is_some_and(|m| m.n_experts == 128) => QkNorm::None,
            q => q,
        };
        use llama4_gguf_defaults as l4;
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
            rope_style: fam.gguf_rope,
            rope_freq_divisors: rope_freqs,
            context_length: get_u(h, &k("context_length")).unwrap_or(2048),
            tied_output: h.tensor("output.weight").is_none(),
            qkv_bias: h.tensor("blk.0.attn_q.bias").is_some(),
            moe,
            qk_norm,
            attn_chunk: llama4_local.then_some(l4::ATTENTION_CHUNK),
            temperature: llama4_local.then_some(AttnTemperature {
                floor_scale: l4::FLOOR_SCALE,
                scale: l4::ATTN_SCALE,
            }),
            arch,
        };
        let layers = (0..n_layers)
            .map(|i| {
                let is_moe =
                    moe.is_some() && h.tensor(&format!("blk.{i}.ffn_gate_inp.weight")).is_some();
                let rope = !(llama4_local && (i + 1) % l4::NO_ROPE_INTERVAL == 0);
                let weighted_qk = matches!(qk_norm, QkNorm::PerHead | QkNorm::Full);
                let mut l = LayerNames::gguf(i, config.qkv_bias, is_moe, weighted_qk, rope);
                let n = |s: &str| format!("blk.{i}.{s}.weight");
                if is_moe && h.tensor(&n("ffn_gate_shexp")).is_some() {
                    l.shared = Some(SharedExpert {
                        width: rows_of(h, &n("ffn_gate_shexp")).unwrap_or(0),
                        gate: n("ffn_gate_shexp"),
                        up: n("ffn_up_shexp"),
                        down: n("ffn_down_shexp"),
                        gate_inp: h.tensor(&n("ffn_gate_inp_shexp")).map(|t| t.name.clone()),
                    });
                }
                l
            })
            .collect();
        let desc = ModelDesc {
            token_embd: "token_embd.weight".into(),
            output_norm: "output_norm.weight".into(),
            output: if config.tied_output {
                "token_embd.weight".into()
            } else {
                "output.weight".into()
            },
            layers,
            config,
        };
        desc.validate()?;
        desc.check_tensors(h)?;
        Ok(desc)
    }

    /// Checks the configuration's internal consistency and bounds (shared by every input format):
    /// sizes within [`check_sizes`]' limits, kv heads dividing the heads, a finite positive RMS epsilon
    /// and RoPE base, finite positive RoPE frequency divisors.
    ///
    /// # Errors
    /// [`ModelError::Inconsistent`] naming the first contradiction.
    pub fn validate(&self) -> Result<(), ModelError> {
        let c = &self.config;
        let bad = |m: String| Err(ModelError::Inconsistent(m));
        check_sizes(&[
            ("hidden size", c.hidden, MAX_HIDDEN),
            ("layer count", c.n_layers, MAX_LAYERS),
            ("head count", c.n_heads, MAX_HEADS),
            ("kv head count", c.n_kv_heads, c.n_heads.min(MAX_HEADS)),
            ("head dimension", c.head_dim, MAX_HEAD_DIM),
            ("vocabulary size", c.vocab_size, MAX_VOCAB),
            ("feed-forward width", c.ffn_dim, MAX_FFN),
            ("context length", c.context_length, MAX_CONTEXT),
        ])?;
        // Every matrix row is read in groups of 32 by the kernels: a row length that is not a multiple
        // would otherwise fail deep in a kernel launcher, naming no key.
        let rows = [
            ("hidden size", c.hidden),
            ("attention width (heads × head_dim)", c.n_heads * c.head_dim),
            ("feed-forward width", c.ffn_dim),
        ];
        let expert = c.moe.map(|m| ("expert width", m.expert_ffn_dim));
        for (what, v) in rows.into_iter().chain(expert) {
            if !v.is_multiple_of(32) {
                return bad(format!(
                    "{what} {v} is not a multiple of 32, which the kernels need"
                ));
            }
        }
        if self.layers.len() != c.n_layers {
            return bad(format!(
                "{} layers described for a layer count of {}",
                self.layers.len(),
                c.n_layers
            ));
        }
        if !c.n_heads.is_multiple_of(c.n_kv_heads) {
            return bad(format!(
                "{} query heads is not a multiple of {} kv heads",
                c.n_heads, c.n_kv_heads
            ));
        }
        if !(c.rms_eps.is_finite() && c.rms_eps > 0.0 && c.rms_eps < 1.0) {
            return bad(format!(
                "RMS norm epsilon {} must be a finite number in (0, 1)",
                c.rms_eps
            ));
        }
        if !(c.rope_base.is_finite() && c.rope_base > 1.0) {
            return bad(format!(
                "RoPE base (theta) {} must be a finite number above 1",
                c.rope_base
            ));
        }
        if let Some(bad_f) = c
            .rope_freq_divisors
            .iter()
            .flatten()
            .find(|v| !(v.is_finite() && **v > 0.0))
        {
            return bad(format!(
                "a RoPE frequency divisor is {bad_f}; they must be finite and positive"
            ));
        }
        if c.rope_dim > c.head_dim || !c.rope_dim.is_multiple_of(2) {
            return bad(format!(
                "rope dimension {} must be even and ≤ head_dim {}",
                c.rope_dim, c.head_dim
            ));
        }
        if let Some(f) = &c.rope_freq_divisors {
            if f.len() != c.rope_dim / 2 {
                return bad(format!(
                    "rope_freqs has {} values, expected {}",
                    f.len(),
                    c.rope_dim / 2
                ));
            }
        }
        if let Some(m) = &c.moe {
            if m.n_experts > 256 || m.n_used == 0 || m.n_used > 8 || m.n_used > m.n_experts {
                return bad(format!(
                    "{} experts per token of {}: supported are 1..=8 of at most 256, and no more than there are",
                    m.n_used, m.n_experts
                ));
            }
            if m.expert_ffn_dim == 0 || m.expert_ffn_dim > 1 << 22 {
                return bad(format!(
                    "expert width {} is outside 1..=4194304",
                    m.expert_ffn_dim
                ));
            }
        }
        if c.attn_chunk == Some(0) {
            return bad("attention chunk size 0".into());
        }
        for (i, l) in self.layers.iter().enumerate() {
            if l.router.is_some() && c.moe.is_none() {
                return bad(format!(
                    "layer {i} has a router but the model has no experts"
                ));
            }
            if let Some(s) = &l.shared {
                if s.width == 0 || s.width > 1 << 22 {
                    return bad(format!(
                        "layer {i}: shared expert width {} is outside 1..=4194304",
                        s.width
                    ));
                }
            }
        }
        Ok(())
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
            if let Some([qn, kn]) = &l.qk_norm {
                let (nq, nk) = match c.qk_norm {
                    QkNorm::Full => (q, kv),
                    _ => (c.head_dim as u64, c.head_dim as u64),
                };
                v.push((qn.clone(), vec![nq]));
                v.push((kn.clone(), vec![nk]));
            }
            v.push((l.ffn_norm.clone(), vec![hd]));
            if let Some(s) = &l.shared {
                let w = s.width as u64;
                v.push((s.gate.clone(), vec![hd, w]));
                v.push((s.up.clone(), vec![hd, w]));
                v.push((s.down.clone(), vec![w, hd]));
                if let Some(g) = &s.gate_inp {
                    v.push((g.clone(), vec![hd, 1]));
                }
            }
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
            if !same_shape(&t.dims, &dims) {
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

    /// Indices in `h`'s tensor table of the tensors this model reads, in file order: what the loaders
    /// stream and the weight stores (GPU and CPU) allocate.
    pub fn tensor_indices(&self, h: &GgufHeader) -> Vec<usize> {
        let names: std::collections::HashSet<String> = self
            .expected_tensors()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        (0..h.tensors.len())
            .filter(|&i| names.contains(&h.tensors[i].name))
            .collect()
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
