//! The CPU executor: walks the resolved layer plan ([`webmoe_core::plan`]) over the repacked weights,
//! with quantized activations for quantized matrices, f32 everywhere else (norms, RoPE, attention,
//! residual stream), and the shared sampler ([`webmoe_core::sampling::sample`]). Transcendental
//! functions are `libm`'s, so native and wasm32 builds compute the same bits.

use crate::act::QuantAct;
use crate::attention::{attend_group, LayerCache, Shape};
use crate::matrix::{Layout, Matrix};
use crate::par::{ranges, Shared};
use crate::store::WeightStore;
use crate::{kernels, CpuError};
use webmoe_core::gguf::GgufHeader;
use webmoe_core::kv::CachedTokens;
use webmoe_core::model::ModelDesc;
use webmoe_core::moe::route;
use webmoe_core::options::EngineOptions;
use webmoe_core::plan::{AttentionPlan, FfnPlan, LayerPlan, RoutedPlan};
use webmoe_core::quant::GgmlType;
use webmoe_core::reference::{attn_temperature, rms_norm_rows, rope};
use webmoe_core::rope::rope_tables;
use webmoe_core::sampling::{sample, Draw};

/// A model loaded for the CPU with its KV cache.
pub struct Engine {
    /// The model.
    pub desc: ModelDesc,
    /// Settings (context capped at the model's).
    pub opts: EngineOptions,
    /// Tokens in the KV cache (`cached.len()`).
    pos: usize,
    /// The token ids the KV cache holds.
    cached: CachedTokens,
    plan: Vec<LayerPlan>,
    weights: WeightStore,
    caches: Vec<LayerCache>,
    cos: Vec<f32>,
    sin: Vec<f32>,
    logits: Vec<f32>,
    /// The sampler's copy of the logits (it applies penalties in place), kept between steps.
    sample_scratch: Vec<f32>,
    /// Every weight arrived ([`Engine::finish_upload`] succeeded).
    loaded: bool,
}

/// An activation matrix and its quantized form, built when a quantized matrix needs it.
struct Input<'a> {
    x: &'a [f32],
    cols: usize,
    q: QuantAct,
}

impl<'a> Input<'a> {
    fn new(x: &'a [f32], cols: usize) -> Self {
        let mut q = QuantAct::default();
        if cols.is_multiple_of(32) {
            q.quantize(x, cols);
        }
        Input { x, cols, q }
    }

    fn tokens(&self) -> usize {
        self.x.len() / self.cols
    }
}

/// Rows of one matrix per parallel task: enough work to pay for the split, few enough that a task's
/// rows stay in cache while every token of a prefill call reads them.
fn rows_per_task(m: &Matrix) -> usize {
    let row_bytes = (m.bytes() / m.rows.max(1) as u64).max(1) as usize;
    (16 << 10) / row_bytes
}

/// One matrix's share of a [`linear_all`] call: rows `r0..r0 + rows` of `m` times the tokens of `x`
/// into `out` (`[t, rows]`).
struct Job<'a> {
    m: &'a Matrix,
    r0: usize,
    rows: usize,
    x: &'a Input<'a>,
    out: Shared<'a>,
}

impl<'a> Job<'a> {
    fn new(m: &'a Matrix, r0: usize, rows: usize, x: &'a Input<'a>, out: &'a mut [f32]) -> Self {
        Job {
            m,
            r0,
            rows,
            x,
            out: Shared::new(out),
        }
    }
}

