//! Browser byte sources. Reads return `Uint8Array`s that live in JS memory, so bytes in flight never
//! grow the WebAssembly heap; the loader copies one chunk at a time into a reused buffer.
//!
//! - [`Source::Ranged`]: HTTP with `Range` requests, any number in flight. Statuses, retries and
//!   backoff, `Content-Range` and the validators follow `webmoe_loader::remote`, as the native
//!   source does; a different ETag/Last-Modified or size is [`FetchError::Changed`].
//! - [`Source::Stream`]: the server answered `200` to a `Range` request, so the body is read in order and
//!   bytes before the wanted range are skipped (a read behind the current position or a broken body
//!   starts a new request).
//! - [`Source::Blob`]: a `File`/`Blob` from a file picker or drag-and-drop, read by slices.

use crate::js::{describe, global_fetch, sleep_ms};
use futures_util::lock::Mutex;
use js_sys::{Reflect, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use webmoe_loader::remote::{
    not_a_model, parse_content_range, status_error, validator, FetchError, Next, Retrier,
    Validators, RETRY,
};
use webmoe_loader::LoadError;

thread_local! {
    /// Seconds a server may stall a read (see [`set_stall_timeout`]).
    static STALL_S: std::cell::Cell<f64> = const { std::cell::Cell::new(30.0) };
}

/// The slowest body rate a read is given time for, on top of the stall timeout (bytes per second).
const MIN_RATE: f64 = 256.0 * 1024.0;

/// Sets how long a server may stall a read (`createEngine({ stallTimeout })`, default 30 s): the
/// response must start within it and a body of `n` bytes arrive within it plus `n` / 256 KiB/s, or
/// the request is aborted; a read that stalls twice fails with a clear error.
pub fn set_stall_timeout(seconds: f64) {
    STALL_S.with(|s| s.set(seconds.clamp(1.0, 3600.0)));
}

fn stall_s() -> f64 {
    STALL_S.with(|s| s.get())
}

/// Where model bytes come from.
pub enum Source {
    /// HTTP with `Range` support.
    Ranged(Remote),
    /// HTTP without `Range` support: one body read in order.
    Stream(Remote, Mutex<BodyStream>),
    /// A local file.
    Blob(web_sys::Blob),
}

/// Identity of a remote file.
#[derive(Debug, Clone)]
pub struct Remote {
    /// URL.
    pub url: String,
    /// Size in bytes.
    pub size: u64,
    /// ETag or Last-Modified ("" when the server sends neither).
    pub validator: String,
}

impl Remote {
    fn validators(&self) -> Validators {
        Validators {
            tag: (!self.validator.is_empty()).then(|| self.validator.clone()),
            size: self.size,
        }
    }
}

/// The body of a `200` response, read in order.
pub struct BodyStream {
    remote: Remote,
    reader: Option<web_sys::ReadableStreamDefaultReader>,
    /// Bytes received but not consumed yet.
    leftover: Option<Uint8Array>,
    /// File offset of the next byte the reader (after `leftover`) yields.
    pos: u64,
}

fn io(name: &str, message: String) -> LoadError {
    LoadError::Io {
        source_name: name.to_string(),
        message,
    }
}

async fn fetch(
    url: &str,
    range: Option<(u64, u64)>,
    json_ok: bool,
) -> Result<web_sys::Response, FetchError> {
    let init = web_sys::RequestInit::new();
    init.set_method("GET");
    // Aborts the request (and its body) when it outlives the stall timeout plus its share of time.
    if let Ok(ctl) = web_sys::AbortController::new() {
        let bytes = range.map_or(0.0, |(_, len)| len as f64);
        let ms = 1000.0 * (stall_s() + bytes / MIN_RATE);
        init.set_signal(Some(&ctl.signal()));
        let abort = wasm_bindgen::closure::Closure::once_into_js(move || ctl.abort());
        crate::js::set_timeout_ms(abort.unchecked_ref(), ms);
    }
    // Our own cache is the only one: the browser's HTTP cache would hide what the loader does.
    init.set_cache(web_sys::RequestCache::NoStore);
    let headers = web_sys::Headers::new().map_err(|e| FetchError::Network(describe(&e)))?;
    if let Some((start, len)) = range {
        let _ = headers.set("Range", &format!("bytes={}-{}", start, start + len - 1));
    }
    init.set_headers(&headers);
    let req = web_sys::Request::new_with_str_and_init(url, &init)
        .map_err(|e| FetchError::BadAnswer(format!("not a valid request: {}", describe(&e))))?;
    let resp: web_sys::Response = JsFuture::from(global_fetch(&req))
        .await
        .map_err(|e| network_error(&e))?
        .unchecked_into();
    if let Some(e) = status_error(resp.status()) {
        return Err(e);
    }
    // A web page or a JSON document where a model file was expected (a wrong URL that a server
    // answers with its HTML page or an API error) says so, rather than failing as a bad GGUF magic.
    if let Some(e) = not_a_model(header(&resp, "Content-Type").as_deref(), json_ok) {
        return Err(e);
    }
    Ok(resp)
}

fn header(resp: &web_sys::Response, name: &str) -> Option<String> {
    resp.headers().get(name).ok().flatten()
}

fn validator_of(resp: &web_sys::Response) -> String {
    let (etag, modified) = (header(resp, "ETag"), header(resp, "Last-Modified"));
    validator(etag.as_deref(), modified.as_deref())
        .unwrap_or_default()
        .to_string()
}

async fn body(resp: &web_sys::Response) -> Result<Uint8Array, FetchError> {
    let p = resp
        .array_buffer()
        .map_err(|e| FetchError::Network(describe(&e)))?;
    let buf = JsFuture::from(p).await.map_err(|e| network_error(&e))?;
    Ok(Uint8Array::new(&buf))
}

/// A failed fetch or body read: a stall when the abort timer fired.
fn network_error(e: &JsValue) -> FetchError {
    let aborted = Reflect::get(e, &"name".into())
        .ok()
        .and_then(|n| n.as_string())
        .is_some_and(|n| n == "AbortError");
    if aborted {
        FetchError::Stalled { seconds: stall_s() }
    } else {
        FetchError::Network(describe(e))
    }
}

/// The error of a read of `name` that ended with `error` after `attempts`.
fn remote_error(name: &str, error: FetchError, attempts: u32) -> LoadError {
    LoadError::Remote {
        source_name: name.to_string(),
        error,
        attempts,
    }
}

/// Runs `f` under [`RETRY`] (backoff, a stalled server tried twice, final errors at once).
async fn with_retries<T, F, Fut>(name: &str, mut f: F) -> Result<T, LoadError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, FetchError>>,
{
    let mut retrier = Retrier::new(RETRY);
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) => match retrier.failed(e) {
                Next::RetryAfterMs(ms) => sleep_ms(ms as f64).await,
                Next::GiveUp(e) => return Err(remote_error(name, e, retrier.failures())),
            },
        }
    }
}

