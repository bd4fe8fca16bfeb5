//! How much memory the CPU backend needs for a model, computed from the header before any weight is
//! downloaded, and the limit it is checked against.

use crate::matrix::Layout;
use crate::CpuError;
use webmoe_core::gguf::GgufHeader;
use webmoe_core::model::ModelDesc;
use webmoe_core::options::{EngineOptions, KvDtype};

/// What the CPU backend may hold in a wasm32 heap: the address space is 4 GiB, and the tokenizer, the
/// code, the JS copies of downloaded chunks and the allocator's slack need the rest.
pub const WASM_HEAP_LIMIT: u64 = 3 << 30;

/// Memory the CPU backend needs for a model.
#[derive(Debug, Clone)]
pub struct CpuMemoryPlan {
    /// Repacked weight bytes.
    pub weights: u64,
    /// KV cache bytes.
    pub kv_cache: u64,
    /// Activation scratch bytes (one prefill call).
    pub scratch: u64,
}

impl CpuMemoryPlan {
    /// Total bytes.
    pub fn total(&self) -> u64 {
        self.weights + self.kv_cache + self.scratch
    }
}

/// The memory `desc` needs under `opts`, checked against `limit` bytes when given (in the browser:
/// [`WASM_HEAP_LIMIT`]).
///
/// # Errors
/// [`CpuError::TooLarge`] naming the size and the limit; [`CpuError::Load`] for a tensor the header
/// lacks.
pub fn plan(
    desc: &ModelDesc,
    header: &GgufHeader,
    opts: &EngineOptions,
    limit: Option<u64>,
) -> Result<CpuMemoryPlan, CpuError> {
    let c = &desc.config;
    let mut weights = 0u64;
    for (name, _) in desc.expected_tensors() {
        let t = header
            .tensor(&name)
            .ok_or_else(|| CpuError::Load(format!("missing tensor {name}")))?;
        let cols = *t.dims.first().unwrap_or(&1);
        weights +=
            Layout::of(t.ggml_type).bytes((t.n_elements() / cols.max(1)) as usize, cols as usize);
    }
    let ctx = opts.max_context.min(c.context_length).max(1);
    let t = opts.prefill_chunk.max(1) as u64;
    let kv_elem = if opts.kv_dtype == KvDtype::F16 { 2 } else { 4 };
    let kvd = (c.n_kv_heads * c.head_dim) as u64;
    let kv_cache: u64 = desc
        .layer_plans()
        .iter()
        .map(|l| 2 * l.attention.cache_slots(ctx, opts.prefill_chunk) as u64 * kvd * kv_elem)
        .sum();
    let per_token = 3 * c.hidden
        + 2 * c.n_heads * c.head_dim
        + 2 * c.n_kv_heads * c.head_dim
        + 3 * desc.ffn_scratch_width()
        + c.moe.map_or(0, |m| m.n_experts + m.n_used * (c.hidden + 2));
    let scratch = t * per_token as u64 * 5 + c.vocab_size as u64 * 4 + ctx as u64 * 4 * 64;
    let p = CpuMemoryPlan {
        weights,
        kv_cache,
        scratch,
    };
    if let Some(limit) = limit {
        if p.total() > limit {
            return Err(CpuError::TooLarge(format!(
                "it needs {:.2} GiB ({:.2} GiB of weights in the CPU layouts, {:.2} GiB of KV cache for {ctx} positions), over the {:.2} GiB a WebAssembly heap can hold; use a smaller model or quant, a smaller context, or a device with WebGPU",
                p.total() as f64 / (1u64 << 30) as f64,
                p.weights as f64 / (1u64 << 30) as f64,
                p.kv_cache as f64 / (1u64 << 30) as f64,
                limit as f64 / (1u64 << 30) as f64,
            )));
        }
    }
    Ok(p)
}
