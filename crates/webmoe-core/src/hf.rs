//! Hugging Face checkpoints as they are: `config.json` plus the safetensors tensor table become the same
//! [`ModelDesc`] a GGUF file gives (GGUF tensor names, GGUF dimension order), and a recipe per tensor
//! says how its bytes are assembled from the checkpoint: per-expert tensors stacked, fused `gate_up`
//! tensors split by rows, or Llama 4's `[E, H, 2I]` expert tensors transposed. No conversion step.
//!
//! Semantics follow `docs/models.md`: HF Llama-family checkpoints rotate halves (NeoX RoPE) with
//! unpermuted q/k, except Llama 4, which rotates interleaved pairs itself.

use crate::error::ModelError;
use crate::family::HfNaming;
use crate::gguf::{GgufHeader, TensorInfo};
use crate::model::{
    same_shape, AttnTemperature, LayerNames, ModelConfig, ModelDesc, MoeConfig, QkNorm,
    SharedExpert,
};
use crate::moe::Routing;
use crate::quant::GgmlType;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};

/// One checkpoint tensor: element type and shape (PyTorch order, last dimension contiguous).
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointTensor {
    /// F32, F16 or BF16.
    pub dtype: GgmlType,
    /// Shape.
    pub shape: Vec<usize>,
}

/// A run of rows of a checkpoint tensor (a row is its last dimension).
#[derive(Debug, Clone, PartialEq)]
pub struct RowSlice {
    /// Checkpoint tensor name.
    pub tensor: String,
    /// First row.
    pub row0: usize,
    /// Rows.
    pub rows: usize,
}

/// How the bytes of one model tensor come from the checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub enum Recipe {
    /// The concatenation of these row runs (a whole tensor, stacked experts, or a fused tensor's part).
    Rows(Vec<RowSlice>),
    /// Llama 4 fused experts: for each of `experts` matrices `[src_rows, src_cols]` of `tensor`, columns
    /// `col0..col0 + cols` become rows (a transpose).
    Transpose {
        /// Checkpoint tensor name.
        tensor: String,
        /// Experts (outer dimension).
        experts: usize,
        /// Rows of one source matrix.
        src_rows: usize,
        /// Columns of one source matrix.
        src_cols: usize,
        /// First column taken.
        col0: usize,
        /// Columns taken (rows of each output matrix).
        cols: usize,
    },
}

/// One model tensor planned from the checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedTensor {
    /// GGUF-style name (`blk.0.attn_q.weight`).
    pub name: String,
    /// GGUF dimension order.
    pub dims: Vec<u64>,
    /// Element type of the source.
    pub src_type: GgmlType,
    /// Element type stored on the GPU (vectors become F32; weights keep their type unless quantized on
    /// load).
    pub ggml_type: GgmlType,
    /// Where the bytes come from.
    pub recipe: Recipe,
}

impl PlannedTensor {
    /// The type the tensor's bytes are streamed in: the source type for a matrix quantized on load
    /// (the GPU quantizes it), otherwise the stored type.
    pub fn streamed_type(&self) -> GgmlType {
        if self.ggml_type.block_elems() > 1 {
            self.src_type
        } else {
            self.ggml_type
        }
    }
}

/// A checkpoint described as a model.
#[derive(Debug, Clone)]
pub struct HfModel {
    /// The model.
    pub desc: ModelDesc,
    /// Every tensor the model reads, in upload order.
    pub tensors: Vec<PlannedTensor>,
    /// `bos_token_id` and `eos_token_id` (one or several) from `config.json`.
    pub bos: Option<u32>,
    /// End-of-sequence ids.
    pub eos: Vec<u32>,
}

fn u(c: &Value, key: &str) -> Option<usize> {
    c.get(key).and_then(Value::as_u64).map(|v| v as usize)
}

fn f(c: &Value, key: &str) -> Option<f64> {
    c.get(key).and_then(Value::as_f64)
}

fn need(c: &Value, key: &str) -> Result<usize, ModelError> {
    u(c, key).ok_or_else(|| ModelError::MissingKey(format!("config.json {key}")))
}

/// Token ids from a JSON number or array of numbers (`eos_token_id` takes both forms).
pub fn token_ids(v: Option<&Value>) -> Vec<u32> {
    match v {
        Some(Value::Number(n)) => n.as_u64().map(|x| vec![x as u32]).unwrap_or_default(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_u64)
            .map(|x| x as u32)
            .collect(),
        _ => Vec::new(),
    }
}