/// Opens `url`: asks for its first `first_bytes` bytes with a `Range` request and returns the source
/// with those bytes; `json_ok`: the file is JSON (a folder's `config.json`), so a JSON answer is not
/// "not a model".
///
/// # Errors
/// [`LoadError::Remote`] for network errors (after retries) and HTTP errors such as 404.
pub async fn open_url(
    url: &str,
    first_bytes: u64,
    json_ok: bool,
) -> Result<(Source, Uint8Array), LoadError> {
    let opened = with_retries(url, || async {
        let resp = fetch(url, Some((0, first_bytes)), json_ok).await?;
        if resp.status() == 206 {
            let range = header(&resp, "Content-Range")
                .and_then(|v| parse_content_range(&v))
                .ok_or_else(|| {
                    FetchError::BadAnswer("206 answer without a valid Content-Range".into())
                })?;
            if range.start != 0 {
                return Err(FetchError::BadAnswer(
                    "the server sent the wrong range".into(),
                ));
            }
            let size = range.total;
            let validator = validator_of(&resp);
            let bytes = body(&resp).await?;
            let want = first_bytes.min(size);
            if (bytes.length() as u64) < want {
                return Err(FetchError::Short {
                    offset: 0,
                    got: bytes.length().into(),
                    wanted: want,
                });
            }
            let remote = Remote {
                url: url.to_string(),
                size,
                validator,
            };
            return Ok((Source::Ranged(remote), bytes.subarray(0, want as u32)));
        }
        // 200: no Range support. Keep reading this body in order.
        let size: u64 = header(&resp, "Content-Length")
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| {
                FetchError::BadAnswer(
                    "the server ignores Range requests and sends no Content-Length".into(),
                )
            })?;
        let remote = Remote {
            url: url.to_string(),
            size,
            validator: validator_of(&resp),
        };
        let mut stream = BodyStream {
            remote,
            reader: reader_of(&resp),
            leftover: None,
            pos: 0,
        };
        let first = stream.read_here(0, first_bytes.min(size)).await?;
        Ok((
            Source::Stream(stream.remote.clone(), Mutex::new(stream)),
            first,
        ))
    })
    .await?;
    Ok(opened)
}

