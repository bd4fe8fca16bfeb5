//! Settings every executor (GPU, CPU) takes.

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