/// llama3 RoPE frequency divisors for `rope_dim`, as `rope_freqs.weight` holds them in GGUF.
pub fn llama3_divisors(rope_dim: usize, base: f32, p: &Value) -> Vec<f32> {
    let factor = f(p, "factor").unwrap_or(8.0);
    let low = f(p, "low_freq_factor").unwrap_or(1.0);
    let high = f(p, "high_freq_factor").unwrap_or(4.0);
    let old = f(p, "original_max_position_embeddings").unwrap_or(8192.0);
    let (low_wl, high_wl) = (old / low, old / high);
    (0..rope_dim / 2)
        .map(|i| {
            let freq = 1.0 / (base as f64).powf((2 * i) as f64 / rope_dim as f64);
            let wavelen = 2.0 * std::f64::consts::PI / freq;
            if wavelen < high_wl {
                1.0
            } else if wavelen > low_wl {
                factor as f32
            } else {
                let smooth = (old / wavelen - low) / (high - low);
                (1.0 / ((1.0 - smooth) / factor + smooth)) as f32
            }
        })
        .collect()
}

impl HfModel {
    /// Describes the checkpoint with `config.json` (`config`) and its tensor table.
    ///
    /// # Errors
    /// [`ModelError`] for an unknown `model_type`, missing keys or tensors, shapes that disagree with the
    /// config (e.g. an expert count), more experts per token than experts, unsupported settings.
    pub fn new(
        config: &Value,
        tensors: &HashMap<String, CheckpointTensor>,
    ) -> Result<Self, ModelError> {
        let top = config;
        let c = config.get("text_config").unwrap_or(config);
        let model_type = c
            .get("model_type")
            .or_else(|| top.get("model_type"))
            .and_then(Value::as_str)
            .ok_or_else(|| ModelError::MissingKey("config.json model_type".into()))?
            .to_string();
        let fam = crate::family::by_hf_model_type(&model_type)
            .ok_or_else(|| ModelError::UnknownArchitecture(model_type.clone()))?;
        let llama4 = fam.llama4;
        let naming = fam.hf_naming;
        let qk_family = match fam.qk_norm {
            // Llama 4 configs can switch the L2 norm off.
            QkNorm::L2AfterRope
                if !c
                    .get("use_qk_norm")
                    .and_then(Value::as_bool)
                    .unwrap_or(true) =>
            {
                QkNorm::None
            }
            q => q,
        };
        if c.get("clip_qkv").is_some_and(|v| !v.is_null()) {
            return Err(ModelError::Inconsistent("clip_qkv is not supported".into()));
        }
        // Checkpoint prefix: `model.` or, for multimodal Llama 4, `language_model.model.`.
        let prefix = ["", "language_model."]
            .into_iter()
            .find(|p| tensors.contains_key(&format!("{p}model.embed_tokens.weight")))
            .ok_or_else(|| ModelError::MissingTensor("model.embed_tokens.weight".into()))?;
        let hidden = need(c, "hidden_size")?;
        let n_layers = need(c, "num_hidden_layers")?;
        let n_heads = need(c, "num_attention_heads")?;
        let n_kv_heads = u(c, "num_key_value_heads").unwrap_or(n_heads);
        // Bounds before anything is sized by these (a billion layers must not be allocated first).
        use crate::model::{
            check_sizes, MAX_HEADS, MAX_HEAD_DIM, MAX_HIDDEN, MAX_LAYERS, MAX_VOCAB,
        };
        check_sizes(&[
            ("config.json hidden_size", hidden, MAX_HIDDEN),
            ("config.json num_hidden_layers", n_layers, MAX_LAYERS),
            ("config.json num_attention_heads", n_heads, MAX_HEADS),
            ("config.json num_key_value_heads", n_kv_heads, n_heads),
        ])?;
        if !n_heads.is_multiple_of(n_kv_heads) {
            return Err(ModelError::Inconsistent(format!(
                "config.json num_attention_heads {n_heads} is not a multiple of num_key_value_heads {n_kv_heads}"
            )));
        }
        let head_dim = u(c, "head_dim").unwrap_or(hidden / n_heads);
        let vocab_size = need(c, "vocab_size")?;
        check_sizes(&[
            ("config.json head_dim", head_dim, MAX_HEAD_DIM),
            ("config.json vocab_size", vocab_size, MAX_VOCAB),
        ])?;
        if !head_dim.is_multiple_of(2) {
            return Err(ModelError::Inconsistent(format!(
                "config.json head_dim {head_dim} must be even"
            )));
        }
        let rope_params = c
            .get("rope_parameters")
            .or_else(|| c.get("rope_scaling"))
            .filter(|v| !v.is_null());
        if let Some(p) = rope_params.filter(|p| !p.is_object()) {
            return Err(ModelError::Inconsistent(format!(
                "config.json rope_scaling must be an object, not {p}"
            )));
        }
        let rope_base = rope_params
            .and_then(|p| f(p, "rope_theta"))
            .or_else(|| f(c, "rope_theta"))
            .unwrap_or(if llama4 { 500000.0 } else { 10000.0 }) as f32;
        let rope_type = match rope_params.and_then(|p| p.get("rope_type").or_else(|| p.get("type")))
        {
            None if rope_params.is_some_and(|p| p.get("factor").is_some()) => {
                return Err(ModelError::Inconsistent(
                    "config.json rope_scaling has a factor but no rope_type".into(),
                ))
            }
            None => "default",
            Some(Value::String(t)) => t.as_str(),
            Some(other) => {
                return Err(ModelError::Inconsistent(format!(
                    "config.json rope_scaling rope_type must be a string, not {other}"
                )))
            }
        };
        let partial = f(c, "partial_rotary_factor").unwrap_or(1.0);
        if !(partial > 0.0 && partial <= 1.0) {
            return Err(ModelError::Inconsistent(format!(
                "config.json partial_rotary_factor {partial} must be in (0, 1]"
            )));
        }
        let rope_dim = ((head_dim as f64 * partial) as usize) & !1;
        if let (Some(p), "llama3") = (rope_params, rope_type) {
            for key in [
                "factor",
                "low_freq_factor",
                "high_freq_factor",
                "original_max_position_embeddings",
            ] {
                match p.get(key) {
                    None => {}
                    Some(v)
                        if v.as_f64()
                            .is_some_and(|x| x.is_finite() && x > 0.0 && x < 1e9) => {}
                    Some(v) => {
                        return Err(ModelError::Inconsistent(format!(
                            "config.json rope_scaling {key} {v} must be a positive number below 1e9"
                        )))
                    }
                }
            }
            let (lo, hi) = (
                f(p, "low_freq_factor").unwrap_or(1.0),
                f(p, "high_freq_factor").unwrap_or(4.0),
            );
            // Equal factors leave no smoothed band (no division by their difference).
            if hi < lo {
                return Err(ModelError::Inconsistent(format!(
                    "config.json rope_scaling high_freq_factor {hi} is below low_freq_factor {lo}"
                )));
            }
        }
        let rope_freq_divisors = match rope_type {
            "default" => None,
            "llama3" => Some(llama3_divisors(
                rope_dim,
                rope_base,
                rope_params.unwrap_or(c),
            )),
            other => {
                return Err(ModelError::Inconsistent(format!(
                    "RoPE scaling {other:?} is not supported (default and llama3 are)"
                )))
            }
        };
        let ffn_dim = if llama4 {
            need(c, "intermediate_size_mlp")?
        } else {
            need(c, "intermediate_size")?
        };
        check_sizes(&[(
            "config.json intermediate_size",
            ffn_dim,
            crate::model::MAX_FFN,
        )])?;
        let n_experts = u(c, "num_local_experts")
            .or_else(|| u(c, "num_experts"))
            .unwrap_or(0);
        let moe = if n_experts > 0 {
            check_sizes(&[("config.json num_local_experts", n_experts, 256)])?;
            let n_used = need(c, "num_experts_per_tok")?;
            check_sizes(&[("config.json num_experts_per_tok", n_used, n_experts.min(8))])?;
            let norm_topk = c.get("norm_topk_prob").and_then(Value::as_bool);
            Some(MoeConfig {
                n_experts,
                n_used,
                expert_ffn_dim: u(c, "moe_intermediate_size")
                    .map_or_else(|| need(c, "intermediate_size"), Ok)?,
                routing: if llama4 {
                    Routing::SigmoidInput
                } else {
                    Routing::Softmax {
                        renorm: fam.hf_renorm.unwrap_or(norm_topk.unwrap_or(false)),
                    }
                },
            })
        } else {
            None
        };
        let t = |n: &str| format!("{prefix}{n}");
        let has = |n: &str| tensors.contains_key(&t(n));
        let tied = !tensors.contains_key(&format!("{prefix}lm_head.weight"))
            && !tensors.contains_key("lm_head.weight");
        let rope_flags: Vec<bool> = match c.get("no_rope_layers").and_then(Value::as_array) {
            Some(a) if llama4 && !a.is_empty() => a.iter().map(|v| v.as_u64() != Some(0)).collect(),
            _ if llama4 => {
                let every = u(c, "no_rope_layer_interval").unwrap_or(4).max(1);
                (0..n_layers).map(|i| (i + 1) % every != 0).collect()
            }
            _ => vec![true; n_layers],
        };
        if rope_flags.len() != n_layers {
            return Err(ModelError::Inconsistent(format!(
                "no_rope_layers has {} entries for {n_layers} layers",
                rope_flags.len()
            )));
        }
        let (ffn, router_part) = match naming {
            HfNaming::Mlp => ("mlp", "mlp.gate"),
            HfNaming::Mixtral => ("mlp", "block_sparse_moe.gate"),
            HfNaming::Llama4 => ("feed_forward", "feed_forward.router"),
        };
        let mut recipes: HashMap<String, Recipe> = HashMap::new();
        let mut layers = Vec::with_capacity(n_layers);
        for (i, &rope) in rope_flags.iter().enumerate() {
            let lp = |s: &str| format!("model.layers.{i}.{s}");
            let g = |s: &str| format!("blk.{i}.{s}");
            let whole = |hf: String| {
                Recipe::Rows(vec![RowSlice {
                    tensor: t(&hf),
                    row0: 0,
                    rows: usize::MAX,
                }])
            };
            let is_moe = moe.is_some() && has(&lp(&format!("{router_part}.weight")));
            let qkv_bias = has(&lp("self_attn.q_proj.bias"));
            let qk_weights = matches!(qk_family, QkNorm::PerHead | QkNorm::Full);
            let shared = (is_moe && has(&lp(&format!("{ffn}.shared_expert.gate_proj.weight"))))
                .then(|| {
                    let gate = lp(&format!("{ffn}.shared_expert.gate_proj.weight"));
                    SharedExpert {
                        width: tensors[&t(&gate)].shape[0],
                        gate: g("ffn_gate_shexp.weight"),
                        up: g("ffn_up_shexp.weight"),
                        down: g("ffn_down_shexp.weight"),
                        gate_inp: has(&lp("mlp.shared_expert_gate.weight"))
                            .then(|| g("ffn_gate_inp_shexp.weight")),
                    }
                });
            let l = LayerNames {
                attn_norm: g("attn_norm.weight"),
                wq: g("attn_q.weight"),
                wk: g("attn_k.weight"),
                wv: g("attn_v.weight"),
                wo: g("attn_output.weight"),
                bias: qkv_bias.then(|| [g("attn_q.bias"), g("attn_k.bias"), g("attn_v.bias")]),
                ffn_norm: g("ffn_norm.weight"),
                gate: g(if is_moe {
                    "ffn_gate_exps.weight"
                } else {
                    "ffn_gate.weight"
                }),
                up: g(if is_moe {
                    "ffn_up_exps.weight"
                } else {
                    "ffn_up.weight"
                }),
                down: g(if is_moe {
                    "ffn_down_exps.weight"
                } else {
                    "ffn_down.weight"
                }),
                router: is_moe.then(|| g("ffn_gate_inp.weight")),
                qk_norm: qk_weights.then(|| [g("attn_q_norm.weight"), g("attn_k_norm.weight")]),
                rope,
                shared,
            };
            let mut put = |name: &str, r: Recipe| {
                recipes.insert(name.to_string(), r);
            };
            put(&l.attn_norm, whole(lp("input_layernorm.weight")));
            put(&l.ffn_norm, whole(lp("post_attention_layernorm.weight")));
            for (name, p) in [(&l.wq, "q"), (&l.wk, "k"), (&l.wv, "v"), (&l.wo, "o")] {
                put(name, whole(lp(&format!("self_attn.{p}_proj.weight"))));
            }
            if let Some(b) = &l.bias {
                for (name, p) in b.iter().zip(["q", "k", "v"]) {
                    put(name, whole(lp(&format!("self_attn.{p}_proj.bias"))));
                }
            }
            if let Some([qn, kn]) = &l.qk_norm {
                put(qn, whole(lp("self_attn.q_norm.weight")));
                put(kn, whole(lp("self_attn.k_norm.weight")));
            }
            if let Some(s) = &l.shared {
                for (name, p) in [(&s.gate, "gate"), (&s.up, "up"), (&s.down, "down")] {
                    put(
                        name,
                        whole(lp(&format!("{ffn}.shared_expert.{p}_proj.weight"))),
                    );
                }
                if let Some(gi) = &s.gate_inp {
                    put(gi, whole(lp("mlp.shared_expert_gate.weight")));
                }
            }
            match (&l.router, &moe) {
                (Some(router), Some(m)) => {
                    put(router, whole(lp(&format!("{router_part}.weight"))));
                    let (e, i_w) = (m.n_experts, m.expert_ffn_dim);
                    let expert_recipes = expert_recipes(
                        naming,
                        &t(&lp(ffn)),
                        &t(&lp("block_sparse_moe")),
                        e,
                        i_w,
                        hidden,
                        tensors,
                    )?;
                    for (name, r) in [&l.gate, &l.up, &l.down].into_iter().zip(expert_recipes) {
                        put(name, r);
                    }
                }
                _ => {
                    for (name, p) in [(&l.gate, "gate"), (&l.up, "up"), (&l.down, "down")] {
                        put(name, whole(lp(&format!("{ffn}.{p}_proj.weight"))));
                    }
                }
            }
            layers.push(l);
        }
        let whole = |hf: &str| {
            Recipe::Rows(vec![RowSlice {
                tensor: hf.to_string(),
                row0: 0,
                rows: usize::MAX,
            }])
        };
        recipes.insert(
            "token_embd.weight".into(),
            whole(&t("model.embed_tokens.weight")),
        );
        recipes.insert("output_norm.weight".into(), whole(&t("model.norm.weight")));
        if !tied {
            let lm = if tensors.contains_key(&t("lm_head.weight")) {
                t("lm_head.weight")
            } else {
                "lm_head.weight".into()
            };
            recipes.insert("output.weight".into(), whole(&lm));
        }
        let temperature = (llama4
            && c.get("attn_temperature_tuning")
                .and_then(Value::as_bool)
                .unwrap_or(true))
        .then(|| AttnTemperature {
            floor_scale: f(c, "floor_scale").unwrap_or(8192.0) as f32,
            scale: f(c, "attn_scale").unwrap_or(0.1) as f32,
        });
        let config = ModelConfig {
            arch: model_type.clone(),
            vocab_size,
            hidden,
            n_layers,
            n_heads,
            n_kv_heads,
            head_dim,
            ffn_dim,
            rms_eps: f(c, "rms_norm_eps").unwrap_or(1e-6) as f32,
            rope_base,
            rope_dim,
            rope_style: fam.hf_rope,
            rope_freq_divisors,
            context_length: u(c, "max_position_embeddings").unwrap_or(2048),
            tied_output: tied,
            qkv_bias: layers.first().is_some_and(|l| l.bias.is_some()),
            moe,
            qk_norm: qk_family,
            attn_chunk: if llama4 {
                u(c, "attention_chunk_size")
            } else {
                None
            },
            temperature,
        };
        let desc = ModelDesc {
            token_embd: "token_embd.weight".into(),
            output_norm: "output_norm.weight".into(),
            output: if tied {
                "token_embd.weight"
            } else {
                "output.weight"
            }
            .into(),
            layers,
            config,
        };
        desc.validate()?;
        let mut planned = Vec::new();
        for (name, dims) in desc.expected_tensors() {
            let recipe = recipes
                .remove(&name)
                .ok_or_else(|| ModelError::MissingTensor(name.clone()))?;
            planned.push(plan_tensor(name, dims, recipe, tensors)?);
        }
        Ok(HfModel {
            desc,
            tensors: planned,
            bos: u(c, "bos_token_id")
                .or_else(|| u(top, "bos_token_id"))
                .map(|v| v as u32),
            eos: [
                token_ids(c.get("eos_token_id")),
                token_ids(top.get("eos_token_id")),
            ]
            .concat(),
        })
    }

