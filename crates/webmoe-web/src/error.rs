//! Errors that reach JavaScript: each has a stable `code` the API turns into a typed error.

use thiserror::Error;
use wasm_bindgen::JsValue;
use webmoe_core::generate::GenerateError;
use webmoe_cpu::CpuError;
use webmoe_engine::EngineError;
use webmoe_gpu::GpuError;
use webmoe_loader::remote::FetchError;
use webmoe_loader::LoadError;

/// An error of the browser engine.
#[derive(Debug, Error)]
pub enum WebError {
    /// The download or the file read failed.
    #[error("{0}")]
    Download(String),
    /// The file changed on the server during the download.
    #[error("{0}")]
    Changed(String),
    /// Not a usable model (corrupt file, unsupported architecture or quant type).
    #[error("{0}")]
    InvalidModel(String),
    /// No WebGPU adapter.
    #[error("{0}")]
    NoWebGpu(String),
    /// The model does not fit the adapter.
    #[error("{0}")]
    TooLarge(String),
    /// The GPU device failed or was lost.
    #[error("{0}")]
    Device(String),
    /// The request cannot be served (bad arguments, prompt too long, no model loaded, busy).
    #[error("{0}")]
    Invalid(String),
    /// The GPU was required (`device: 'gpu'`) and failed its self-test.
    #[error("{0}")]
    SelfTest(String),
    /// The model produced NaN or infinite logits.
    #[error("{0}")]
    Numerical(String),
}

impl WebError {
    /// The code JavaScript sees (`error.code`).
    pub fn code(&self) -> &'static str {
        match self {
            WebError::Download(_) => "download-failed",
            WebError::Changed(_) => "model-changed",
            WebError::InvalidModel(_) => "invalid-model",
            WebError::NoWebGpu(_) => "webgpu-unavailable",
            WebError::TooLarge(_) => "model-too-large",
            WebError::Device(_) => "device-lost",
            WebError::Invalid(_) => "invalid-request",
            WebError::SelfTest(_) => "gpu-self-test-failed",
            WebError::Numerical(_) => "numerical-error",
        }
    }
}

impl From<LoadError> for WebError {
    fn from(e: LoadError) -> Self {
        match e {
            LoadError::Remote {
                error: FetchError::Changed,
                ..
            } => WebError::Changed(e.to_string()),
            LoadError::Io { .. } | LoadError::Remote { .. } => WebError::Download(e.to_string()),
            LoadError::Gguf(_)
            | LoadError::MissingTensor(_)
            | LoadError::Model(_)
            | LoadError::BadFile { .. }
            | LoadError::Tokenizer(_) => WebError::InvalidModel(e.to_string()),
            LoadError::Sink(_) => WebError::Device(e.to_string()),
        }
    }
}

impl From<GpuError> for WebError {
    fn from(e: GpuError) -> Self {
        match e {
            GpuError::NoAdapter(_) => WebError::NoWebGpu(format!(
                "no WebGPU adapter: {e}. Use a browser with WebGPU enabled (Chrome/Edge 113+, Safari 26+, Firefox 141+ on Windows)"
            )),
            GpuError::TooLarge(_) => WebError::TooLarge(e.to_string()),
            GpuError::Invalid(_) => WebError::Invalid(e.to_string()),
            _ => WebError::Device(e.to_string()),
        }
    }
}

impl From<CpuError> for WebError {
    fn from(e: CpuError) -> Self {
        match e {
            CpuError::TooLarge(_) => WebError::TooLarge(e.to_string()),
            CpuError::Invalid(_) => WebError::Invalid(e.to_string()),
            CpuError::Load(_) => WebError::InvalidModel(e.to_string()),
        }
    }
}

impl From<EngineError> for WebError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::NoGpu(m) => WebError::NoWebGpu(format!(
                "{m}. Use a browser with WebGPU enabled (Chrome/Edge 113+, Safari 26+, Firefox 141+ on Windows), or device 'auto' / 'cpu'"
            )),
            EngineError::TooLarge(m) => WebError::TooLarge(m),
            EngineError::SelfTest(m) => WebError::SelfTest(m),
            EngineError::Gpu(g) => g.into(),
            EngineError::Cpu(c) => c.into(),
        }
    }
}

impl From<GenerateError<EngineError>> for WebError {
    fn from(e: GenerateError<EngineError>) -> Self {
        match e {
            GenerateError::Backend(b) => b.into(),
            GenerateError::TooLong(m) => WebError::Invalid(m),
            GenerateError::Tokenizer(t) => WebError::Invalid(t.to_string()),
            GenerateError::Invalid(m) => WebError::Invalid(m),
            e @ GenerateError::Constraint(_) => WebError::Invalid(e.to_string()),
            e @ GenerateError::Numerical(_) => WebError::Numerical(e.to_string()),
        }
    }
}

impl From<WebError> for JsValue {
    fn from(e: WebError) -> Self {
        let err = js_sys::Error::new(&e.to_string());
        let _ = js_sys::Reflect::set(&err, &"code".into(), &e.code().into());
        err.into()
    }
}
