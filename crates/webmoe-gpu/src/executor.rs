//! The executor: turns a [`ModelDesc`] into GPU launches built once at load, and runs prefill and
//! decode calls. A call writes the token ids and one small "step" uniform, encodes the prepared launches
//! in one compute pass, and (when sampling) reads back only the chosen token id.

#[cfg(not(target_arch = "wasm32"))]
mod profile;

use crate::kernels::attention::{self, Shape};
use crate::kernels::elementwise::{self, Kind};
use crate::kernels::kv::{self, LayerCache};
use crate::kernels::linear::{self, Layout, Linear};
use crate::kernels::moe::{self, Routed};
use crate::kernels::sampler::Sampler;
use crate::kernels::{embed, norm, rope};
use crate::op::{encode_ops, Op};
use crate::readback::{map_and_read, read_buffer};
use crate::weights::WeightStore;
use crate::{Gpu, GpuError};
use webmoe_core::gguf::GgufHeader;
use webmoe_core::model::ModelDesc;
use webmoe_core::sampling::SamplingParams;

/// Element type of the KV cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvDtype {
    /// Packed f16 (default: half the memory).
    F16,
    /// f32 (exact; used by the tight reference tests).
    F32,
}

/// Engine settings.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Positions the KV cache holds (prompt + generated tokens). Capped at the model's context length.
    pub max_context: usize,
    /// Tokens per prefill call (scratch buffers are sized for this).
    pub prefill_chunk: usize,
    /// KV cache element type.
    pub kv_dtype: KvDtype,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            max_context: 4096,
            prefill_chunk: 256,
            kv_dtype: KvDtype::F16,
        }
    }
}

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

/// Elements per token of the SwiGLU scratch: the dense width, or k expert widths.
fn ffn_scratch(c: &webmoe_core::model::ModelConfig) -> usize {
    c.moe
        .map_or(c.ffn_dim, |m| m.n_used * m.expert_ffn_dim)
        .max(c.ffn_dim)
}

struct LayerOps {
    attn_norm: Op,
    q: Linear,
    k: Linear,
    v: Linear,
    bias: Vec<Op>,
    rope: Op,
    kv_store: Op,
    attn: [Op; 2],
    wo: Linear,
    ffn_norm: Op,
    /// MoE layers: the router mat-vec and the top-k launch.
    router: Option<(Linear, Op)>,
    /// Dense: the SwiGLU projections. MoE: the expert launches (the same ops serve decode and prefill).
    gate: Linear,
    up: Linear,
    swiglu: Op,
    down: Linear,
    /// MoE layers: the weighted sum of the expert outputs into the residual stream.
    combine: Option<Op>,
}

/// Scratch of the MoE layers.
struct MoeScratch {
    logits: wgpu::Buffer,
    ids: wgpu::Buffer,
    weights: wgpu::Buffer,
    out: wgpu::Buffer,
}

/// A loaded model on the GPU with its KV cache.
pub struct Engine {
    /// The device.
    pub gpu: Gpu,
    /// The model.
    pub desc: ModelDesc,
    /// Settings.
    pub opts: EngineOptions,
    weights: WeightStore,
    s: Scratch,
    _kv: Vec<LayerCache>,
    _rope_tables: wgpu::Buffer,
    embed: Vec<Op>,
    layers: Vec<LayerOps>,
    final_norm: Op,
    lm_head: Linear,
    sampler: Sampler,
    /// Tokens in the KV cache.
    pub pos: usize,
}

fn f32s(n: usize) -> u64 {
    (n * 4) as u64
}

