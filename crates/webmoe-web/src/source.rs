//! Browser byte sources. Reads return `Uint8Array`s that live in JS memory, so bytes in flight never
//! grow the WebAssembly heap; the loader copies one chunk at a time into a reused buffer.
//!
//! - [`Source::Ranged`]: HTTP with `Range` requests, any number in flight. Failed or short responses are
//!   retried with exponential backoff; a different ETag/Last-Modified or size is [`LoadError::Changed`].
//! - [`Source::Stream`]: the server answered `200` to a `Range` request, so the body is read in order and
//!   bytes before the wanted range are skipped (a read behind the current position or a broken body
//!   starts a new request).
//! - [`Source::Blob`]: a `File`/`Blob` from a file picker or drag-and-drop, read by slices.

use crate::js::{describe, global_fetch, sleep_ms};
use futures_util::lock::Mutex;
use js_sys::{Reflect, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use webmoe_loader::LoadError;

const ATTEMPTS: u32 = 5;
const FIRST_BACKOFF_MS: f64 = 200.0;

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

/// A text that marks a stalled (aborted) request.
const STALLED: &str = "the server stalled";

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

enum Failure {
    /// Worth another try (network error, 5xx, short body).
    Retry(String),
    /// Final (404, changed file, bad answer).
    Fatal(LoadError),
}

async fn fetch(url: &str, range: Option<(u64, u64)>) -> Result<web_sys::Response, Failure> {
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
    let headers = web_sys::Headers::new().map_err(|e| Failure::Retry(describe(&e)))?;
    if let Some((start, len)) = range {
        let _ = headers.set("Range", &format!("bytes={}-{}", start, start + len - 1));
    }
    init.set_headers(&headers);
    let req = web_sys::Request::new_with_str_and_init(url, &init)
        .map_err(|e| Failure::Fatal(io(url, describe(&e))))?;
    let resp: web_sys::Response = JsFuture::from(global_fetch(&req))
        .await
        .map_err(|e| Failure::Retry(network_error(&e)))?
        .unchecked_into();
    let status = resp.status();
    if status == 408 || status == 429 || status >= 500 {
        return Err(Failure::Retry(format!("HTTP {status}")));
    }
    if !(200..300).contains(&status) {
        return Err(Failure::Fatal(io(
            url,
            format!(
                "HTTP {status} {}{}",
                resp.status_text(),
                if status == 404 {
                    " (check the model URL)"
                } else {
                    ""
                }
            ),
        )));
    }
    Ok(resp)
}

/// A web page or a JSON document where a model file was expected (a wrong URL that a server answers
/// with its HTML page or an API error) is a download failure that says so, not a bad GGUF magic.
fn not_a_page(url: &str, resp: &web_sys::Response) -> Result<(), Failure> {
    let ty = header(resp, "Content-Type")
        .unwrap_or_default()
        .to_ascii_lowercase();
    let kind = if ty.starts_with("text/html") || ty.starts_with("application/xhtml") {
        "an HTML page"
    } else if ty.starts_with("application/json") || ty.contains("+json") {
        "a JSON document"
    } else {
        return Ok(());
    };
    Err(Failure::Fatal(io(
        url,
        format!(
            "the server answered with {kind} (Content-Type {ty}), not a model file: check the model URL (for a Hugging Face file, use its /resolve/ address, not the /blob/ page)"
        ),
    )))
}

fn header(resp: &web_sys::Response, name: &str) -> Option<String> {
    resp.headers().get(name).ok().flatten()
}

fn validator_of(resp: &web_sys::Response) -> String {
    header(resp, "ETag")
        .or_else(|| header(resp, "Last-Modified"))
        .unwrap_or_default()
}

/// `Content-Range: bytes a-b/total` → (a, total).
fn content_range(resp: &web_sys::Response) -> Option<(u64, u64)> {
    let v = header(resp, "Content-Range")?;
    let rest = v.strip_prefix("bytes ")?;
    let (span, total) = rest.split_once('/')?;
    let start = span.split_once('-')?.0.trim().parse().ok()?;
    Some((start, total.trim().parse().ok()?))
}

async fn body(resp: &web_sys::Response) -> Result<Uint8Array, Failure> {
    let p = resp
        .array_buffer()
        .map_err(|e| Failure::Retry(describe(&e)))?;
    let buf = JsFuture::from(p)
        .await
        .map_err(|e| Failure::Retry(network_error(&e)))?;
    Ok(Uint8Array::new(&buf))
}

/// A failed fetch or body read: a stall when the abort timer fired.
fn network_error(e: &JsValue) -> String {
    let aborted = Reflect::get(e, &"name".into())
        .ok()
        .and_then(|n| n.as_string())
        .is_some_and(|n| n == "AbortError");
    if aborted {
        format!(
            "{STALLED}: no complete answer within the {} s stall timeout",
            stall_s()
        )
    } else {
        format!("network error: {}", describe(e))
    }
}

/// Retries `f` with exponential backoff while it fails with [`Failure::Retry`].
async fn with_retries<T, F, Fut>(name: &str, mut f: F) -> Result<T, LoadError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Failure>>,
{
    let mut last = String::new();
    let mut stalls = 0;
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            sleep_ms(FIRST_BACKOFF_MS * f64::from(1u32 << (attempt - 1))).await;
        }
        match f().await {
            Ok(v) => return Ok(v),
            Err(Failure::Fatal(e)) => return Err(e),
            Err(Failure::Retry(m)) => {
                // A stalled server is given one more try, not five.
                stalls += usize::from(m.starts_with(STALLED));
                if stalls >= 2 {
                    return Err(io(name, format!("{m}, twice")));
                }
                last = m;
            }
        }
    }
    Err(io(
        name,
        format!("failed after {ATTEMPTS} attempts: {last}"),
    ))
}

