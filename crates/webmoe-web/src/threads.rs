//! The threaded CPU backend (`crates/webmoe-threads`) seen from this module: an
//! [`ExternalCpu`] whose calls go through `globalThis.webmoeThreads`, which `web/src/threads.js`
//! installs once the threaded module and its pool workers are up (only in cross-origin isolated
//! pages). Calls are synchronous: the worker blocks while the pool runs a step.

use std::rc::Rc;
use wasm_bindgen::prelude::*;
use webmoe_core::gguf::GgufHeader;
use webmoe_core::kv::CachedTokens;
use webmoe_core::model::ModelDesc;
use webmoe_core::options::{EngineOptions, KvDtype};
use webmoe_core::sampling::Draw;
use webmoe_core::TensorSink;
use webmoe_cpu::CpuError;
use webmoe_engine::{EngineError, ExternalCpu, ExternalCpuFactory, ExternalCpuSource};

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = webmoeThreads, js_name = open)]
    fn threads_open(
        header: &[u8],
        file_size: f64,
        rope: &[f32],
        max_context: u32,
        prefill_chunk: u32,
        kv_f32: bool,
        limit: f64,
    ) -> String;
    #[wasm_bindgen(js_namespace = webmoeThreads, js_name = write)]
    fn threads_write(index: u32, offset: f64, data: &[u8]) -> String;
    #[wasm_bindgen(js_namespace = webmoeThreads, js_name = finish)]
    fn threads_finish() -> String;
    #[wasm_bindgen(js_namespace = webmoeThreads, js_name = forward)]
    fn threads_forward(ids: &[u32], draw: &str) -> JsValue;
    #[wasm_bindgen(js_namespace = webmoeThreads, js_name = rewind)]
    fn threads_rewind(n: u32) -> u32;
    #[wasm_bindgen(js_namespace = webmoeThreads, js_name = logits)]
    fn threads_logits() -> Vec<f32>;
    #[wasm_bindgen(js_namespace = webmoeThreads, js_name = weightBytes)]
    fn threads_weight_bytes() -> f64;
    #[wasm_bindgen(js_namespace = webmoeThreads, js_name = weightBytesPerToken)]
    fn threads_weight_bytes_per_token() -> f64;
    #[wasm_bindgen(js_namespace = webmoeThreads, js_name = threads)]
    fn threads_count() -> u32;
}

/// `""` or `"kind:message"` from the JS side, as the CPU backend's error.
fn status(s: String) -> Result<(), CpuError> {
    if s.is_empty() {
        return Ok(());
    }
    let (kind, msg) = s.split_once(':').unwrap_or(("model", &s));
    Err(match kind {
        "too-large" => CpuError::TooLarge(msg.into()),
        "invalid" => CpuError::Invalid(msg.into()),
        _ => CpuError::Load(msg.into()),
    })
}

/// Creates threaded engines for one file.
pub struct ThreadsFactory {
    /// The file's first bytes, at least its whole header.
    pub header: Vec<u8>,
    /// The file's size.
    pub file_size: u64,
    /// The `rope_freqs` table, if the file has one.
    pub rope: Option<Vec<f32>>,
}

impl ThreadsFactory {
    /// As the options' factory.
    pub fn source(self) -> ExternalCpuSource {
        ExternalCpuSource(Rc::new(self))
    }
}

impl ExternalCpuFactory for ThreadsFactory {
    fn create(
        &self,
        desc: &ModelDesc,
        _h: &GgufHeader,
        opts: &EngineOptions,
        limit: Option<u64>,
    ) -> Result<Box<dyn ExternalCpu>, EngineError> {
        status(threads_open(
            &self.header,
            self.file_size as f64,
            self.rope.as_deref().unwrap_or(&[]),
            opts.max_context as u32,
            opts.prefill_chunk as u32,
            opts.kv_dtype == KvDtype::F32,
            limit.unwrap_or(u64::MAX >> 12) as f64,
        ))?;
        let mut opts = opts.clone();
        opts.max_context = opts.max_context.min(desc.config.context_length).max(1);
        opts.prefill_chunk = opts.prefill_chunk.max(1);
        let cached = CachedTokens::new(&desc.layer_plans(), opts.max_context, opts.prefill_chunk);
        Ok(Box::new(Threaded {
            desc: desc.clone(),
            opts,
            cached,
        }))
    }

    /// The instruction set (the threaded module is built with the same SIMD features as this one) and
    /// the threads its pool runs (starting the pool).
    fn kernels(&self) -> String {
        format!(
            "{}, {} threads",
            webmoe_cpu::kernels::isa(),
            threads_count()
        )
    }
}

/// An engine in the threaded module.
struct Threaded {
    desc: ModelDesc,
    opts: EngineOptions,
    /// What the threaded engine's KV cache holds (both sides follow the same rule).
    cached: CachedTokens,
}

impl TensorSink for Threaded {
    fn write(&mut self, index: usize, offset: u64, bytes: &[u8]) -> Result<(), String> {
        status(threads_write(index as u32, offset as f64, bytes)).map_err(|e| e.to_string())
    }
}

impl ExternalCpu for Threaded {
    fn desc(&self) -> &ModelDesc {
        &self.desc
    }

    fn opts(&self) -> &EngineOptions {
        &self.opts
    }

    fn cached(&self) -> &CachedTokens {
        &self.cached
    }

    fn rewind(&mut self, n: usize) -> usize {
        let keep = self.cached.rewind(n);
        let theirs = threads_rewind(keep as u32) as usize;
        if theirs != keep {
            // Cannot happen (same tokens, same rule); if it did, start over on both sides.
            self.cached.clear();
            threads_rewind(0);
            return 0;
        }
        keep
    }

    fn forward(
        &mut self,
        ids: &[u32],
        sample: Option<Draw<'_>>,
    ) -> Result<Option<u32>, EngineError> {
        let draw = match sample {
            Some(d) => serde_json::to_string(&d).map_err(|e| CpuError::Invalid(e.to_string()))?,
            None => String::new(),
        };
        let r = threads_forward(ids, &draw);
        if r.as_f64().is_some() {
            self.cached.extend(ids);
        } else {
            self.cached.clear();
        }
        match r.as_f64() {
            Some(t) if t >= 0.0 => Ok(Some(t as u32)),
            Some(_) => Ok(None),
            None => Err(status(
                r.as_string()
                    .unwrap_or_else(|| "model:unknown failure".into()),
            )
            .err()
            .unwrap_or_else(|| CpuError::Load("the threaded engine failed".into()))
            .into()),
        }
    }

    fn finish_upload(&mut self) -> Result<(), EngineError> {
        Ok(status(threads_finish())?)
    }

    fn logits(&self) -> Vec<f32> {
        threads_logits()
    }

    fn weight_bytes(&self) -> u64 {
        threads_weight_bytes() as u64
    }

    fn weight_bytes_per_token(&self) -> u64 {
        threads_weight_bytes_per_token() as u64
    }

    fn threads(&self) -> usize {
        threads_count() as usize
    }
}
