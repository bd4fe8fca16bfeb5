//! The C ABI the browser worker calls. One engine per module instance, used from the worker that
//! instantiated it (the pool's workers only run kernel regions). Every call that can fail returns a
//! status: 0 for success, else an error kind ([`Kind`]) whose message [`wm_error_ptr`] /
//! [`wm_error_len`] hold until the next call.

use std::sync::Mutex;
use webmoe_core::gguf::{parse_header, HeaderParse};
use webmoe_core::model::ModelDesc;
use webmoe_core::options::{EngineOptions, KvDtype};
use webmoe_core::sampling::SamplingParams;
use webmoe_core::TensorSink;
use webmoe_cpu::{CpuError, Engine};

/// Error kinds returned by the calls.
#[repr(i32)]
enum Kind {
    /// A request the engine cannot serve (bad ids, over-long input, no engine).
    Invalid = 1,
    /// The model does not fit the CPU backend's limit.
    TooLarge = 2,
    /// The model or its data is malformed.
    Model = 3,
}

struct State {
    engine: Option<Engine>,
    error: String,
}

static STATE: Mutex<State> = Mutex::new(State {
    engine: None,
    error: String::new(),
});

fn with<R>(f: impl FnOnce(&mut State) -> R) -> R {
    f(&mut STATE.lock().unwrap_or_else(|e| e.into_inner()))
}

fn fail(s: &mut State, kind: Kind, msg: String) -> i32 {
    s.error = msg;
    kind as i32
}

/// The error's own message (the main module adds the kind's prefix).
fn cpu_message(e: CpuError) -> String {
    match e {
        CpuError::TooLarge(m) | CpuError::Invalid(m) | CpuError::Load(m) => m,
    }
}

fn cpu_kind(e: &CpuError) -> Kind {
    match e {
        CpuError::TooLarge(_) => Kind::TooLarge,
        CpuError::Invalid(_) => Kind::Invalid,
        _ => Kind::Model,
    }
}

/// A slice of module memory the caller filled.
///
/// # Safety
/// `ptr..ptr + len` must be memory the caller owns (from [`wm_alloc`]) or `len` 0.
unsafe fn bytes<'a>(ptr: *const u8, len: usize) -> &'a [u8] {
    if len == 0 {
        &[]
    } else {
        std::slice::from_raw_parts(ptr, len)
    }
}

extern "C" {
    fn __wasm_call_ctors();
    fn __wasi_init_tp();
}

/// Runs the module's constructors and sets up the main thread's thread pointer (a cdylib gets no
/// `_initialize` on stable Rust). Call once, before anything else.
#[no_mangle]
pub extern "C" fn wm_init() {
    // SAFETY: wasi-libc's start-up routines, called once on the instantiating thread.
    unsafe {
        __wasm_call_ctors();
        __wasi_init_tp();
    }
}

/// `len` bytes of module memory, 8-byte aligned (token ids and f32 tables are read in place), for
/// the caller to fill; free with [`wm_free`].
#[no_mangle]
pub extern "C" fn wm_alloc(len: usize) -> *mut u8 {
    let mut v = Vec::<u64>::with_capacity(len.div_ceil(8).max(1));
    let p = v.as_mut_ptr();
    std::mem::forget(v);
    p.cast()
}

/// Frees memory from [`wm_alloc`].
///
/// # Safety
/// `ptr` and `len` must come from one [`wm_alloc`] call.
#[no_mangle]
pub unsafe extern "C" fn wm_free(ptr: *mut u8, len: usize) {
    drop(Vec::from_raw_parts(
        ptr.cast::<u64>(),
        0,
        len.div_ceil(8).max(1),
    ));
}

/// The last error's message (UTF-8).
#[no_mangle]
pub extern "C" fn wm_error_ptr() -> *const u8 {
    with(|s| s.error.as_ptr())
}

/// The last error's length in bytes.
#[no_mangle]
pub extern "C" fn wm_error_len() -> usize {
    with(|s| s.error.len())
}

/// Plans the engine for the GGUF file whose first `hdr_len` bytes (at least its whole header) are at
/// `hdr` and whose size is `file_size`: the same [`Engine::new`] as natively, with `rope_freqs`
/// (`rope_len` f32s, 0 without) for Llama 3 scaling tables, a context of `max_context`, prefill chunks
/// of `prefill_chunk`, an f16 KV cache unless `kv_f32`, and at most `limit` bytes.
///
/// # Safety
/// The pointers must be [`wm_alloc`] memory of the given lengths.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn wm_open(
    hdr: *const u8,
    hdr_len: usize,
    file_size: u64,
    rope: *const f32,
    rope_len: usize,
    max_context: u32,
    prefill_chunk: u32,
    kv_f32: u32,
    limit: u64,
) -> i32 {
    let header = bytes(hdr, hdr_len);
    let rope_freqs = (rope_len > 0).then(|| std::slice::from_raw_parts(rope, rope_len).to_vec());
    with(|s| {
        s.engine = None;
        let h = match parse_header(header, file_size) {
            Ok(HeaderParse::Done(h)) => h,
            Ok(HeaderParse::NeedBytes(n)) => {
                return fail(
                    s,
                    Kind::Model,
                    format!("the header needs {n} bytes, got {hdr_len}"),
                )
            }
            Err(e) => return fail(s, Kind::Model, e.to_string()),
        };
        let desc = match ModelDesc::from_gguf(&h, rope_freqs) {
            Ok(d) => d,
            Err(e) => return fail(s, Kind::Model, e.to_string()),
        };
        let opts = EngineOptions {
            max_context: max_context as usize,
            prefill_chunk: prefill_chunk as usize,
            kv_dtype: if kv_f32 == 1 {
                KvDtype::F32
            } else {
                KvDtype::F16
            },
        };
        match Engine::new(desc, &h, opts, Some(limit)) {
            Ok(e) => {
                s.engine = Some(e);
                0
            }
            Err(e) => fail(s, cpu_kind(&e), cpu_message(e)),
        }
    })
}

