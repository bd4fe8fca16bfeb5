//! HTTP byte source (native): `Range` requests with retries and backoff, change detection through the
//! validator (ETag / Last-Modified) and size, and a streaming fallback for servers that ignore `Range`.

use crate::{ByteSource, LoadError};
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Attempts per range before giving up.
const ATTEMPTS: u32 = 5;
const FIRST_BACKOFF: Duration = Duration::from_millis(100);

/// Seconds a server may keep a request waiting for its response, or a body beyond its share of time
/// (see [`set_stall_timeout`]).
static STALL_SECS: AtomicU64 = AtomicU64::new(30);

/// The slowest body rate a read is given time for, on top of the stall timeout (bytes per second).
const MIN_RATE: u64 = 256 << 10;

/// Sets how long a stalled server may keep a read waiting (default 30 s): a response must start within
/// it and a body of `n` bytes must arrive within it plus `n` / 256 KiB/s. A stalled read fails after
/// that and is retried once, so a stalled download ends within about twice the timeout per read.
pub fn set_stall_timeout(seconds: u64) {
    STALL_SECS.store(seconds.max(1), Ordering::Relaxed);
}

fn stall() -> Duration {
    Duration::from_secs(STALL_SECS.load(Ordering::Relaxed))
}

/// A file on an HTTP server, read by ranges.
pub struct HttpSource {
    url: String,
    agent: ureq::Agent,
    len: u64,
    /// ETag or Last-Modified of the first response, compared on every later one.
    validator: Option<String>,
    /// The server answered the probe with 200 (no `Range` support): reads stream the body instead.
    ranges: bool,
    /// Streaming mode: the open body and its position.
    stream: Mutex<Option<(u64, Box<dyn Read + Send>)>>,
}

fn io_err(url: &str, message: impl Into<String>) -> LoadError {
    LoadError::Io {
        source_name: url.to_string(),
        message: message.into(),
    }
}

fn header(r: &ureq::http::Response<ureq::Body>, name: &str) -> Option<String> {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn validator(r: &ureq::http::Response<ureq::Body>) -> Option<String> {
    header(r, "etag").or_else(|| header(r, "last-modified"))
}

/// Total length from `Content-Range: bytes a-b/total`.
fn content_range(r: &ureq::http::Response<ureq::Body>) -> Option<(u64, u64)> {
    let v = header(r, "content-range")?;
    let rest = v.strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (start, _) = range.split_once('-')?;
    Some((start.parse().ok()?, total.parse().ok()?))
}

/// Errors worth retrying: transport failures and server errors; not 4xx.
fn retryable(e: &LoadError) -> bool {
    match e {
        LoadError::Io { message, .. } => !message.starts_with("HTTP 4"),
        _ => false,
    }
}

/// A read that failed because the server stalled (a timeout).
fn stalled(e: &LoadError) -> bool {
    matches!(e, LoadError::Io { message, .. } if message.contains("timeout") || message.contains("timed out"))
}

impl HttpSource {
    /// Probes `url` (a one-byte range request) for its size, validator and `Range` support.
    ///
    /// # Errors
    /// [`LoadError::Io`] when the server cannot be reached after retries, answers with an error status
    /// (e.g. `HTTP 404`), or gives no size.
    pub fn open(url: &str) -> Result<Self, LoadError> {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(10).min(stall())))
            .timeout_recv_response(Some(stall()))
            .timeout_recv_body(Some(stall()))
            .build();
        let agent: ureq::Agent = config.into();
        let probe = || -> Result<(u64, Option<String>, bool), LoadError> {
            let r = agent
                .get(url)
                .header("Range", "bytes=0-0")
                .call()
                .map_err(|e| io_err(url, e.to_string()))?;
            match r.status().as_u16() {
                206 => {
                    let (_, total) = content_range(&r)
                        .ok_or_else(|| io_err(url, "206 response without a valid Content-Range"))?;
                    Ok((total, validator(&r), true))
                }
                200 => {
                    let len = header(&r, "content-length")
                        .and_then(|v| v.parse().ok())
                        .ok_or_else(|| {
                            io_err(url, "server ignores Range and sends no Content-Length")
                        })?;
                    Ok((len, validator(&r), false))
                }
                s => Err(io_err(url, format!("HTTP {s} for {url}"))),
            }
        };
        let (len, validator, ranges) = with_retries(url, probe)?;
        Ok(HttpSource {
            url: url.to_string(),
            agent,
            len,
            validator,
            ranges,
            stream: Mutex::new(None),
        })
    }

    /// Whether the server honours `Range`.
    pub fn supports_ranges(&self) -> bool {
        self.ranges
    }

    fn check_same_file(
        &self,
        r: &ureq::http::Response<ureq::Body>,
        total: Option<u64>,
    ) -> Result<(), LoadError> {
        let v = validator(r);
        if self.validator.is_some() && v != self.validator {
            return Err(LoadError::Changed {
                source_name: self.url.clone(),
            });
        }
        if total.is_some_and(|t| t != self.len) {
            return Err(LoadError::Changed {
                source_name: self.url.clone(),
            });
        }
        Ok(())
    }

    /// Reads `len` bytes (those at `offset` of the file) from `body`; a short body is an error.
    fn read_exact(&self, body: &mut dyn Read, offset: u64, len: u64) -> Result<Vec<u8>, LoadError> {
        let mut buf = Vec::with_capacity(len as usize);
        body.take(len)
            .read_to_end(&mut buf)
            .map_err(|e| io_err(&self.url, e.to_string()))?;
        if buf.len() as u64 != len {
            return Err(io_err(
                &self.url,
                format!("short read: {} of {len} bytes at {offset}", buf.len()),
            ));
        }
        Ok(buf)
    }

    fn read_range(&self, offset: u64, len: u64) -> Result<Vec<u8>, LoadError> {
        let body_time = stall() + Duration::from_secs(len / MIN_RATE);
        let r = self
            .agent
            .get(&self.url)
            .config()
            .timeout_recv_body(Some(body_time))
            .build()
            .header("Range", format!("bytes={}-{}", offset, offset + len - 1))
            .call()
            .map_err(|e| io_err(&self.url, e.to_string()))?;
        match r.status().as_u16() {
            206 => {
                let (start, total) = content_range(&r).ok_or_else(|| {
                    io_err(&self.url, "206 response without a valid Content-Range")
                })?;
                self.check_same_file(&r, Some(total))?;
                if start != offset {
                    return Err(io_err(
                        &self.url,
                        format!("asked for bytes from {offset}, got from {start}"),
                    ));
                }
                self.read_exact(&mut r.into_body().into_reader(), offset, len)
            }
            200 => {
                // The server stopped honouring Range: fall back to streaming.
                self.check_same_file(
                    &r,
                    header(&r, "content-length").and_then(|v| v.parse().ok()),
                )?;
                self.read_streamed_from(Box::new(r.into_body().into_reader()), offset, len)
            }
            s => Err(io_err(&self.url, format!("HTTP {s} for {}", self.url))),
        }
    }

    fn read_streamed_from(
        &self,
        mut body: Box<dyn Read + Send>,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>, LoadError> {
        std::io::copy(&mut (&mut body).take(offset), &mut std::io::sink())
            .map_err(|e| io_err(&self.url, e.to_string()))?;
        let buf = self.read_exact(&mut body, offset, len)?;
        *self.stream.lock().unwrap() = Some((offset + len, body));
        Ok(buf)
    }

    /// Streaming mode: continue the open body when the read is at or after its position, else start over.
    fn read_streamed(&self, offset: u64, len: u64) -> Result<Vec<u8>, LoadError> {
        let open = self.stream.lock().unwrap().take();
        match open {
            Some((pos, body)) if pos <= offset => self
                .read_streamed_from(body, offset - pos, len)
                .inspect(|_| {
                    if let Some((p, _)) = self.stream.lock().unwrap().as_mut() {
                        *p = offset + len;
                    }
                }),
            _ => {
                // The whole file streams through this one body.
                let body_time = stall() + Duration::from_secs(self.len / MIN_RATE);
                let r = self
                    .agent
                    .get(&self.url)
                    .config()
                    .timeout_recv_body(Some(body_time))
                    .build()
                    .call()
                    .map_err(|e| io_err(&self.url, e.to_string()))?;
                if !r.status().is_success() {
                    return Err(io_err(
                        &self.url,
                        format!("HTTP {} for {}", r.status().as_u16(), self.url),
                    ));
                }
                self.check_same_file(
                    &r,
                    header(&r, "content-length").and_then(|v| v.parse().ok()),
                )?;
                self.read_streamed_from(Box::new(r.into_body().into_reader()), offset, len)
            }
        }
    }
}

