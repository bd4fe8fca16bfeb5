//! [`AnyEngine`]: the GPU or the CPU engine behind one interface (the generation loop's
//! [`Backend`], loading, logits, sizes).

use thiserror::Error;
use webmoe_core::generate::Backend;
use webmoe_core::kv::CachedTokens;
use webmoe_core::model::ModelDesc;
use webmoe_core::options::EngineOptions;
use webmoe_core::quant::GgmlType;
use webmoe_core::sampling::Draw;
use webmoe_core::TensorSink;
use webmoe_cpu::CpuError;
use webmoe_gpu::GpuError;

/// Errors of either backend, and of the device choice.
#[derive(Debug, Error)]
pub enum EngineError {
    /// No GPU adapter where one was required.
    #[error("{0}")]
    NoGpu(String),
    /// The model fits neither the chosen device nor the fallback.
    #[error("{0}")]
    TooLarge(String),
    /// The GPU was required but its self-test failed.
    #[error("{0}")]
    SelfTest(String),
    /// A GPU failure or request error.
    #[error(transparent)]
    Gpu(#[from] GpuError),
    /// A CPU backend failure or request error.
    #[error(transparent)]
    Cpu(#[from] CpuError),
}

/// A loaded model on one of the backends.
pub enum AnyEngine {
    /// WGSL kernels through wgpu.
    Gpu(Box<webmoe_gpu::Engine>),
    /// SIMD kernels on the CPU.
    Cpu(Box<webmoe_cpu::Engine>),
    /// The CPU backend in another module (the browser's threaded one).
    External(Box<dyn crate::ExternalCpu>),
}

impl AnyEngine {
    /// `"gpu"` or `"cpu"`.
    pub fn device(&self) -> &'static str {
        match self {
            AnyEngine::Gpu(_) => "gpu",
            AnyEngine::Cpu(_) | AnyEngine::External(_) => "cpu",
        }
    }

    /// The model.
    pub fn desc(&self) -> &ModelDesc {
        match self {
            AnyEngine::Gpu(e) => &e.desc,
            AnyEngine::Cpu(e) => &e.desc,
            AnyEngine::External(e) => e.desc(),
        }
    }

    /// The settings in force (context capped at the model's).
    pub fn opts(&self) -> &EngineOptions {
        match self {
            AnyEngine::Gpu(e) => &e.opts,
            AnyEngine::Cpu(e) => &e.opts,
            AnyEngine::External(e) => e.opts(),
        }
    }

    /// The sink the loader streams tensor bytes into.
    pub fn weights_mut(&mut self) -> &mut dyn TensorSink {
        match self {
            AnyEngine::Gpu(e) => e.weights_mut(),
            AnyEngine::Cpu(e) => e.weights_mut(),
            AnyEngine::External(e) => &mut **e,
        }
    }

    /// Tensor `index` streams as `src` rows and is quantized on load.
    ///
    /// # Errors
    /// Unknown tensor or unsupported types.
    pub fn quantize_on_upload(&mut self, index: usize, src: GgmlType) -> Result<(), EngineError> {
        match self {
            AnyEngine::Gpu(e) => Ok(e.quantize_on_upload(index, src)?),
            AnyEngine::Cpu(e) => Ok(e.quantize_on_upload(index, src)?),
            AnyEngine::External(_) => Err(EngineError::Cpu(CpuError::Invalid(
                "the threaded CPU backend loads GGUF weights only".into(),
            ))),
        }
    }

    /// Completes the load.
    ///
    /// # Errors
    /// Device failures; tensors that did not arrive whole (CPU).
    pub fn finish_upload(&mut self) -> Result<(), EngineError> {
        match self {
            AnyEngine::Gpu(e) => Ok(e.finish_upload()?),
            AnyEngine::Cpu(e) => Ok(e.finish_upload()?),
            AnyEngine::External(e) => e.finish_upload(),
        }
    }

    /// Logits of the last token of the last call.
    ///
    /// # Errors
    /// Read-back failures (GPU).
    pub async fn logits(&self) -> Result<Vec<f32>, EngineError> {
        match self {
            AnyEngine::Gpu(e) => Ok(e.logits().await?),
            AnyEngine::Cpu(e) => Ok(e.logits().to_vec()),
            AnyEngine::External(e) => Ok(e.logits()),
        }
    }

    /// Weight bytes one decode token reads.
    pub fn weight_bytes_per_token(&self) -> u64 {
        match self {
            AnyEngine::Gpu(e) => e.weight_bytes_per_token(),
            AnyEngine::Cpu(e) => e.weight_bytes_per_token(),
            AnyEngine::External(e) => e.weight_bytes_per_token(),
        }
    }

    /// Bytes the weights take on the device.
    pub fn weight_bytes(&self) -> u64 {
        match self {
            AnyEngine::Gpu(e) => e.weight_bytes(),
            AnyEngine::Cpu(e) => e.weight_bytes(),
            AnyEngine::External(e) => e.weight_bytes(),
        }
    }

    /// The GPU engine, if that is the backend.
    pub fn gpu(&self) -> Option<&webmoe_gpu::Engine> {
        match self {
            AnyEngine::Gpu(e) => Some(e),
            AnyEngine::Cpu(_) | AnyEngine::External(_) => None,
        }
    }
}

impl Backend for AnyEngine {
    type Error = EngineError;

    fn pos(&self) -> usize {
        self.cached().len()
    }

    fn max_context(&self) -> usize {
        self.opts().max_context
    }

    fn model_context(&self) -> usize {
        self.desc().config.context_length
    }

    fn reset(&mut self) {
        self.rewind(0);
    }

    fn cached(&self) -> &CachedTokens {
        match self {
            AnyEngine::Gpu(e) => e.cached(),
            AnyEngine::Cpu(e) => e.cached(),
            AnyEngine::External(e) => e.cached(),
        }
    }

    fn rewind(&mut self, n: usize) -> usize {
        match self {
            AnyEngine::Gpu(e) => e.rewind(n),
            AnyEngine::Cpu(e) => e.rewind(n),
            AnyEngine::External(e) => e.rewind(n),
        }
    }

    async fn forward(
        &mut self,
        ids: &[u32],
        sample: Option<Draw<'_>>,
    ) -> Result<Option<u32>, EngineError> {
        match self {
            AnyEngine::Gpu(e) => Ok(e.forward(ids, sample).await?),
            AnyEngine::Cpu(e) => Ok(e.forward(ids, sample)?),
            AnyEngine::External(e) => e.forward(ids, sample),
        }
    }

    async fn logits(&self) -> Result<Vec<f32>, EngineError> {
        AnyEngine::logits(self).await
    }
}