fn engine_call(f: impl FnOnce(&mut Engine) -> Result<(), (Kind, String)>) -> i32 {
    with(|s| match s.engine.as_mut() {
        None => fail(s, Kind::Invalid, "no model is open".into()),
        Some(e) => match f(e) {
            Ok(()) => 0,
            Err((k, m)) => fail(s, k, m),
        },
    })
}

/// Stores `len` bytes at `ptr` as bytes `offset..` of tensor `index` of the file's tensor table.
///
/// # Safety
/// `ptr` must be [`wm_alloc`] memory of `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn wm_write(index: u32, offset: u64, ptr: *const u8, len: usize) -> i32 {
    let data = bytes(ptr, len);
    engine_call(|e| {
        e.weights_mut()
            .write(index as usize, offset, data)
            .map_err(|m| (Kind::Model, m))
    })
}

/// Checks that every weight arrived.
#[no_mangle]
pub extern "C" fn wm_finish() -> i32 {
    engine_call(|e| {
        e.finish_upload()
            .map_err(|e| (cpu_kind(&e), cpu_message(e)))
    })
}

/// How to draw the next token (JSON from the main module).
#[derive(serde::Deserialize)]
struct Draw {
    params: SamplingParams,
    recent: Vec<u32>,
    counter: u32,
    mask: Option<Vec<u32>>,
}

/// Runs the `n` token ids at `ids` at the next positions. With a sampling request (`draw_len` > 0:
/// JSON `{params, recent, counter}` at `draw`), draws the next token; the result is then its id,
/// else -1. On failure the result is `-(kind + 1)`.
///
/// # Safety
/// `ids` must hold `n` u32s and `draw` `draw_len` bytes of [`wm_alloc`] memory.
#[no_mangle]
pub unsafe extern "C" fn wm_forward(
    ids: *const u32,
    n: usize,
    draw: *const u8,
    draw_len: usize,
) -> i64 {
    let ids = if n == 0 {
        &[][..]
    } else {
        std::slice::from_raw_parts(ids, n)
    };
    let draw: Option<Draw> = match draw_len {
        0 => None,
        _ => match serde_json::from_slice(bytes(draw, draw_len)) {
            Ok(d) => Some(d),
            Err(e) => {
                return -(with(|s| fail(s, Kind::Invalid, format!("sampling request: {e}"))) as i64
                    + 1)
            }
        },
    };
    let mut token = -1i64;
    let code = engine_call(|e| {
        let sample = draw.as_ref().map(|d| webmoe_core::sampling::Draw {
            params: &d.params,
            recent: &d.recent,
            counter: d.counter,
            mask: d.mask.as_deref(),
        });
        match e.forward(ids, sample) {
            Ok(t) => {
                token = t.map_or(-1, i64::from);
                Ok(())
            }
            Err(err) => Err((cpu_kind(&err), cpu_message(err))),
        }
    });
    if code == 0 {
        token
    } else {
        -(code as i64 + 1)
    }
}

/// Keeps the first `n` cached positions (or fewer, `webmoe_cpu::Engine::rewind`); returns how many.
#[no_mangle]
pub extern "C" fn wm_rewind(n: u32) -> u32 {
    with(|s| s.engine.as_mut().map_or(0, |e| e.rewind(n as usize) as u32))
}

/// The last call's logits (`wm_vocab` f32s).
#[no_mangle]
pub extern "C" fn wm_logits() -> *const f32 {
    with(|s| {
        s.engine
            .as_ref()
            .map_or(std::ptr::null(), |e| e.logits().as_ptr())
    })
}

/// The vocabulary size (the length of [`wm_logits`]).
#[no_mangle]
pub extern "C" fn wm_vocab() -> u32 {
    with(|s| s.engine.as_ref().map_or(0, |e| e.logits().len() as u32))
}

/// Bytes of the weights in the CPU layouts.
#[no_mangle]
pub extern "C" fn wm_weight_bytes() -> u64 {
    with(|s| s.engine.as_ref().map_or(0, |e| e.weight_bytes()))
}

/// Weight bytes one decode token reads.
#[no_mangle]
pub extern "C" fn wm_weight_bytes_per_token() -> u64 {
    with(|s| s.engine.as_ref().map_or(0, |e| e.weight_bytes_per_token()))
}

/// Threads the kernels use (the pool starts here if it has not yet).
#[no_mangle]
pub extern "C" fn wm_threads() -> u32 {
    webmoe_cpu::threads() as u32
}
