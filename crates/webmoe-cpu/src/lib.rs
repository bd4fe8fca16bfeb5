//! webmoe-cpu: the CPU backend. The same model description, layer plan, tokenizer, generation loop and
//! sampler semantics as the GPU executor, with kernels for CPUs:
//! - weights are repacked at load into three kernel layouts ([`matrix`]): 4-bit nibbles in blocks of 32
//!   (Q4_0, Q4_1, Q4_K), bytes in blocks of 16 or 32 (Q5_*, Q8_0, Q2_K, Q3_K, Q5_K, Q6_K), and f32
//!   (F32, F16, BF16), each block with f32 scale and offset so the inner loops convert nothing;
//! - activations are quantized to 8 bits per block of 32 ([`act`]), as llama.cpp does, and the dot
//!   products run on integers ([`kernels`]: AVX2 natively on x86-64, NEON on aarch64, SIMD128 and
//!   relaxed SIMD on wasm32, a portable scalar version everywhere else and as the oracle of the SIMD
//!   ones);
//! - rows are split across threads by a small fork-join pool (`par`): natively, and in the browser's
//!   threaded module (`webmoe-threads`, wasm32-wasip1-threads); the wasm-bindgen module runs
//!   single-threaded.
//!
//! Written by hand rather than taken from a library: no maintained Rust crate runs GGUF blocks with
//! quantized activations on both wasm SIMD and AVX2.
#![warn(missing_docs)]

pub mod act;
mod attention;
mod engine;
mod error;
pub mod kernels;
pub mod matrix;
mod par;
mod plan;
mod store;

pub use engine::Engine;
pub use error::CpuError;
pub use par::threads;
pub use plan::{plan, CpuMemoryPlan, WASM_HEAP_LIMIT};
pub use store::WeightStore;
