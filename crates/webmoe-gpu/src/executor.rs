//! The executor: turns a [`ModelDesc`] into GPU launches built once at load, and runs prefill and
//! decode calls. A call writes the token ids and one small "step" uniform, encodes the prepared launches
//! in one compute pass, and (when sampling) reads back only the chosen token id.

mod layer;
#[cfg(not(target_arch = "wasm32"))]
mod profile;

use crate::kernels::attention;
use crate::kernels::kv::{self, LayerCache};
use crate::kernels::linear::{self, Layout, Linear};
use crate::kernels::sampler::Sampler;
use crate::kernels::{embed, norm, rope};
use crate::op::{encode_ops, Op};
use crate::readback::{map_and_read, read_buffer};
use crate::uniforms::StepParams;
use crate::weights::WeightStore;
use crate::{Gpu, GpuError};
use webmoe_core::gguf::GgufHeader;
use webmoe_core::kv::CachedTokens;
use webmoe_core::model::ModelDesc;
use webmoe_core::quant::GgmlType;
use webmoe_core::sampling::Draw;

pub use webmoe_core::options::{EngineOptions, KvDtype};

/// How much GPU memory a model needs, and whether it fits.
#[derive(Debug, Clone)]
pub struct MemoryPlan {
    /// Weight bytes.
    pub weights: u64,
    /// KV cache bytes.
    pub kv_cache: u64,
    /// Activation scratch bytes.
    pub scratch: u64,
    /// Largest single buffer.
    pub largest_buffer: u64,
}

impl MemoryPlan {
    /// Total bytes.
    pub fn total(&self) -> u64 {
        self.weights + self.kv_cache + self.scratch
    }
}

struct Scratch {
    x: wgpu::Buffer,
    xn: wgpu::Buffer,
    q: wgpu::Buffer,
    k: wgpu::Buffer,
    v: wgpu::Buffer,
    att: wgpu::Buffer,
    gate: wgpu::Buffer,
    up: wgpu::Buffer,
    part: wgpu::Buffer,
    logits: wgpu::Buffer,
    ids: wgpu::Buffer,
    step: wgpu::Buffer,
    token_staging: wgpu::Buffer,
    moe: Option<MoeScratch>,
}

/// KV cache slots of block `l`: the context, or a ring for a chunked-attention layer.
fn cache_slots(
    desc: &ModelDesc,
    l: &webmoe_core::model::LayerNames,
    ctx: usize,
    prefill_chunk: usize,
) -> usize {
    webmoe_core::plan::LayerPlan::new(desc, l)
        .attention
        .cache_slots(ctx, prefill_chunk)
}

/// How attention runs for `desc` on `gpu` with calls of up to `prefill_chunk` tokens.
fn attention_plan(
    gpu: &Gpu,
    desc: &ModelDesc,
    ctx: usize,
    prefill_chunk: usize,
) -> attention::Plan {
    let slots = max_cache_slots(desc, ctx, prefill_chunk);
    gpu.attention_plan()
        .fit(prefill_chunk, desc.config.n_heads, slots)
}

/// The most cache slots any layer has.
fn max_cache_slots(desc: &ModelDesc, ctx: usize, prefill_chunk: usize) -> usize {
    desc.layers
        .iter()
        .map(|l| cache_slots(desc, l, ctx, prefill_chunk))
        .max()
        .unwrap_or(0)
}

/// One step of a forward pass: its launches for decode (one token) and for prefill (several).
struct Launch {
    /// Kind, for `bench --profile`.
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    name: &'static str,
    decode: Vec<Op>,
    prefill: Vec<Op>,
}

impl Launch {
    fn lin(name: &'static str, l: Linear) -> Self {
        Launch {
            name,
            decode: l.decode,
            prefill: l.prefill,
        }
    }
    fn ops(name: &'static str, ops: Vec<Op>) -> Self {
        Launch {
            name,
            decode: ops.clone(),
            prefill: ops,
        }
    }
    fn op(name: &'static str, op: Op) -> Self {
        Self::ops(name, vec![op])
    }
}

