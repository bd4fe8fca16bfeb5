//! webmoe-gpu: the wgpu runtime. Device and capabilities, the weight store (GGUF bytes uploaded
//! unchanged, split across bindings), the shader preprocessor and pipeline cache, one launcher per
//! kernel family, the KV cache, and the executor that runs prefill and decode passes with GPU sampling.
#![warn(missing_docs)]

mod device;
pub mod executor;
pub mod kernels;
mod op;
mod readback;
pub mod selftest;
mod shader;
pub mod uniforms;
pub mod weights;

pub use device::{Gpu, GpuOptions, Tuning, Variants};
pub use executor::{Engine, EngineOptions, KvDtype};
pub use op::{Grid, Op};
pub use readback::read_buffer;
pub use shader::preprocess;

use thiserror::Error;

/// Errors of the GPU runtime.
#[derive(Debug, Error)]
pub enum GpuError {
    /// No adapter (no WebGPU / Vulkan device).
    #[error("no GPU adapter found: {0}. On Linux without a GPU install Mesa's lavapipe (apt-get install mesa-vulkan-drivers)")]
    NoAdapter(String),
    /// The device could not be created, or it failed or was lost.
    #[error("GPU device failure: {0}")]
    Device(String),
    /// The model does not fit this device.
    #[error("the model does not fit this device: {0}")]
    TooLarge(String),
    /// Shader source problem (missing include, bad define).
    #[error("shader {name}: {reason}")]
    Shader {
        /// Shader file.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// Reading a buffer back failed.
    #[error("reading back from the GPU failed: {0}")]
    Readback(String),
    /// A request the engine cannot serve.
    #[error("{0}")]
    Invalid(String),
}