/// `out[t, i] (+)= row (r0 + i) of m · x[t]` for every job: the rows of all jobs (q, k and v; gate and
/// up; every chosen expert) split across threads in one parallel region.
fn linear_all(jobs: &[Job], accumulate: bool) {
    let total: usize = jobs.iter().map(|j| j.rows).sum();
    let per_task = jobs.iter().map(|j| rows_per_task(j.m)).min().unwrap_or(16);
    ranges(total, per_task.clamp(4, 256), |r| {
        let mut tmp = Vec::new();
        let mut first = 0;
        for j in jobs {
            let (lo, hi) = (r.start.max(first), r.end.min(first + j.rows));
            first += j.rows;
            if lo >= hi {
                continue;
            }
            let (lo, hi) = (lo - (first - j.rows), hi - (first - j.rows));
            let x = j.x;
            debug_assert_eq!(x.cols, j.m.cols);
            tmp.resize(hi - lo, 0.0);
            for ti in 0..x.tokens() {
                let a = if j.m.layout == Layout::F32 {
                    Default::default()
                } else {
                    x.q.token(ti)
                };
                let xt = &x.x[ti * x.cols..(ti + 1) * x.cols];
                kernels::rows(j.m, j.r0 + lo, a, xt, &mut tmp);
                // SAFETY: each task writes rows lo..hi of each token of its jobs: disjoint ranges.
                let dst = unsafe { j.out.slice(ti * j.rows + lo, hi - lo) };
                if accumulate {
                    dst.iter_mut().zip(&tmp).for_each(|(d, s)| *d += s);
                } else {
                    dst.copy_from_slice(&tmp);
                }
            }
        }
    });
}

/// `y[t, i] (+)= row (r0 + i) of m · x[t]` for `i in 0..rows`.
fn linear(m: &Matrix, r0: usize, rows: usize, x: &Input, y: &mut [f32], accumulate: bool) {
    debug_assert_eq!(y.len(), x.tokens() * rows);
    linear_all(&[Job::new(m, r0, rows, x, y)], accumulate);
}

fn silu_mul(g: &mut [f32], u: &[f32]) {
    g.iter_mut()
        .zip(u)
        .for_each(|(g, u)| *g = *g / (1.0 + libm::expf(-*g)) * u);
}

impl Engine {
    /// Plans the KV cache and the weight store. Weights are empty until the loader streams them in
    /// through [`Engine::weights_mut`] and [`Engine::finish_upload`] is called.
    ///
    /// # Errors
    /// [`CpuError::TooLarge`] when the model exceeds `limit` bytes (see [`crate::plan`]),
    /// [`CpuError::Load`] for tensors the header lacks.
    pub fn new(
        desc: ModelDesc,
        h: &GgufHeader,
        mut opts: EngineOptions,
        limit: Option<u64>,
    ) -> Result<Self, CpuError> {
        crate::plan(&desc, h, &opts, limit)?;
        let c = &desc.config;
        opts.max_context = opts.max_context.min(c.context_length).max(1);
        opts.prefill_chunk = opts.prefill_chunk.max(1);
        let weights = WeightStore::new(h, &desc.tensor_indices(h))?;
        let plan = desc.layer_plans();
        let kvd = c.n_kv_heads * c.head_dim;
        let caches = plan
            .iter()
            .map(|l| {
                let slots = l
                    .attention
                    .cache_slots(opts.max_context, opts.prefill_chunk);
                LayerCache::new(slots, kvd, opts.kv_dtype)
            })
            .collect();
        let (cos, sin) = rope_tables(c, 0, opts.max_context);
        let cached = CachedTokens::new(&plan, opts.max_context, opts.prefill_chunk);
        Ok(Engine {
            cached,
            logits: vec![0.0; c.vocab_size],
            desc,
            opts,
            pos: 0,
            plan,
            weights,
            caches,
            cos,
            sin,
            loaded: false,
            sample_scratch: Vec::new(),
        })
    }

    /// The weight store, to stream tensor data into.
    pub fn weights_mut(&mut self) -> &mut WeightStore {
        &mut self.weights
    }

    /// Declares that tensor `index` streams as `src` rows and is quantized on load (see
    /// [`WeightStore::quantize_on_upload`]).
    ///
    /// # Errors
    /// As [`WeightStore::quantize_on_upload`].
    pub fn quantize_on_upload(&mut self, index: usize, src: GgmlType) -> Result<(), CpuError> {
        self.weights.quantize_on_upload(index, src)
    }

