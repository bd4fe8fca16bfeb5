//! webmoe-threads: the CPU backend ([`webmoe_cpu::Engine`]) built for `wasm32-wasip1-threads`, whose
//! prebuilt standard library has atomics, so the backend's fork-join pool runs on Web Workers that share
//! one `WebAssembly.Memory`. The browser's main module (webmoe-web, wasm-bindgen, single-threaded)
//! keeps the tokenizer, the loader and the API, and drives this module through the C ABI in [`abi`]
//! from the same worker; `web/src/threads.js` provides the WASI imports and spawns the pool's workers.
//! Stable Rust cannot build the wasm-bindgen module with atomics (that needs build-std), hence two
//! modules (see `shared/notes/cpu-backend.md` §2).
//!
//! On other targets the crate is empty.

#[cfg(all(target_arch = "wasm32", target_os = "wasi"))]
pub mod abi;