/// Scratch of the MoE layers.
struct MoeScratch {
    logits: wgpu::Buffer,
    ids: wgpu::Buffer,
    weights: wgpu::Buffer,
    out: wgpu::Buffer,
    /// Input-weighted routing (Llama 4): the scaled input of each (token, slot).
    xs: Option<wgpu::Buffer>,
    /// The shared-expert gate logit of each token (Qwen2-MoE).
    shared_gate: wgpu::Buffer,
    /// Prefill: the slots grouped by expert (offsets `[E + 1]`, slots `[T * k]`).
    offsets: wgpu::Buffer,
    sorted: wgpu::Buffer,
}

/// A loaded model on the GPU with its KV cache.
pub struct Engine {
    /// The device.
    pub gpu: Gpu,
    /// The model.
    pub desc: ModelDesc,
    /// Settings.
    pub opts: EngineOptions,
    pub(crate) weights: WeightStore,
    s: Scratch,
    _kv: Vec<LayerCache>,
    _rope_tables: wgpu::Buffer,
    embed: Vec<Op>,
    layers: Vec<Vec<Launch>>,
    final_norm: Op,
    lm_head: Linear,
    sampler: Sampler,
    attention_plan: attention::Plan,
    /// Tokens in the KV cache (`cached.len()`).
    pos: usize,
    /// The token ids the KV cache holds.
    cached: CachedTokens,
}

fn f32s(n: usize) -> u64 {
    (n * 4) as u64
}

/// Memory needed by `desc` under `opts` on `gpu`, checked against the device limits.
///
/// # Errors
/// [`GpuError::TooLarge`] when a buffer exceeds the device's buffer size or a tensor cannot be split to
/// fit one storage binding; [`GpuError::Invalid`] naming a tensor whose type the GPU kernels do not run
/// (MXFP4).
pub fn plan(
    gpu: &Gpu,
    desc: &ModelDesc,
    h: &GgufHeader,
    opts: &EngineOptions,
) -> Result<MemoryPlan, GpuError> {
    let c = &desc.config;
    let ctx = opts.max_context.min(c.context_length).max(1);
    let t = opts.prefill_chunk;
    let f16 = opts.kv_dtype == KvDtype::F16;
    let kv_bytes: Vec<u64> = desc
        .layers
        .iter()
        .map(|l| kv::layer_bytes(c.n_kv_heads, c.head_dim, cache_slots(desc, l, ctx, t), f16))
        .collect();
    let layer_kv = kv_bytes.iter().copied().max().unwrap_or(0);
    let slots = max_cache_slots(desc, ctx, t);
    // (bytes of one buffer, how many such buffers)
    let scratch: Vec<(u64, u64)> = [
        (f32s(t * c.hidden), 2),
        (f32s(t * c.n_heads * c.head_dim), 2),
        (f32s(t * c.n_kv_heads * c.head_dim), 2),
        (f32s(t * desc.ffn_scratch_width()), 2),
        (
            f32s(attention::partial_len(
                t,
                c.n_heads,
                c.head_dim,
                slots,
                attention_plan(gpu, desc, ctx, t),
            )),
            1,
        ),
        (f32s(c.vocab_size), 2),
    ]
    .into_iter()
    .chain(c.moe.iter().flat_map(|m| {
        [
            (f32s(t * m.n_experts), 1),
            (f32s(t * m.n_used), 2),
            (f32s(t * m.n_used * c.hidden), 1),
            (
                f32s(t * m.n_used * c.hidden),
                u64::from(m.routing.weights_input()),
            ),
            (f32s(t), 1),
            (f32s(m.n_experts + 1), 1),
            (f32s(t * m.n_used), 1),
        ]
    }))
    .collect();
    let mut largest = layer_kv;
    for (name, _) in desc.expected_tensors() {
        if let Some(ti) = h.tensor(&name) {
            if !webmoe_core::quant::GgmlType::ALL.contains(&ti.ggml_type) {
                return Err(GpuError::Invalid(format!(
                    "tensor {name} is {}, which the GPU kernels do not run yet; the CPU backend (device cpu) does",
                    ti.ggml_type.name()
                )));
            }
            let per =
                crate::weights::rows_per_shard(ti.row_bytes(), ti.n_rows(), gpu.max_binding_bytes)?;
            largest = largest.max(per * ti.row_bytes());
        }
    }
    largest = largest.max(scratch.iter().map(|b| b.0).max().unwrap_or(0));
    let limit = gpu.max_binding_bytes;
    if largest > limit {
        return Err(GpuError::TooLarge(format!(
            "a buffer of {} MiB exceeds this device's storage binding limit of {} MiB (lower --ctx or the prefill chunk)",
            largest >> 20,
            limit >> 20
        )));
    }
    Ok(MemoryPlan {
        weights: desc.weight_bytes(h),
        kv_cache: kv_bytes.iter().sum::<u64>() * 2,
        scratch: scratch.iter().map(|(b, n)| b * n).sum(),
        largest_buffer: largest,
    })
}