    /// Checks that every weight arrived.
    ///
    /// # Errors
    /// [`CpuError::Load`] naming an incomplete tensor.
    pub fn finish_upload(&mut self) -> Result<(), CpuError> {
        self.weights.finish()?;
        self.loaded = true;
        Ok(())
    }

    /// Forgets the KV cache.
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

    /// The logits of the last token of the last call.
    pub fn logits(&self) -> &[f32] {
        &self.logits
    }

    /// Bytes of the weights in the CPU layouts.
    pub fn weight_bytes(&self) -> u64 {
        self.weights.total_bytes()
    }

    /// Weight bytes one decode token reads: all but the embedding table (one row of it), and of the
    /// experts only the k chosen.
    pub fn weight_bytes_per_token(&self) -> u64 {
        let get = |n: &str| self.weights.get(n).map(|m| m.bytes()).unwrap_or(0);
        let embd = get(&self.desc.token_embd);
        let tied = if self.desc.config.tied_output {
            embd
        } else {
            0
        };
        let mut experts = 0;
        for l in &self.plan {
            if let FfnPlan::Routed(r) = &l.ffn {
                let all = get(&r.gate) + get(&r.up) + get(&r.down);
                experts += all - all * r.k as u64 / r.n_experts as u64;
            }
        }
        self.weights.total_bytes() - embd + tied - experts
    }

    /// Runs `ids` at the next positions (in prefill chunks). Afterwards [`Engine::logits`] holds the
    /// last token's logits. With `sample = (params, recent tokens, draw counter)`, also chooses the next
    /// token.
    ///
    /// # Errors
    /// [`CpuError::Invalid`] before the weights are loaded, for no tokens, tokens that do not fit the
    /// context, or ids outside the vocabulary.
    pub fn forward(
        &mut self,
        ids: &[u32],
        sample_with: Option<Draw<'_>>,
    ) -> Result<Option<u32>, CpuError> {
        if !self.loaded {
            return Err(CpuError::Invalid(
                "the weights are not loaded yet (stream them in and call finish_upload)".into(),
            ));
        }
        if ids.is_empty() {
            return Err(CpuError::Invalid("no tokens to run".into()));
        }
        if self.pos + ids.len() > self.opts.max_context {
            return Err(CpuError::Invalid(format!(
                "{} tokens do not fit: {} already in context, context size is {} (raise --ctx, up to the model's {})",
                ids.len(),
                self.pos,
                self.opts.max_context,
                self.desc.config.context_length
            )));
        }
        let vocab = self.desc.config.vocab_size as u32;
        if let Some(bad) = ids.iter().find(|&&i| i >= vocab) {
            return Err(CpuError::Invalid(format!(
                "token id {bad} is outside the vocabulary of {vocab}"
            )));
        }
        let chunks: Vec<&[u32]> = ids.chunks(self.opts.prefill_chunk).collect();
        let n = chunks.len();
        for (i, chunk) in chunks.into_iter().enumerate() {
            if let Err(e) = self.run(chunk, i + 1 == n) {
                // A failed step may have written part of a ring: trust nothing cached.
                self.reset();
                return Err(e);
            }
        }
        Ok(sample_with.map(|d| {
            self.sample_scratch.clear();
            self.sample_scratch.extend_from_slice(&self.logits);
            sample(&mut self.sample_scratch, &d)
        }))
    }