/// Opens `url`: asks for its first `first_bytes` bytes with a `Range` request and returns the source
/// with those bytes.
///
/// # Errors
/// [`LoadError::Io`] for network errors (after retries) and HTTP errors such as 404.
pub async fn open_url(url: &str, first_bytes: u64) -> Result<(Source, Uint8Array), LoadError> {
    let opened = with_retries(url, || async {
        let resp = fetch(url, Some((0, first_bytes))).await?;
        not_a_page(url, &resp)?;
        if resp.status() == 206 {
            let (start, size) = content_range(&resp).ok_or_else(|| {
                Failure::Fatal(io(url, "206 answer without a valid Content-Range".into()))
            })?;
            if start != 0 {
                return Err(Failure::Fatal(io(
                    url,
                    "the server sent the wrong range".into(),
                )));
            }
            let validator = validator_of(&resp);
            let bytes = body(&resp).await?;
            let want = first_bytes.min(size);
            if (bytes.length() as u64) < want {
                return Err(Failure::Retry(format!(
                    "short answer: {} of {want} bytes",
                    bytes.length()
                )));
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
                Failure::Fatal(io(
                    url,
                    "the server ignores Range requests and sends no Content-Length".into(),
                ))
            })?;
        let remote = Remote {
            url: url.to_string(),
            size,
            validator: validator_of(&resp),
        };
        let mut stream = BodyStream {
            remote,
            reader: reader_of(&resp).map_err(Failure::Retry)?,
            leftover: None,
            pos: 0,
        };
        let first = stream
            .read_here(0, first_bytes.min(size))
            .await
            .map_err(Failure::Retry)?;
        Ok((
            Source::Stream(stream.remote.clone(), Mutex::new(stream)),
            first,
        ))
    })
    .await?;
    Ok(opened)
}

fn reader_of(
    resp: &web_sys::Response,
) -> Result<Option<web_sys::ReadableStreamDefaultReader>, String> {
    let Some(body) = resp.body() else {
        return Ok(None);
    };
    Ok(Some(
        body.get_reader()
            .unchecked_into::<web_sys::ReadableStreamDefaultReader>(),
    ))
}

