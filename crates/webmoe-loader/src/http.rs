//! HTTP byte source (native): `Range` requests with retries and backoff, change detection through the
//! validator (ETag / Last-Modified) and size, and a streaming fallback for servers that ignore `Range`.

use crate::remote::{
    not_a_model, parse_content_range, status_error, validator, FetchError, Next, Retrier,
    Validators, RETRY,
};
use crate::{ByteSource, LoadError};
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

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
    /// Validator and size of the first response, compared on every later one.
    validators: Validators,
    /// The server answered the probe with 200 (no `Range` support): reads stream the body instead.
    ranges: bool,
    /// A JSON answer is this file (`config.json`), not a server's error document.
    json_ok: bool,
    /// Streaming mode: the open body and its position.
    stream: Mutex<Option<(u64, Box<dyn Read + Send>)>>,
}

fn header(r: &ureq::http::Response<ureq::Body>, name: &str) -> Option<String> {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn tag(r: &ureq::http::Response<ureq::Body>) -> Option<String> {
    validator(
        header(r, "etag").as_deref(),
        header(r, "last-modified").as_deref(),
    )
    .map(str::to_string)
}

fn content_length(r: &ureq::http::Response<ureq::Body>) -> Option<u64> {
    header(r, "content-length").and_then(|v| v.parse().ok())
}

/// A transport failure, typed: a timeout is a stall.
fn transport(e: ureq::Error) -> FetchError {
    match e {
        ureq::Error::Timeout(_) => FetchError::Stalled {
            seconds: stall().as_secs_f64(),
        },
        e => FetchError::Network(e.to_string()),
    }
}

/// A body read failure, typed.
fn body_error(e: &std::io::Error) -> FetchError {
    let m = e.to_string();
    if e.kind() == std::io::ErrorKind::TimedOut || m.contains("timeout") || m.contains("timed out")
    {
        FetchError::Stalled {
            seconds: stall().as_secs_f64(),
        }
    } else {
        FetchError::Network(m)
    }
}

/// The final or retryable error of `r`'s status, or a page (or JSON, unless `json_ok`) where a model
/// file was expected.
fn check_answer(json_ok: bool, r: &ureq::http::Response<ureq::Body>) -> Result<(), FetchError> {
    if let Some(e) = status_error(r.status().as_u16()) {
        return Err(e);
    }
    not_a_model(header(r, "content-type").as_deref(), json_ok).map_or(Ok(()), Err)
}

impl HttpSource {
    /// Probes `url`, a model file (GGUF, safetensors), with a one-byte range request for its size,
    /// validator and `Range` support.
    ///
    /// # Errors
    /// [`LoadError::Remote`] when the server cannot be reached after retries, answers with an error
    /// status ([`FetchError::NotFound`] for 404), an HTML page or a JSON document, or gives no size.
    pub fn open(url: &str) -> Result<Self, LoadError> {
        Self::open_as(url, false)
    }

    /// [`HttpSource::open`] for a JSON file (`config.json`, an index): a JSON answer is the file.
    ///
    /// # Errors
    /// As [`HttpSource::open`], but for JSON answers.
    pub fn open_json(url: &str) -> Result<Self, LoadError> {
        Self::open_as(url, true)
    }

    /// Opens the file `name` of the folder at `base` (a URL ending in `/`), as JSON when its name
    /// ends in `.json`; `Ok(None)` when the server answers 404 (a folder driver's "missing").
    ///
    /// # Errors
    /// As [`HttpSource::open`], but for 404.
    pub fn open_in_folder(base: &str, name: &str) -> Result<Option<Self>, LoadError> {
        match Self::open_as(&format!("{base}{name}"), name.ends_with(".json")) {
            Ok(s) => Ok(Some(s)),
            Err(LoadError::Remote {
                error: FetchError::NotFound { .. },
                ..
            }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn open_as(url: &str, json_ok: bool) -> Result<Self, LoadError> {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(10).min(stall())))
            .timeout_recv_response(Some(stall()))
            .timeout_recv_body(Some(stall()))
            .build();
        let agent: ureq::Agent = config.into();
        let probe = || -> Result<(Validators, bool), FetchError> {
            let r = agent
                .get(url)
                .header("Range", "bytes=0-0")
                .call()
                .map_err(transport)?;
            check_answer(json_ok, &r)?;
            match r.status().as_u16() {
                206 => {
                    let range = header(&r, "content-range")
                        .and_then(|v| parse_content_range(&v))
                        .ok_or_else(|| {
                            FetchError::BadAnswer(
                                "206 response without a valid Content-Range".into(),
                            )
                        })?;
                    let size = range.total;
                    Ok((Validators { tag: tag(&r), size }, true))
                }
                _ => {
                    let size = content_length(&r).ok_or_else(|| {
                        FetchError::BadAnswer(
                            "server ignores Range and sends no Content-Length".into(),
                        )
                    })?;
                    Ok((Validators { tag: tag(&r), size }, false))
                }
            }
        };
        let (validators, ranges) = with_retries(url, probe)?;
        Ok(HttpSource {
            url: url.to_string(),
            agent,
            validators,
            ranges,
            json_ok,
            stream: Mutex::new(None),
        })
    }

    /// Whether the server honours `Range`.
    pub fn supports_ranges(&self) -> bool {
        self.ranges
    }

    /// Reads `len` bytes (those at `offset` of the file) from `body`; a short body is an error.
    fn read_exact(body: &mut dyn Read, offset: u64, len: u64) -> Result<Vec<u8>, FetchError> {
        let mut buf = Vec::with_capacity(len as usize);
        body.take(len)
            .read_to_end(&mut buf)
            .map_err(|e| body_error(&e))?;
        if buf.len() as u64 != len {
            return Err(FetchError::Short {
                offset,
                got: buf.len() as u64,
                wanted: len,
            });
        }
        Ok(buf)
    }

    fn get(&self, body_bytes: u64) -> ureq::RequestBuilder<ureq::typestate::WithoutBody> {
        let body_time = stall() + Duration::from_secs(body_bytes / MIN_RATE);
        self.agent
            .get(&self.url)
            .config()
            .timeout_recv_body(Some(body_time))
            .build()
    }

    fn read_range(&self, offset: u64, len: u64) -> Result<Vec<u8>, FetchError> {
        let r = self
            .get(len)
            .header("Range", format!("bytes={}-{}", offset, offset + len - 1))
            .call()
            .map_err(transport)?;
        check_answer(self.json_ok, &r)?;
        if r.status().as_u16() != 206 {
            // The server stopped honouring Range: fall back to streaming.
            self.validators
                .check(tag(&r).as_deref(), content_length(&r))?;
            return self.read_streamed_from(Box::new(r.into_body().into_reader()), offset, len);
        }
        let range = header(&r, "content-range")
            .and_then(|v| parse_content_range(&v))
            .ok_or_else(|| {
                FetchError::BadAnswer("206 response without a valid Content-Range".into())
            })?;
        self.validators
            .check(tag(&r).as_deref(), Some(range.total))?;
        if range.start != offset {
            return Err(FetchError::BadAnswer(format!(
                "asked for bytes from {offset}, got from {}",
                range.start
            )));
        }
        Self::read_exact(&mut r.into_body().into_reader(), offset, len)
    }

    fn read_streamed_from(
        &self,
        mut body: Box<dyn Read + Send>,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>, FetchError> {
        std::io::copy(&mut (&mut body).take(offset), &mut std::io::sink())
            .map_err(|e| body_error(&e))?;
        let buf = Self::read_exact(&mut body, offset, len)?;
        *self.stream.lock().unwrap() = Some((offset + len, body));
        Ok(buf)
    }

    /// Streaming mode: continue the open body when the read is at or after its position, else start over.
    fn read_streamed(&self, offset: u64, len: u64) -> Result<Vec<u8>, FetchError> {
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
                let r = self.get(self.validators.size).call().map_err(transport)?;
                check_answer(self.json_ok, &r)?;
                self.validators
                    .check(tag(&r).as_deref(), content_length(&r))?;
                self.read_streamed_from(Box::new(r.into_body().into_reader()), offset, len)
            }
        }
    }
}

/// Runs `f` under [`RETRY`] (backoff, a stalled server tried twice, final errors at once).
fn with_retries<T>(
    url: &str,
    mut f: impl FnMut() -> Result<T, FetchError>,
) -> Result<T, LoadError> {
    let mut retrier = Retrier::new(RETRY);
    loop {
        match f() {
            Ok(v) => return Ok(v),
            Err(e) => match retrier.failed(e) {
                Next::RetryAfterMs(ms) => std::thread::sleep(Duration::from_millis(ms)),
                Next::GiveUp(error) => {
                    return Err(LoadError::Remote {
                        source_name: url.to_string(),
                        error,
                        attempts: retrier.failures(),
                    })
                }
            },
        }
    }
}

impl ByteSource for HttpSource {
    fn len(&self) -> u64 {
        self.validators.size
    }
    fn read_at(&self, offset: u64, len: u64) -> Result<Vec<u8>, LoadError> {
        let size = self.validators.size;
        if offset.checked_add(len).is_none_or(|e| e > size) {
            return Err(LoadError::Io {
                source_name: self.url.clone(),
                message: format!("range {offset}+{len} beyond the end ({size} bytes)"),
            });
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