fn reader_of(resp: &web_sys::Response) -> Option<web_sys::ReadableStreamDefaultReader> {
    resp.body().map(|body| {
        body.get_reader()
            .unchecked_into::<web_sys::ReadableStreamDefaultReader>()
    })
}

impl BodyStream {
    async fn next_piece(&mut self) -> Result<Uint8Array, FetchError> {
        if let Some(l) = self.leftover.take() {
            return Ok(l);
        }
        let reader = self
            .reader
            .as_ref()
            .ok_or_else(|| FetchError::Network("the response has no body".into()))?;
        let r = JsFuture::from(reader.read())
            .await
            .map_err(|e| network_error(&e))?;
        let done = Reflect::get(&r, &"done".into())
            .ok()
            .and_then(|v| v.as_bool())
            .unwrap_or(true);
        if done {
            return Err(FetchError::Short {
                offset: self.pos,
                got: 0,
                wanted: self.remote.size - self.pos,
            });
        }
        let v: Uint8Array = Reflect::get(&r, &"value".into())
            .map_err(|e| FetchError::Network(describe(&e)))?
            .unchecked_into();
        Ok(v)
    }

    /// Reads `len` bytes at `offset` (≥ the current position) from the current body.
    async fn read_here(&mut self, offset: u64, len: u64) -> Result<Uint8Array, FetchError> {
        let out = Uint8Array::new_with_length(len as u32);
        let mut filled = 0u64;
        while filled < len {
            let piece = self.next_piece().await?;
            let n = piece.length() as u64;
            let start = self.pos;
            self.pos += n;
            // Skip what lies before `offset + filled`.
            let want_from = offset + filled;
            if self.pos <= want_from {
                continue;
            }
            let from = want_from - start;
            let take = (n - from).min(len - filled);
            out.set(
                &piece.subarray(from as u32, (from + take) as u32),
                filled as u32,
            );
            filled += take;
            if from + take < n {
                self.pos = start + from + take;
                self.leftover = Some(piece.subarray((from + take) as u32, n as u32));
            }
        }
        Ok(out)
    }

    /// Starts the body again from the beginning (a read behind the position, or after a failure).
    async fn restart(&mut self) -> Result<(), FetchError> {
        if let Some(r) = self.reader.take() {
            let _ = r.cancel();
        }
        self.leftover = None;
        self.pos = 0;
        let resp = fetch(&self.remote.url, None, false).await?;
        let size: Option<u64> = header(&resp, "Content-Length").and_then(|v| v.parse().ok());
        if size.is_none() {
            return Err(FetchError::Changed);
        }
        let tag = validator_of(&resp);
        self.remote
            .validators()
            .check((!tag.is_empty()).then_some(tag.as_str()), size)?;
        self.reader = reader_of(&resp);
        Ok(())
    }
}

