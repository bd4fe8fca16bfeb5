//! Small bindings to browser globals that work on the page and in a worker alike.

use js_sys::{Promise, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

#[wasm_bindgen]
extern "C" {
    /// The global `fetch` (window or worker).
    #[wasm_bindgen(js_name = fetch)]
    pub fn global_fetch(req: &web_sys::Request) -> Promise;
    #[wasm_bindgen(js_name = setTimeout)]
    fn set_timeout(f: &js_sys::Function, ms: f64) -> JsValue;
}

/// Seconds since an arbitrary origin (`performance.now()` where available).
pub fn now_s() -> f64 {
    let perf = Reflect::get(&js_sys::global(), &"performance".into()).ok();
    let now = perf
        .as_ref()
        .and_then(|p| Reflect::get(p, &"now".into()).ok())
        .and_then(|f| f.dyn_into::<js_sys::Function>().ok());
    match (perf, now) {
        (Some(p), Some(f)) => f.call0(&p).ok().and_then(|v| v.as_f64()).unwrap_or(0.0) / 1000.0,
        _ => js_sys::Date::now() / 1000.0,
    }
}

/// Calls `f` after `ms` milliseconds.
pub fn set_timeout_ms(f: &js_sys::Function, ms: f64) {
    set_timeout(f, ms);
}

/// Waits `ms` milliseconds.
pub async fn sleep_ms(ms: f64) {
    let p = Promise::new(&mut |resolve, _| {
        set_timeout(&resolve, ms);
    });
    let _ = JsFuture::from(p).await;
}

/// Bytes of WebAssembly memory (the heap) right now.
pub fn heap_bytes() -> f64 {
    wasm_bindgen::memory()
        .dyn_into::<js_sys::WebAssembly::Memory>()
        .map(|m| {
            m.buffer()
                .unchecked_into::<js_sys::ArrayBuffer>()
                .byte_length() as f64
        })
        .unwrap_or(0.0)
}

/// A JS value's message for error texts.
pub fn describe(v: &JsValue) -> String {
    if let Some(e) = v.dyn_ref::<js_sys::Error>() {
        return String::from(e.message());
    }
    v.as_string().unwrap_or_else(|| format!("{v:?}"))
}

/// Calls `f(arg)` and ignores what it returns or throws (progress callbacks must not break a load).
pub fn call1(f: &js_sys::Function, arg: &JsValue) {
    let _ = f.call1(&JsValue::NULL, arg);
}

/// Serializes `v` as plain JS objects (numbers, not BigInt; maps as objects).
///
/// # Errors
/// When `v` cannot be serialized.
pub fn to_js<T: serde::Serialize + ?Sized>(v: &T) -> Result<JsValue, JsValue> {
    Ok(v.serialize(&serde_wasm_bindgen::Serializer::json_compatible())?)
}