    fn run(&mut self, ids: &[u32], with_logits: bool) -> Result<(), CpuError> {
        let (h, eps) = (self.desc.config.hidden, self.desc.config.rms_eps);
        let embd = self.weights.get(&self.desc.token_embd)?;
        let mut x = vec![0f32; ids.len() * h];
        for (row, &id) in x.chunks_exact_mut(h).zip(ids) {
            embd.row_f32(id as usize, row);
        }
        for li in 0..self.plan.len() {
            self.attention(li, &mut x)?;
            let l = &self.plan[li];
            let mut m = x.clone();
            rms_norm_rows(&mut m, h, Some(&self.weights.get(&l.ffn_norm)?.f), eps);
            self.ffn(&l.ffn, &m, &mut x)?;
        }
        self.pos += ids.len();
        self.cached.extend(ids);
        if with_logits {
            let mut last = x[(ids.len() - 1) * h..].to_vec();
            let w = &self.weights.get(&self.desc.output_norm)?.f;
            rms_norm_rows(&mut last, h, Some(w), eps);
            let out = self.weights.get(&self.desc.output)?;
            let mut logits = std::mem::take(&mut self.logits);
            linear(out, 0, out.rows, &Input::new(&last, h), &mut logits, false);
            self.logits = logits;
        }
        Ok(())
    }

    /// Adds the attention output of block `li` to the residual stream `x`.
    fn attention(&mut self, li: usize, x: &mut [f32]) -> Result<(), CpuError> {
        let c = &self.desc.config;
        let (h, nh, nkv, hd) = (c.hidden, c.n_heads, c.n_kv_heads, c.head_dim);
        let (qd, kvd) = (nh * hd, nkv * hd);
        let t = x.len() / h;
        let p: &AttentionPlan = &self.plan[li].attention;
        let w = |n: &str| self.weights.get(n);
        let mut a = x.to_vec();
        rms_norm_rows(&mut a, h, Some(&w(&p.norm)?.f), c.rms_eps);
        let input = Input::new(&a, h);
        let (mut q, mut k, mut v) = (vec![0f32; t * qd], vec![0f32; t * kvd], vec![0f32; t * kvd]);
        let (wq, wk, wv) = (w(&p.wq)?, w(&p.wk)?, w(&p.wv)?);
        linear_all(
            &[
                Job::new(wq, 0, qd, &input, &mut q),
                Job::new(wk, 0, kvd, &input, &mut k),
                Job::new(wv, 0, kvd, &input, &mut v),
            ],
            false,
        );
        if let Some([bq, bk, bv]) = &p.bias {
            for (y, b) in [(&mut q, bq), (&mut k, bk), (&mut v, bv)] {
                let b = &w(b)?.f;
                for row in y.chunks_exact_mut(b.len()) {
                    row.iter_mut().zip(b).for_each(|(r, b)| *r += b);
                }
            }
        }
        if let Some(n) = &p.qk_norm {
            rms_norm_rows(&mut q, n.q_len, Some(&w(&n.q)?.f), c.rms_eps);
            rms_norm_rows(&mut k, n.k_len, Some(&w(&n.k)?.f), c.rms_eps);
        }
        let half = c.rope_dim / 2;
        if let Some(style) = p.rope {
            let at = self.pos * half..(self.pos + t) * half;
            let (cos, sin) = (&self.cos[at.clone()], &self.sin[at]);
            rope(&mut q, nh, hd, c.rope_dim, style, cos, sin);
            rope(&mut k, nkv, hd, c.rope_dim, style, cos, sin);
        }
        if p.l2_after_rope {
            rms_norm_rows(&mut q, hd, None, c.rms_eps);
            rms_norm_rows(&mut k, hd, None, c.rms_eps);
        }
        if let Some(temp) = &p.temperature {
            for (i, row) in q.chunks_exact_mut(qd).enumerate() {
                let f = attn_temperature(temp, self.pos + i);
                row.iter_mut().for_each(|v| *v *= f);
            }
        }
        let cache = &mut self.caches[li];
        for i in 0..t {
            cache.store(
                self.pos + i,
                &k[i * kvd..(i + 1) * kvd],
                &v[i * kvd..(i + 1) * kvd],
            );
        }
        let shape = Shape {
            n_heads: nh,
            n_kv_heads: nkv,
            head_dim: hd,
            chunk: p.chunk,
        };
        let group = nh / nkv;
        let mut att = vec![0f32; t * qd];
        let out = Shared::new(&mut att);
        let (cache, pos0, q) = (&self.caches[li], self.pos, &q);
        // Jobs per task: enough key reads (about 64K values) to pay for a split.
        let per_job = (pos0 + t) * hd * group;
        ranges(t * nkv, (65536 / per_job.max(1)).max(1), |r| {
            let mut scores = Vec::new();
            for job in r {
                let (i, g) = (job / nkv, job % nkv);
                let at = i * qd + g * group * hd;
                // SAFETY: job (i, g) writes only its own group of heads of token i.
                let dst = unsafe { out.slice(at, group * hd) };
                let qg = &q[at..at + group * hd];
                attend_group(cache, shape, g, pos0 + i, qg, dst, &mut scores);
            }
        });
        linear(w(&p.wo)?, 0, h, &Input::new(&att, qd), x, true);
        Ok(())
    }