impl Source {
    /// Total size in bytes.
    pub fn size(&self) -> u64 {
        match self {
            Source::Ranged(r) => r.size,
            Source::Stream(r, _) => r.size,
            Source::Blob(b) => b.size() as u64,
        }
    }

    /// URL and validator of a remote source (the cache key); `None` for local files.
    pub fn remote(&self) -> Option<Remote> {
        match self {
            Source::Ranged(r) => Some(r.clone()),
            Source::Stream(r, _) => Some(r.clone()),
            Source::Blob(_) => None,
        }
    }

    /// Whether reads may run in parallel and out of order.
    pub fn parallel_ok(&self) -> bool {
        !matches!(self, Source::Stream(..))
    }

    /// A name for messages.
    pub fn name(&self) -> String {
        self.remote()
            .map(|r| r.url)
            .unwrap_or_else(|| "the local file".into())
    }

    /// Reads exactly `len` bytes at `offset`.
    ///
    /// # Errors
    /// [`LoadError::Remote`] after retries ([`FetchError::Changed`] when the file changed on the
    /// server), [`LoadError::Io`] for a local file that cannot be read.
    pub async fn read(&self, offset: u64, len: u64) -> Result<Uint8Array, LoadError> {
        let name = self.name();
        if offset.checked_add(len).is_none_or(|e| e > self.size()) {
            return Err(io(&name, format!("range {offset}+{len} beyond the end")));
        }
        match self {
            Source::Ranged(r) => {
                with_retries(&name, || async {
                    let resp = fetch(&r.url, Some((offset, len)), false).await?;
                    if resp.status() != 206 {
                        // The server stopped honouring Range: the file was likely replaced.
                        return Err(FetchError::Changed);
                    }
                    let range =
                        header(&resp, "Content-Range").and_then(|v| parse_content_range(&v));
                    let tag = validator_of(&resp);
                    r.validators().check(
                        (!tag.is_empty()).then_some(tag.as_str()),
                        range.map(|c| c.total),
                    )?;
                    if range.is_none_or(|c| c.start != offset) {
                        return Err(FetchError::BadAnswer(
                            "the server sent the wrong range".into(),
                        ));
                    }
                    let bytes = body(&resp).await?;
                    if bytes.length() as u64 != len {
                        return Err(FetchError::Short {
                            offset,
                            got: bytes.length().into(),
                            wanted: len,
                        });
                    }
                    Ok(bytes)
                })
                .await
            }
            Source::Stream(_, s) => {
                // Attempts run one after another on the one body, so they are written out here
                // rather than through `with_retries`.
                let mut s = s.lock().await;
                let mut retrier = Retrier::new(RETRY);
                loop {
                    let attempt = async {
                        if offset < s.pos || s.reader.is_none() {
                            s.restart().await?;
                        }
                        s.read_here(offset, len).await
                    };
                    match attempt.await {
                        Ok(b) => return Ok(b),
                        Err(e) => {
                            s.reader = None;
                            match retrier.failed(e) {
                                Next::RetryAfterMs(ms) => sleep_ms(ms as f64).await,
                                Next::GiveUp(e) => {
                                    return Err(remote_error(&name, e, retrier.failures()))
                                }
                            }
                        }
                    }
                }
            }
            Source::Blob(b) => {
                let slice = b
                    .slice_with_f64_and_f64(offset as f64, (offset + len) as f64)
                    .map_err(|e| io(&name, describe(&e)))?;
                let buf = JsFuture::from(slice.array_buffer())
                    .await
                    .map_err(|e| io(&name, describe(&e)))?;
                let bytes = Uint8Array::new(&buf);
                if bytes.length() as u64 != len {
                    return Err(io(&name, "the file is shorter than it says".into()));
                }
                Ok(bytes)
            }
        }
    }
}

/// Converts a JS `Blob` argument, or says it is not one.
pub fn as_blob(v: &JsValue) -> Option<web_sys::Blob> {
    v.dyn_ref::<web_sys::Blob>().cloned()
}