/// Memory needed by `desc` under `opts` on `gpu`, checked against the device limits.
///
/// # Errors
/// [`GpuError::TooLarge`] when a buffer exceeds the device's buffer size or a tensor cannot be split to
/// fit one storage binding.
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
    let layer_kv = kv::layer_bytes(c.n_kv_heads, c.head_dim, ctx, f16);
    // (bytes of one buffer, how many such buffers)
    let scratch: Vec<(u64, u64)> = [
        (f32s(t * c.hidden), 2),
        (f32s(t * c.n_heads * c.head_dim), 2),
        (f32s(t * c.n_kv_heads * c.head_dim), 2),
        (f32s(t * ffn_scratch(c)), 2),
        (f32s(attention::partial_len(t, c.n_heads, c.head_dim)), 1),
        (f32s(c.vocab_size), 2),
    ]
    .into_iter()
    .chain(c.moe.iter().flat_map(|m| {
        [
            (f32s(t * m.n_experts), 1),
            (f32s(t * m.n_used), 2),
            (f32s(t * m.n_used * c.hidden), 1),
        ]
    }))
    .collect();
    let mut largest = layer_kv;
    for (name, _) in desc.expected_tensors() {
        if let Some(ti) = h.tensor(&name) {
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
        kv_cache: layer_kv * 2 * c.n_layers as u64,
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
        let needed: Vec<(usize, &webmoe_core::gguf::TensorInfo)> = {
            let names: Vec<String> = desc
                .expected_tensors()
                .into_iter()
                .map(|(n, _)| n)
                .collect();
            h.tensors
                .iter()
                .enumerate()
                .filter(|(_, ti)| names.contains(&ti.name))
                .collect()
        };
        let weights = WeightStore::allocate(&gpu, &needed)?;
        let (qd, kvd) = (c.n_heads * c.head_dim, c.n_kv_heads * c.head_dim);
        let s = Scratch {
            x: gpu.storage("x", f32s(t * c.hidden)),
            xn: gpu.storage("xn", f32s(t * c.hidden)),
            q: gpu.storage("q", f32s(t * qd)),
            k: gpu.storage("k", f32s(t * kvd)),
            v: gpu.storage("v", f32s(t * kvd)),
            att: gpu.storage("att", f32s(t * qd)),
            gate: gpu.storage("gate", f32s(t * ffn_scratch(&c))),
            up: gpu.storage("up", f32s(t * ffn_scratch(&c))),
            part: gpu.storage(
                "attention partials",
                f32s(attention::partial_len(t, c.n_heads, c.head_dim)),
            ),
            logits: gpu.storage("logits", f32s(c.vocab_size)),
            ids: gpu.storage("ids", (t * 4) as u64),
            step: gpu.uniform(&[0; 4]),
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
            }),
        };
        let kv_caches: Vec<LayerCache> = (0..c.n_layers)
            .map(|_| kv::alloc(&gpu, c.n_kv_heads, c.head_dim, ctx, f16))
            .collect();
        let rope_tables = rope::tables(&gpu, &c, ctx);
        let g = &gpu;
        let shape = Shape {
            n_heads: c.n_heads,
            n_kv_heads: c.n_kv_heads,
            head_dim: c.head_dim,
            max_pos: ctx,
            scale: 1.0 / (c.head_dim as f32).sqrt(),
            f16,
        };
        let plain = Layout::default();
        let rms = norm::Rms {
            n: c.hidden as u32,
            eps: c.rms_eps,
            last_only: false,
        };
        let residual = Layout {
            accumulate: true,
            ..Layout::default()
        };
        let mut layers = Vec::with_capacity(c.n_layers);
        for (l, cache) in desc.layers.iter().zip(&kv_caches) {
            let w = |n: &str| weights.get(n);
            let mut bias = Vec::new();
            if let Some([bq, bk, bv]) = &l.bias {
                for (buf, name, n) in [(&s.q, bq, qd), (&s.k, bk, kvd), (&s.v, bv, kvd)] {
                    bias.push(elementwise::build(
                        g,
                        Kind::AddBias,
                        buf,
                        &w(name)?.shards[0].buffer,
                        &s.step,
                        n as u32,
                    )?);
                }
            }
            let (router, gate, up, swiglu, down, combine) = match (&l.router, &c.moe, &s.moe) {
                (Some(rname), Some(m), Some(ms)) => {
                    let r = Routed {
                        ids: &ms.ids,
                        weights: &ms.weights,
                        step: &s.step,
                        k: m.n_used,
                    };
                    let router_lin =
                        linear::build(g, w(rname)?, &s.xn, &ms.logits, &s.step, plain)?;
                    let route = moe::route(g, &ms.logits, r, m.n_experts, m.routing)?;
                    let both = |ops: Vec<Op>| Linear {
                        vec: ops.clone(),
                        mat: ops,
                    };
                    let i = m.expert_ffn_dim;
                    let per_slot = m.routing.weights_input();
                    if per_slot {
                        return Err(GpuError::Invalid(
                            "input-weighted routing (Llama 4) is not wired into the executor yet"
                                .into(),
                        ));
                    }
                    (
                        Some((router_lin, route)),
                        both(moe::experts(g, w(&l.gate)?, i, &s.xn, &s.gate, r, false)?),
                        both(moe::experts(g, w(&l.up)?, i, &s.xn, &s.up, r, false)?),
                        elementwise::build(
                            g,
                            Kind::SwiGlu,
                            &s.gate,
                            &s.up,
                            &s.step,
                            (m.n_used * i) as u32,
                        )?,
                        both(moe::experts(
                            g,
                            w(&l.down)?,
                            c.hidden,
                            &s.gate,
                            &ms.out,
                            r,
                            true,
                        )?),
                        Some(moe::combine(g, &ms.out, &s.x, r, c.hidden, true)?),
                    )
                }
                _ => (
                    None,
                    linear::build(g, w(&l.gate)?, &s.xn, &s.gate, &s.step, plain)?,
                    linear::build(g, w(&l.up)?, &s.xn, &s.up, &s.step, plain)?,
                    elementwise::build(g, Kind::SwiGlu, &s.gate, &s.up, &s.step, c.ffn_dim as u32)?,
                    linear::build(g, w(&l.down)?, &s.gate, &s.x, &s.step, residual)?,
                    None,
                ),
            };
            layers.push(LayerOps {
                attn_norm: norm::build(
                    g,
                    &s.x,
                    &w(&l.attn_norm)?.shards[0].buffer,
                    &s.xn,
                    &s.step,
                    rms,
                )?,
                q: linear::build(g, w(&l.wq)?, &s.xn, &s.q, &s.step, plain)?,
                k: linear::build(g, w(&l.wk)?, &s.xn, &s.k, &s.step, plain)?,
                v: linear::build(g, w(&l.wv)?, &s.xn, &s.v, &s.step, plain)?,
                bias,
                rope: rope::build(g, &c, &s.q, &s.k, &rope_tables, &s.step, ctx)?,
                kv_store: kv::build_store(g, &s.k, &s.v, cache, &s.step)?,
                attn: attention::build(g, shape, &s.q, cache, &s.part, &s.att, &s.step)?,
                wo: linear::build(g, w(&l.wo)?, &s.att, &s.x, &s.step, residual)?,
                ffn_norm: norm::build(
                    g,
                    &s.x,
                    &w(&l.ffn_norm)?.shards[0].buffer,
                    &s.xn,
                    &s.step,
                    rms,
                )?,
                router,
                gate,
                up,
                swiglu,
                down,
                combine,
            });
        }
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
            pos: 0,
        })
    }

    /// The weight store, to stream tensor data into.
    pub fn weights_mut(&mut self) -> &mut WeightStore {
        &mut self.weights
    }

    /// Completes the upload (flushes partial words) and waits until the GPU has the data.
    ///
    /// # Errors
    /// [`GpuError::Device`] if the device fails.
    pub fn finish_upload(&mut self) -> Result<(), GpuError> {
        self.weights.finish();
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
        self.pos = 0;
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
        sample: Option<(&SamplingParams, &[u32], u32)>,
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
            let n_splits = attention::n_splits(n, (self.pos + chunk.len()) as u32);
            self.gpu
                .queue
                .write_buffer(&self.s.ids, 0, bytemuck::cast_slice(chunk));
            self.gpu.queue.write_buffer(
                &self.s.step,
                0,
                bytemuck::cast_slice(&[n, self.pos as u32, n_splits, 0]),
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
                if let Some((params, recent, counter)) = sample {
                    self.sampler.prepare(&self.gpu, params, recent, counter);
                    encode_ops(&mut enc, std::slice::from_ref(self.sampler.op()), 1, 1);
                    enc.copy_buffer_to_buffer(&self.sampler.out, 0, &self.s.token_staging, 0, 4);
                }
            }
            self.gpu.queue.submit([enc.finish()]);
            self.pos += chunk.len();
        }
        self.gpu.check()?;
        match sample {
            Some(_) => {
                let b = map_and_read(&self.gpu, &self.s.token_staging, 4).await?;
                self.gpu.check()?;
                Ok(Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]])))
            }
            None => Ok(None),
        }
    }

    fn encode_forward(
        &self,
        pass: &mut wgpu::ComputePass,
        n: u32,
        n_splits: u32,
        with_logits: bool,
    ) {
        let lin = |pass: &mut wgpu::ComputePass, l: &Linear| {
            for op in if n == 1 { &l.vec } else { &l.mat } {
                op.encode(pass, n, n_splits);
            }
        };
        for op in &self.embed {
            op.encode(pass, n, n_splits);
        }
        for l in &self.layers {
            l.attn_norm.encode(pass, n, n_splits);
            lin(pass, &l.q);
            lin(pass, &l.k);
            lin(pass, &l.v);
            for op in &l.bias {
                op.encode(pass, n, n_splits);
            }
            l.rope.encode(pass, n, n_splits);
            l.kv_store.encode(pass, n, n_splits);
            for op in &l.attn {
                op.encode(pass, n, n_splits);
            }
            lin(pass, &l.wo);
            l.ffn_norm.encode(pass, n, n_splits);
            if let Some((router, route)) = &l.router {
                lin(pass, router);
                route.encode(pass, n, n_splits);
            }
            lin(pass, &l.gate);
            lin(pass, &l.up);
            l.swiglu.encode(pass, n, n_splits);
            lin(pass, &l.down);
            if let Some(op) = &l.combine {
                op.encode(pass, n, n_splits);
            }
        }
        if with_logits {
            self.final_norm.encode(pass, n, n_splits);
            for op in &self.lm_head.vec {
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