    /// Adds the feed-forward output of `m` (the normed residual) to `x`.
    fn ffn(&self, p: &FfnPlan, m: &[f32], x: &mut [f32]) -> Result<(), CpuError> {
        let h = self.desc.config.hidden;
        let t = m.len() / h;
        let input = Input::new(m, h);
        match p {
            FfnPlan::Dense {
                gate,
                up,
                down,
                width,
            } => self.swiglu(gate, up, down, 0, *width, &input, x, None),
            FfnPlan::Routed(r) => {
                self.routed(r, &input, x)?;
                if let Some(sh) = &r.shared {
                    let gates = match &sh.gate_inp {
                        Some(gi) => {
                            let mut g = vec![0f32; t];
                            linear(self.weights.get(gi)?, 0, 1, &input, &mut g, false);
                            Some(
                                g.iter()
                                    .map(|g| 1.0 / (1.0 + libm::expf(-g)))
                                    .collect::<Vec<f32>>(),
                            )
                        }
                        None => None,
                    };
                    self.swiglu(
                        &sh.gate,
                        &sh.up,
                        &sh.down,
                        0,
                        sh.width,
                        &input,
                        x,
                        gates.as_deref(),
                    )?;
                }
                Ok(())
            }
        }
    }

    /// `x[t] += scale[t] · down(silu(gate x) · up x)` over rows `e·width..` of stacked gate/up and
    /// `e·H..` of down (expert `e`; 0 for a dense layer).
    #[allow(clippy::too_many_arguments)]
    fn swiglu(
        &self,
        gate: &str,
        up: &str,
        down: &str,
        e: usize,
        width: usize,
        input: &Input,
        x: &mut [f32],
        scale: Option<&[f32]>,
    ) -> Result<(), CpuError> {
        let h = self.desc.config.hidden;
        let t = input.tokens();
        let w = |n: &str| self.weights.get(n);
        let (mut g, mut u) = (vec![0f32; t * width], vec![0f32; t * width]);
        let (wg, wu) = (w(gate)?, w(up)?);
        linear_all(
            &[
                Job::new(wg, e * width, width, input, &mut g),
                Job::new(wu, e * width, width, input, &mut u),
            ],
            false,
        );
        silu_mul(&mut g, &u);
        let mid = Input::new(&g, width);
        match scale {
            None => linear(w(down)?, e * h, h, &mid, x, true),
            Some(s) => {
                let mut y = vec![0f32; t * h];
                linear(w(down)?, e * h, h, &mid, &mut y, false);
                for ((xr, yr), s) in x.chunks_exact_mut(h).zip(y.chunks_exact(h)).zip(s) {
                    xr.iter_mut().zip(yr).for_each(|(x, y)| *x += s * y);
                }
            }
        }
        Ok(())
    }

