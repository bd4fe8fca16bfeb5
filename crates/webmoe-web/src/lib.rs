//! webmoe-web: the engine in a browser (normally inside the Web Worker that `web/src/webmoe.js` starts).
//! It exports a handful of functions to JavaScript: [`api::load`], [`api::generate`], [`api::stats`],
//! [`api::interrupt`], [`api::unload`] and the cache functions in [`cache`]. Everything model-specific
//! is the same Rust and WGSL as natively; this crate adds the browser's byte sources (fetch with `Range`,
//! a streamed body when the server ignores `Range`, `File`/`Blob` slices), the persistent chunk cache
//! (Cache API) and the JS-facing glue.

pub mod api;
pub mod cache;
mod error;
mod folder;
mod js;
mod load;
mod source;
mod threads;
mod yielding;

pub use error::WebError;

/// Installs the panic hook so that a Rust panic shows its message in the console.
#[wasm_bindgen::prelude::wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
}