impl Engine {
    /// Allocates weights, KV cache and scratch, and builds every launch. Weights are empty until the
    /// loader streams them in through [`Engine::weights_mut`] and [`Engine::finish_upload`] is called.
    ///
    /// # Errors
    /// [`GpuError::TooLarge`] when the model does not fit the device, other [`GpuError`]s when a
    /// pipeline cannot be built.
    pub async fn new(
        gpu: Gpu,
        desc: ModelDesc,
        h: &GgufHeader,
        opts: EngineOptions,
    ) -> Result<Self, GpuError> {
        plan(&gpu, &desc, h, &opts)?;
        // Allocation failures the plan cannot foresee (the device's total memory) come back as errors
        // instead of the default handler's panic.
        let oom = gpu.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let invalid = gpu.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let engine = Self::build(gpu, desc, h, opts);
        let (invalid, oom) = (invalid.pop().await, oom.pop().await);
        if let Some(e) = oom {
            return Err(GpuError::TooLarge(format!(
                "the device ran out of memory while allocating the model: {e}"
            )));
        }
        if let Some(e) = invalid {
            return Err(GpuError::Device(format!(
                "setting up the model failed: {e}"
            )));
        }
        engine
    }

    fn build(
        gpu: Gpu,
        desc: ModelDesc,
        h: &GgufHeader,
        mut opts: EngineOptions,
    ) -> Result<Self, GpuError> {
        let c = desc.config.clone();
        opts.max_context = opts.max_context.min(c.context_length).max(1);
        let (t, ctx) = (opts.prefill_chunk, opts.max_context);
        let f16 = opts.kv_dtype == KvDtype::F16;
        let needed: Vec<(usize, &webmoe_core::gguf::TensorInfo)> = desc
            .tensor_indices(h)
            .into_iter()
            .map(|i| (i, &h.tensors[i]))
            .collect();
        let weights = WeightStore::allocate(&gpu, &needed)?;
        let (qd, kvd) = (c.n_heads * c.head_dim, c.n_kv_heads * c.head_dim);
        let att_plan = attention_plan(&gpu, &desc, ctx, t);
        let s = Scratch {
            x: gpu.storage("x", f32s(t * c.hidden)),
            xn: gpu.storage("xn", f32s(t * c.hidden)),
            q: gpu.storage("q", f32s(t * qd)),
            k: gpu.storage("k", f32s(t * kvd)),
            v: gpu.storage("v", f32s(t * kvd)),
            att: gpu.storage("att", f32s(t * qd)),
            gate: gpu.storage("gate", f32s(t * desc.ffn_scratch_width())),
            up: gpu.storage("up", f32s(t * desc.ffn_scratch_width())),
            part: gpu.storage(
                "attention partials",
                f32s(attention::partial_len(
                    t,
                    c.n_heads,
                    c.head_dim,
                    max_cache_slots(&desc, ctx, t),
                    att_plan,
                )),
            ),
            logits: gpu.storage("logits", f32s(c.vocab_size)),
            ids: gpu.storage("ids", (t * 4) as u64),
            step: gpu.uniform_of(&StepParams::default()),
            token_staging: gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("token readback"),
                size: 4,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }),
            moe: c.moe.map(|m| MoeScratch {
                logits: gpu.storage("router logits", f32s(t * m.n_experts)),
                ids: gpu.storage("expert ids", (t * m.n_used * 4) as u64),
                weights: gpu.storage("expert weights", f32s(t * m.n_used)),
                out: gpu.storage("expert outputs", f32s(t * m.n_used * c.hidden)),
                xs: m
                    .routing
                    .weights_input()
                    .then(|| gpu.storage("expert inputs", f32s(t * m.n_used * c.hidden))),
                shared_gate: gpu.storage("shared expert gate", f32s(t)),
                offsets: gpu.storage("expert offsets", ((m.n_experts + 1) * 4) as u64),
                sorted: gpu.storage("slots by expert", (t * m.n_used * 4) as u64),
            }),
        };
        let kv_caches: Vec<LayerCache> = desc
            .layers
            .iter()
            .map(|l| {
                let slots = cache_slots(&desc, l, ctx, t);
                kv::alloc(&gpu, c.n_kv_heads, c.head_dim, slots, f16)
            })
            .collect();
        let rope_tables = rope::tables(&gpu, &c, ctx);
        let g = &gpu;
        let plain = Layout::default();
        let rms = norm::Rms {
            n: c.hidden as u32,
            eps: c.rms_eps,
            last_only: false,
        };
        let shared = layer::Shared {
            attention_plan: att_plan,
            gpu: g,
            c: &c,
            weights: &weights,
            s: &s,
            rope_tables: &rope_tables,
            ctx,
            f16,
        };
        let layers = desc
            .layer_plans()
            .iter()
            .zip(&kv_caches)
            .map(|(l, cache)| layer::build(&shared, l, cache))
            .collect::<Result<Vec<_>, _>>()?;
        let embed = embed::build(g, weights.get(&desc.token_embd)?, &s.ids, &s.x, &s.step)?;
        let final_norm = norm::build(
            g,
            &s.x,
            &weights.get(&desc.output_norm)?.shards[0].buffer,
            &s.xn,
            &s.step,
            norm::Rms {
                last_only: true,
                ..rms
            },
        )?;
        let lm_head = linear::build(
            g,
            weights.get(&desc.output)?,
            &s.xn,
            &s.logits,
            &s.step,
            plain,
        )?;
        let sampler = Sampler::new(g, &s.logits, c.vocab_size)?;
        let cached = CachedTokens::new(&desc.layer_plans(), opts.max_context, opts.prefill_chunk);
        Ok(Engine {
            gpu,
            desc,
            opts,
            weights,
            s,
            _kv: kv_caches,
            _rope_tables: rope_tables,
            embed,
            layers,
            final_norm,
            lm_head,
            sampler,
            attention_plan: att_plan,
            pos: 0,
            cached,
        })
    }

    /// The weight store, to stream tensor data into.
    pub fn weights_mut(&mut self) -> &mut WeightStore {
        &mut self.weights
    }

    /// Declares that tensor `index` of the header will be streamed as rows of `src` (F32/F16/BF16)
    /// and quantized on the GPU into the type the header gives it (quantization on load).
    ///
    /// # Errors
    /// [`GpuError::Invalid`] for an unknown tensor or unsupported types.
    pub fn quantize_on_upload(&mut self, index: usize, src: GgmlType) -> Result<(), GpuError> {
        self.weights.quantize_on_upload(&self.gpu, index, src)
    }

    /// Completes the upload (flushes partial words) and waits until the GPU has the data.
    ///
    /// # Errors
    /// [`GpuError::Device`] if the device fails.
    pub fn finish_upload(&mut self) -> Result<(), GpuError> {
        self.weights.finish()?;
        self.gpu.queue.submit([]);
        #[cfg(not(target_arch = "wasm32"))]
        self.gpu
            .device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| GpuError::Device(e.to_string()))?;
        Ok(())
    }

    /// Forgets the KV cache (the next call starts at position 0).
    pub fn reset(&mut self) {
        self.rewind(0);
    }

    /// Tokens in the KV cache (the next token's position).
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// The token ids the KV cache holds.
    pub fn cached(&self) -> &CachedTokens {
        &self.cached
    }

    /// Keeps the first `n` cached positions, or fewer where a chunked-attention ring forgot what
    /// position `n` needs ([`CachedTokens::rewind`]); returns how many it kept.
    pub fn rewind(&mut self, n: usize) -> usize {
        self.pos = self.cached.rewind(n);
        self.pos
    }

    /// Runs `ids` at the next positions (in prefill chunks). Afterwards the logits buffer holds the
    /// last token's logits. With `sample`, also draws the next token on the GPU and returns it.
    ///
    /// # Errors
    /// [`GpuError::Invalid`] when the tokens do not fit the context; [`GpuError::Readback`] when the
    /// device fails.
    pub async fn forward(
        &mut self,
        ids: &[u32],
        sample: Option<Draw<'_>>,
    ) -> Result<Option<u32>, GpuError> {
        if ids.is_empty() {
            return Err(GpuError::Invalid("no tokens to run".into()));
        }
        if self.pos + ids.len() > self.opts.max_context {
            return Err(GpuError::Invalid(format!(
                "{} tokens do not fit: {} already in context, context size is {} (raise --ctx, up to the model's {})",
                ids.len(),
                self.pos,
                self.opts.max_context,
                self.desc.config.context_length
            )));
        }
        let vocab = self.desc.config.vocab_size as u32;
        if let Some(bad) = ids.iter().find(|&&i| i >= vocab) {
            return Err(GpuError::Invalid(format!(
                "token id {bad} is outside the vocabulary of {vocab}"
            )));
        }
        let chunks: Vec<&[u32]> = ids.chunks(self.opts.prefill_chunk).collect();
        let n_chunks = chunks.len();
        for (ci, chunk) in chunks.into_iter().enumerate() {
            let last = ci + 1 == n_chunks;
            let n = chunk.len() as u32;
            let n_splits =
                attention::n_splits(n, (self.pos + chunk.len()) as u32, self.attention_plan);
            self.gpu
                .queue
                .write_buffer(&self.s.ids, 0, bytemuck::cast_slice(chunk));
            self.gpu.queue.write_buffer(
                &self.s.step,
                0,
                bytemuck::cast_slice(&[StepParams {
                    n_tokens: n,
                    pos0: self.pos as u32,
                    n_splits,
                    pad: 0,
                }]),
            );
            let mut enc = self.gpu.device.create_command_encoder(&Default::default());
            {
                let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: None,
                    timestamp_writes: None,
                });
                self.encode_forward(&mut pass, n, n_splits, last);
            }
            if last {
                if let Some(d) = &sample {
                    self.sampler.prepare(&self.gpu, d);
                    encode_ops(&mut enc, std::slice::from_ref(self.sampler.op()), 1, 1);
                    enc.copy_buffer_to_buffer(&self.sampler.out, 0, &self.s.token_staging, 0, 4);
                }
            }
            self.gpu.queue.submit([enc.finish()]);
            self.pos += chunk.len();
            self.cached.extend(chunk);
        }
        let out = self.finish_step(sample.is_some()).await;
        if out.is_err() {
            // A failed step may have written part of a ring: trust nothing cached.
            self.reset();
        }
        out
    }

    /// Waits for the submitted step and reads the sampled token back.
    async fn finish_step(&self, sampled: bool) -> Result<Option<u32>, GpuError> {
        self.gpu.check()?;
        if !sampled {
            return Ok(None);
        }
        let b = map_and_read(&self.gpu, &self.s.token_staging, 4).await?;
        self.gpu.check()?;
        Ok(Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]])))
    }

    fn encode_forward(
        &self,
        pass: &mut wgpu::ComputePass,
        n: u32,
        n_splits: u32,
        with_logits: bool,
    ) {
        for op in &self.embed {
            op.encode(pass, n, n_splits);
        }
        for launch in self.layers.iter().flatten() {
            for op in if n == 1 {
                &launch.decode
            } else {
                &launch.prefill
            } {
                op.encode(pass, n, n_splits);
            }
        }
        if with_logits {
            self.final_norm.encode(pass, n, n_splits);
            for op in &self.lm_head.decode {
                op.encode(pass, 1, n_splits);
            }
        }
    }

    /// Reads back the logits of the last token of the last call.
    ///
    /// # Errors
    /// [`GpuError::Readback`] when the device fails.
    pub async fn logits(&self) -> Result<Vec<f32>, GpuError> {
        let b = read_buffer(&self.gpu, &self.s.logits, f32s(self.desc.config.vocab_size)).await?;
        Ok(bytemuck::cast_slice(&b).to_vec())
    }

    /// Bytes of the stacked expert tensors, and the share of them one decode token reads (k of E
    /// experts: the expert kernels address only the chosen experts' rows).
    pub fn expert_bytes(&self) -> (u64, u64) {
        let Some(m) = self.desc.config.moe else {
            return (0, 0);
        };
        let all: u64 = self
            .desc
            .layers
            .iter()
            .filter(|l| l.router.is_some())
            .flat_map(|l| [&l.gate, &l.up, &l.down])
            .filter_map(|n| self.weights.get(n).ok())
            .map(|t| t.row_bytes * t.n_rows())
            .sum();
        (all, all * m.n_used as u64 / m.n_experts as u64)
    }

    /// Bytes the weights take on the device.
    pub fn weight_bytes(&self) -> u64 {
        self.weights.total_bytes()
    }

    /// Kernel launches of one decode step (embedding, every layer's, final norm, output, sampler).
    pub fn decode_launches(&self) -> usize {
        let layers: usize = self.layers.iter().flatten().map(|l| l.decode.len()).sum();
        self.embed.len() + layers + 1 + self.lm_head.decode.len() + 1
    }

    /// Weight bytes read per decode token: every weight except the embedding table (decode reads one
    /// row of it), and of the experts only the k chosen per MoE layer.
    pub fn weight_bytes_per_token(&self) -> u64 {
        let (all_experts, used_experts) = self.expert_bytes();
        let embd = self
            .weights
            .get(&self.desc.token_embd)
            .map(|t| t.row_bytes * t.n_rows())
            .unwrap_or(0);
        let tied_extra = if self.desc.config.tied_output {
            embd
        } else {
            0
        };
        self.weights.total_bytes() - embd + tied_extra - all_experts + used_experts
    }
}

impl webmoe_core::generate::Backend for Engine {
    type Error = GpuError;

    fn pos(&self) -> usize {
        self.pos
    }

    fn max_context(&self) -> usize {
        self.opts.max_context
    }

    fn model_context(&self) -> usize {
        self.desc.config.context_length
    }

    fn reset(&mut self) {
        Engine::reset(self);
    }

    fn cached(&self) -> &CachedTokens {
        &self.cached
    }

    fn rewind(&mut self, n: usize) -> usize {
        Engine::rewind(self, n)
    }

    async fn forward(
        &mut self,
        ids: &[u32],
        sample: Option<Draw<'_>>,
    ) -> Result<Option<u32>, GpuError> {
        Engine::forward(self, ids, sample).await
    }

    async fn logits(&self) -> Result<Vec<f32>, GpuError> {
        Engine::logits(self).await
    }
}