    /// Stores every weight matrix (2-D, or stacked 3-D experts) as `ty` (quantization on load). Rows
    /// that do not divide into `ty`'s blocks fall back as in llama.cpp: Q4_K to Q4_0 (32-element blocks);
    /// rows that fit no block, vectors and one-row matrices keep their type.
    pub fn quantize(&mut self, ty: GgmlType) {
        for p in &mut self.tensors {
            if p.dims.len() < 2 || p.dims[1] <= 1 {
                continue;
            }
            let fits = |t: GgmlType| p.dims[0].is_multiple_of(t.block_elems());
            if fits(ty) {
                p.ggml_type = ty;
            } else if ty == GgmlType::Q4_K && fits(GgmlType::Q4_0) {
                p.ggml_type = GgmlType::Q4_0;
            }
        }
    }

    /// A GGUF-style header over the planned tensors as the GPU stores them (data offsets in a virtual
    /// data section that starts at 0), so the engine takes a checkpoint like a GGUF file.
    pub fn header(&self) -> GgufHeader {
        self.header_with(|p| p.ggml_type)
    }

    /// The header of the bytes as they are streamed: matrices quantized on load keep their source
    /// type ([`PlannedTensor::streamed_type`]). The chunked loader reads this layout.
    pub fn streamed_header(&self) -> GgufHeader {
        self.header_with(PlannedTensor::streamed_type)
    }