/// Runs `f` up to [`ATTEMPTS`] times with exponential backoff while it fails with a retryable error.
fn with_retries<T>(url: &str, mut f: impl FnMut() -> Result<T, LoadError>) -> Result<T, LoadError> {
    let mut wait = FIRST_BACKOFF;
    let mut last = None;
    let mut stalls = 0;
    for _ in 0..ATTEMPTS {
        match f() {
            Ok(v) => return Ok(v),
            Err(e) if stalled(&e) && stalls >= 1 => {
                return Err(io_err(
                    url,
                    format!(
                        "the server stalled: no complete answer within the {} s stall timeout, twice ({e})",
                        stall().as_secs()
                    ),
                ))
            }
            Err(e) if retryable(&e) => {
                stalls += usize::from(stalled(&e));
                last = Some(e);
                std::thread::sleep(wait);
                wait *= 2;
            }
            Err(e) => return Err(e),
        }
    }
    let e = last.unwrap();
    Err(io_err(
        url,
        format!("gave up after {ATTEMPTS} attempts: {e}"),
    ))
}

impl ByteSource for HttpSource {
    fn len(&self) -> u64 {
        self.len
    }
    fn read_at(&self, offset: u64, len: u64) -> Result<Vec<u8>, LoadError> {
        if offset.checked_add(len).is_none_or(|e| e > self.len) {
            return Err(io_err(
                &self.url,
                format!("range {offset}+{len} beyond the end ({} bytes)", self.len),
            ));
        }
        if len == 0 {
            return Ok(Vec::new());
        }
        with_retries(&self.url, || {
            if self.ranges {
                self.read_range(offset, len)
            } else {
                // A broken stream is dropped so that the retry starts a fresh request.
                self.read_streamed(offset, len)
                    .inspect_err(|_| *self.stream.lock().unwrap() = None)
            }
        })
    }
    fn name(&self) -> String {
        self.url.clone()
    }
    fn prefers_sequential(&self) -> bool {
        !self.ranges
    }
}
