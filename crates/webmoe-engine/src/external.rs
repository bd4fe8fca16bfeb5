//! A CPU backend that runs outside this module: the browser's threaded CPU module
//! (`crates/webmoe-threads`), which the single-threaded wasm-bindgen module drives through JS. The
//! device choice treats it as the CPU backend; [`OpenOptions::external_cpu`](crate::OpenOptions)
//! says how to create one.

use crate::EngineError;
use std::rc::Rc;
use webmoe_core::gguf::GgufHeader;
use webmoe_core::kv::CachedTokens;
use webmoe_core::model::ModelDesc;
use webmoe_core::options::EngineOptions;
use webmoe_core::sampling::Draw;
use webmoe_core::TensorSink;

/// A CPU engine behind another module: the same calls as [`webmoe_cpu::Engine`].
pub trait ExternalCpu: TensorSink {
    /// The model.
    fn desc(&self) -> &ModelDesc;
    /// The settings in force.
    fn opts(&self) -> &EngineOptions;
    /// The token ids the KV cache holds.
    fn cached(&self) -> &CachedTokens;
    /// As [`webmoe_cpu::Engine::rewind`].
    fn rewind(&mut self, n: usize) -> usize;
    /// As [`webmoe_cpu::Engine::forward`].
    ///
    /// # Errors
    /// The engine's errors, as [`EngineError::Cpu`].
    fn forward(
        &mut self,
        ids: &[u32],
        sample: Option<Draw<'_>>,
    ) -> Result<Option<u32>, EngineError>;
    /// Checks that every weight arrived.
    ///
    /// # Errors
    /// An incomplete tensor.
    fn finish_upload(&mut self) -> Result<(), EngineError>;
    /// The last call's logits.
    fn logits(&self) -> Vec<f32>;
    /// Bytes of the weights in the CPU layouts.
    fn weight_bytes(&self) -> u64;
    /// Weight bytes one decode token reads.
    fn weight_bytes_per_token(&self) -> u64;
    /// Threads its kernels use.
    fn threads(&self) -> usize;
}

/// Creates an [`ExternalCpu`] for a model (weights empty, to be streamed in).
pub trait ExternalCpuFactory {
    /// The engine for `desc` (stored as `h` says) under `opts`, within `limit` bytes.
    ///
    /// # Errors
    /// As [`webmoe_cpu::Engine::new`].
    fn create(
        &self,
        desc: &ModelDesc,
        h: &GgufHeader,
        opts: &EngineOptions,
        limit: Option<u64>,
    ) -> Result<Box<dyn ExternalCpu>, EngineError>;
    /// The kernels it runs (for the device report), e.g. `wasm-relaxed-simd, 2 threads`.
    fn kernels(&self) -> String;
}

/// A shared factory (cloned with the options).
#[derive(Clone)]
pub struct ExternalCpuSource(pub Rc<dyn ExternalCpuFactory>);

impl std::fmt::Debug for ExternalCpuSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ExternalCpuSource({})", self.0.kernels())
    }
}