    fn header_with(&self, ty: impl Fn(&PlannedTensor) -> GgmlType) -> GgufHeader {
        let mut offset = 0u64;
        let tensors = self
            .tensors
            .iter()
            .map(|p| {
                let rows: u64 = p.dims.iter().skip(1).product();
                let size_bytes = rows * ty(p).row_bytes(p.dims[0]);
                let t = TensorInfo {
                    name: p.name.clone(),
                    dims: p.dims.clone(),
                    ggml_type: ty(p),
                    offset,
                    size_bytes,
                };
                offset = (offset + size_bytes).div_ceil(32) * 32;
                t
            })
            .collect();
        GgufHeader {
            version: 3,
            metadata: BTreeMap::new(),
            tensors,
            alignment: 32,
            data_start: 0,
            file_size: offset,
        }
    }
}

/// The gate, up and down recipes of a MoE layer's experts.
fn expert_recipes(
    naming: HfNaming,
    ffn: &str,
    mixtral: &str,
    e: usize,
    i_w: usize,
    hidden: usize,
    tensors: &HashMap<String, CheckpointTensor>,
) -> Result<[Recipe; 3], ModelError> {
    let missing = |n: String| ModelError::MissingTensor(n);
    let shape_of = |n: &str| tensors.get(n).map(|t| t.shape.clone());
    let check = |n: &str, want: &[usize]| -> Result<(), ModelError> {
        let found = shape_of(n).ok_or_else(|| missing(n.to_string()))?;
        if found != want {
            return Err(ModelError::BadShape {
                name: n.to_string(),
                found: found.iter().map(|&d| d as u64).collect(),
                expected: want.iter().map(|&d| d as u64).collect(),
            });
        }
        Ok(())
    };
    let fused = format!("{ffn}.experts.gate_up_proj");
    let down = format!("{ffn}.experts.down_proj");
    if naming == HfNaming::Llama4 {
        // [E, H, 2I] (x @ gate_up) and [E, I, H] (y @ down): transposed into row-major [E, out, in].
        check(&fused, &[e, hidden, 2 * i_w])?;
        check(&down, &[e, i_w, hidden])?;
        let tr = |tensor: &str, src_rows, src_cols, col0, cols| Recipe::Transpose {
            tensor: tensor.to_string(),
            experts: e,
            src_rows,
            src_cols,
            col0,
            cols,
        };
        return Ok([
            tr(&fused, hidden, 2 * i_w, 0, i_w),
            tr(&fused, hidden, 2 * i_w, i_w, i_w),
            tr(&down, i_w, hidden, 0, hidden),
        ]);
    }
    if tensors.contains_key(&fused) {
        // Fused rows [E, 2I, H]: gate rows first, then up rows, per expert.
        check(&fused, &[e, 2 * i_w, hidden])?;
        check(&down, &[e, hidden, i_w])?;
        let part = |row0| {
            Recipe::Rows(
                (0..e)
                    .map(|x| RowSlice {
                        tensor: fused.clone(),
                        row0: x * 2 * i_w + row0,
                        rows: i_w,
                    })
                    .collect(),
            )
        };
        let whole = Recipe::Rows(vec![RowSlice {
            tensor: down,
            row0: 0,
            rows: e * hidden,
        }]);
        return Ok([part(0), part(i_w), whole]);
    }
    let names = match naming {
        HfNaming::Mixtral => ["w1", "w3", "w2"],
        _ => ["gate_proj", "up_proj", "down_proj"],
    };
    let base = if naming == HfNaming::Mixtral {
        mixtral
    } else {
        ffn
    };
    let mut out = Vec::with_capacity(3);
    for (j, w) in names.iter().enumerate() {
        let mut rows = Vec::with_capacity(e);
        for x in 0..e {
            let n = format!("{base}.experts.{x}.{w}.weight");
            let want = if j == 2 { [hidden, i_w] } else { [i_w, hidden] };
            check(&n, &want)?;
            rows.push(RowSlice {
                tensor: n,
                row0: 0,
                rows: want[0],
            });
        }
        // More experts in the checkpoint than the config says is an inconsistency, not a detail.
        let extra = format!("{base}.experts.{e}.{w}.weight");
        if tensors.contains_key(&extra) {
            return Err(ModelError::Inconsistent(format!(
                "the checkpoint has more experts than the config's {e} ({extra} exists)"
            )));
        }
        out.push(Recipe::Rows(rows));
    }
    let [g, u, d]: [Recipe; 3] = out.try_into().expect("three recipes");
    Ok([g, u, d])
}