    /// Routed experts: each token's k experts, only their rows read; tokens grouped by expert so a
    /// prefill call reads each chosen expert once.
    fn routed(&self, r: &RoutedPlan, input: &Input, x: &mut [f32]) -> Result<(), CpuError> {
        let h = self.desc.config.hidden;
        let t = input.tokens();
        let mut logits = vec![0f32; t * r.n_experts];
        linear(
            self.weights.get(&r.router)?,
            0,
            r.n_experts,
            input,
            &mut logits,
            false,
        );
        let (ids, weights) = route(&logits, r.n_experts, r.k, r.routing);
        let scale_input = r.routing.weights_input();
        // The slots (token, choice) of each chosen expert, and that expert's inputs.
        let mut chosen: Vec<(usize, Vec<usize>, Vec<f32>)> = Vec::new();
        for e in 0..r.n_experts {
            let slots: Vec<usize> = (0..t * r.k).filter(|&s| ids[s] as usize == e).collect();
            if slots.is_empty() {
                continue;
            }
            let mut xin = Vec::with_capacity(slots.len() * h);
            for &s in &slots {
                let row = &input.x[(s / r.k) * h..(s / r.k + 1) * h];
                if scale_input {
                    xin.extend(row.iter().map(|v| v * weights[s]));
                } else {
                    xin.extend_from_slice(row);
                }
            }
            chosen.push((e, slots, xin));
        }
        let inputs: Vec<Input> = chosen
            .iter()
            .map(|(_, _, xin)| Input::new(xin, h))
            .collect();
        let w = |n: &str| self.weights.get(n);
        let (wg, wu, wd) = (w(&r.gate)?, w(&r.up)?, w(&r.down)?);
        // Every chosen expert's gate and up in one parallel region, then every down in another.
        let mut gu: Vec<(Vec<f32>, Vec<f32>)> = chosen
            .iter()
            .map(|(_, slots, _)| {
                (
                    vec![0f32; slots.len() * r.width],
                    vec![0f32; slots.len() * r.width],
                )
            })
            .collect();
        {
            let mut jobs = Vec::with_capacity(2 * chosen.len());
            for (((e, _, _), x), (g, u)) in chosen.iter().zip(&inputs).zip(gu.iter_mut()) {
                jobs.push(Job::new(wg, e * r.width, r.width, x, g));
                jobs.push(Job::new(wu, e * r.width, r.width, x, u));
            }
            linear_all(&jobs, false);
        }
        for (g, u) in gu.iter_mut() {
            silu_mul(g, u);
        }
        let mids: Vec<Input> = gu.iter().map(|(g, _)| Input::new(g, r.width)).collect();
        let mut ys: Vec<Vec<f32>> = chosen
            .iter()
            .map(|(_, slots, _)| vec![0f32; slots.len() * h])
            .collect();
        {
            let jobs: Vec<Job> = chosen
                .iter()
                .zip(&mids)
                .zip(ys.iter_mut())
                .map(|(((e, _, _), mid), y)| Job::new(wd, e * h, h, mid, y))
                .collect();
            linear_all(&jobs, false);
        }
        for ((_, slots, _), y) in chosen.iter().zip(&ys) {
            for (i, &s) in slots.iter().enumerate() {
                let scale = if scale_input { 1.0 } else { weights[s] };
                let tok = s / r.k;
                x[tok * h..(tok + 1) * h]
                    .iter_mut()
                    .zip(&y[i * h..(i + 1) * h])
                    .for_each(|(x, y)| *x += scale * y);
            }
        }
        Ok(())
    }
}

impl webmoe_core::generate::Backend for Engine {
    type Error = CpuError;

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
    ) -> Result<Option<u32>, CpuError> {
        Engine::forward(self, ids, sample)
    }

    async fn logits(&self) -> Result<Vec<f32>, CpuError> {
        Ok(self.logits.clone())
    }
}
