//! webmoe-engine: one engine type over the two backends, and the rule that chooses between them.
//!
//! `auto` takes the GPU unless there is no adapter, the adapter is a software one, the model does not
//! fit it, or its self-test fails ([`webmoe_gpu::selftest`]); then the CPU backend runs. When the CPU
//! backend cannot hold the model (over its memory limit, e.g. the WebAssembly heap) whatever adapter
//! there is runs it instead, software or not, rather than fail. The choice and its reason are reported.
#![warn(missing_docs)]

mod choose;
mod engine;
mod external;

pub use choose::{open, DeviceReport, DeviceRequest, OpenOptions};
pub use engine::{AnyEngine, EngineError};
pub use external::{ExternalCpu, ExternalCpuFactory, ExternalCpuSource};