impl BodyStream {
    async fn next_piece(&mut self) -> Result<Uint8Array, String> {
        if let Some(l) = self.leftover.take() {
            return Ok(l);
        }
        let reader = self.reader.as_ref().ok_or("the response has no body")?;
        let r = JsFuture::from(reader.read())
            .await
            .map_err(|e| format!("the connection broke: {}", describe(&e)))?;
        let done = Reflect::get(&r, &"done".into())
            .ok()
            .and_then(|v| v.as_bool())
            .unwrap_or(true);
        if done {
            return Err(format!(
                "the body ended at byte {} of {}",
                self.pos, self.remote.size
            ));
        }
        let v: Uint8Array = Reflect::get(&r, &"value".into())
            .map_err(|e| describe(&e))?
            .unchecked_into();
        Ok(v)
    }

    /// Reads `len` bytes at `offset` (≥ the current position) from the current body.
    async fn read_here(&mut self, offset: u64, len: u64) -> Result<Uint8Array, String> {
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
    async fn restart(&mut self) -> Result<(), Failure> {
        if let Some(r) = self.reader.take() {
            let _ = r.cancel();
        }
        self.leftover = None;
        self.pos = 0;
        let resp = fetch(&self.remote.url, None).await?;
        let size: Option<u64> = header(&resp, "Content-Length").and_then(|v| v.parse().ok());
        if size != Some(self.remote.size) || validator_of(&resp) != self.remote.validator {
            return Err(Failure::Fatal(LoadError::Changed {
                source_name: self.remote.url.clone(),
            }));
        }
        self.reader = reader_of(&resp).map_err(Failure::Retry)?;
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
    /// [`LoadError::Io`] after retries, [`LoadError::Changed`] when the file changed on the server.
    pub async fn read(&self, offset: u64, len: u64) -> Result<Uint8Array, LoadError> {
        let name = self.name();
        if offset.checked_add(len).is_none_or(|e| e > self.size()) {
            return Err(io(&name, format!("range {offset}+{len} beyond the end")));
        }
        match self {
            Source::Ranged(r) => {
                with_retries(&name, || async {
                    let resp = fetch(&r.url, Some((offset, len))).await?;
                    let changed = || {
                        Failure::Fatal(LoadError::Changed {
                            source_name: r.url.clone(),
                        })
                    };
                    if resp.status() != 206 {
                        // The server stopped honouring Range: the file was likely replaced.
                        return Err(changed());
                    }
                    match content_range(&resp) {
                        Some((start, total)) if start == offset && total == r.size => {}
                        Some((_, total)) if total != r.size => return Err(changed()),
                        _ => {
                            return Err(Failure::Fatal(io(
                                &r.url,
                                "the server sent the wrong range".into(),
                            )))
                        }
                    }
                    if validator_of(&resp) != r.validator {
                        return Err(changed());
                    }
                    let bytes = body(&resp).await?;
                    if bytes.length() as u64 != len {
                        return Err(Failure::Retry(format!(
                            "short answer: {} of {len} bytes",
                            bytes.length()
                        )));
                    }
                    Ok(bytes)
                })
                .await
            }
            Source::Stream(_, s) => {
                // Attempts run one after another on the one body, so they are written out here
                // rather than through `with_retries`.
                let mut s = s.lock().await;
                let mut last = String::new();
                for attempt in 0..ATTEMPTS {
                    if attempt > 0 {
                        sleep_ms(FIRST_BACKOFF_MS * f64::from(1u32 << (attempt - 1))).await;
                    }
                    if offset < s.pos || s.reader.is_none() {
                        match s.restart().await {
                            Ok(()) => {}
                            Err(Failure::Fatal(e)) => return Err(e),
                            Err(Failure::Retry(m)) => {
                                last = m;
                                continue;
                            }
                        }
                    }
                    match s.read_here(offset, len).await {
                        Ok(b) => return Ok(b),
                        Err(m) => {
                            s.reader = None;
                            last = m;
                        }
                    }
                }
                Err(io(
                    &name,
                    format!("failed after {ATTEMPTS} attempts: {last}"),
                ))
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