/// Checks the recipe's source shapes against the expected GGUF dims and fixes `usize::MAX` row counts.
fn plan_tensor(
    name: String,
    dims: Vec<u64>,
    recipe: Recipe,
    tensors: &HashMap<String, CheckpointTensor>,
) -> Result<PlannedTensor, ModelError> {
    let get = |n: &str| {
        tensors
            .get(n)
            .ok_or_else(|| ModelError::MissingTensor(n.to_string()))
    };
    let elems: u64 = dims.iter().product();
    let (recipe, src_type) = match recipe {
        Recipe::Rows(slices) => {
            let mut ty = None;
            let mut total = 0u64;
            let mut fixed = Vec::with_capacity(slices.len());
            for mut s in slices {
                let t = get(&s.tensor)?;
                let row = *t.shape.last().unwrap_or(&1);
                let n_rows = t.shape.iter().product::<usize>() / row.max(1);
                if s.rows == usize::MAX {
                    // A whole tensor: its shape (PyTorch order) must be the expected one.
                    let found: Vec<u64> = t.shape.iter().rev().map(|&d| d as u64).collect();
                    if !same_shape(&found, &dims) {
                        return Err(ModelError::BadShape {
                            name: s.tensor.clone(),
                            found: t.shape.iter().map(|&d| d as u64).collect(),
                            expected: dims.iter().rev().copied().collect(),
                        });
                    }
                    s.rows = n_rows;
                }
                if s.row0 + s.rows > n_rows || row as u64 != dims[0] {
                    return Err(ModelError::Inconsistent(format!(
                        "{} has rows of {row}, {n_rows} rows; {name} needs rows of {} at {}..{}",
                        s.tensor,
                        dims[0],
                        s.row0,
                        s.row0 + s.rows
                    )));
                }
                total += (s.rows * row) as u64;
                if ty.is_some_and(|x| x != t.dtype) {
                    return Err(ModelError::Inconsistent(format!(
                        "{name} mixes element types"
                    )));
                }
                ty = Some(t.dtype);
                fixed.push(s);
            }
            if total != elems {
                return Err(ModelError::Inconsistent(format!(
                    "{name} needs {elems} elements, the checkpoint gives {total}"
                )));
            }
            (Recipe::Rows(fixed), ty.unwrap_or(GgmlType::F32))
        }
        r @ Recipe::Transpose { .. } => {
            let Recipe::Transpose { tensor, .. } = &r else {
                unreachable!()
            };
            let ty = get(tensor)?.dtype;
            (r, ty)
        }
    };
    let ggml_type = if dims.len() == 1 {
        GgmlType::F32
    } else {
        src_type
    };
    Ok(PlannedTensor {
        name,
        dims,
        src_type,
        ggml_type,
        recipe,
    })
}
