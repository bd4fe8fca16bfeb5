//! The HTTP rules both drivers follow (the native `HttpSource` on ureq and the browser's fetch source),
//! written once and without I/O: which statuses are final and which are worth another try, the retry
//! budget and backoff, `Content-Range` parsing, the validators that detect a file changed on the
//! server, and the answers that are not a model file at all. Failures are typed ([`FetchError`]), so
//! callers match variants, never message text.

/// Why reading a remote file failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FetchError {
    /// HTTP 404 or 410.
    #[error("HTTP {status}: not found (check the model URL)")]
    NotFound {
        /// The status.
        status: u16,
    },
    /// Another final HTTP status (401, 403, 416, …).
    #[error("HTTP {status}")]
    Status {
        /// The status.
        status: u16,
    },
    /// A server error or an overload (5xx, 408, 429): worth another try.
    #[error("HTTP {status} (the server may recover)")]
    ServerBusy {
        /// The status.
        status: u16,
    },
    /// No complete answer within the stall timeout.
    #[error("the server stalled: no complete answer within the {seconds} s stall timeout")]
    Stalled {
        /// The stall timeout.
        seconds: f64,
    },
    /// The connection failed or broke.
    #[error("network error: {0}")]
    Network(String),
    /// The body ended before the bytes asked for.
    #[error("short read: {got} of {wanted} bytes at {offset}")]
    Short {
        /// Where the read started.
        offset: u64,
        /// Bytes received.
        got: u64,
        /// Bytes asked for.
        wanted: u64,
    },
    /// The file's validator (ETag / Last-Modified) or size differs from the first answer's.
    #[error("the file changed on the server during the download (its ETag/Last-Modified or size differ); load it again")]
    Changed,
    /// A web page or JSON document where a model file was expected.
    #[error("the server answered with {kind} (Content-Type {content_type}), not a model file: check the model URL (for a Hugging Face file, use its /resolve/ address, not the /blob/ page)")]
    NotAModel {
        /// "an HTML page" or "a JSON document".
        kind: &'static str,
        /// The Content-Type sent.
        content_type: String,
    },
    /// An answer that breaks the protocol (a 206 without a valid Content-Range, bytes from another
    /// offset, no size).
    #[error("{0}")]
    BadAnswer(String),
}

impl FetchError {
    /// Whether another attempt may succeed.
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            FetchError::ServerBusy { .. }
                | FetchError::Stalled { .. }
                | FetchError::Network(_)
                | FetchError::Short { .. }
        )
    }
}

/// The error of a final answer with `status`, or `None` for a success (2xx) and the retryable
/// [`FetchError::ServerBusy`] for 408, 429 and 5xx.
pub fn status_error(status: u16) -> Option<FetchError> {
    match status {
        200..=299 => None,
        404 | 410 => Some(FetchError::NotFound { status }),
        408 | 429 | 500..=599 => Some(FetchError::ServerBusy { status }),
        _ => Some(FetchError::Status { status }),
    }
}

/// A `Content-Range: bytes START-END/TOTAL` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentRange {
    /// First byte.
    pub start: u64,
    /// Last byte (inclusive).
    pub end: u64,
    /// File size.
    pub total: u64,
}

/// Parses a `Content-Range` header; `None` unless it is `bytes START-END/TOTAL` with
/// `START <= END < TOTAL` (an unknown total, `*`, gives no size and is refused).
pub fn parse_content_range(value: &str) -> Option<ContentRange> {
    let rest = value.trim().strip_prefix("bytes ")?;
    let (span, total) = rest.split_once('/')?;
    let (start, end) = span.split_once('-')?;
    let r = ContentRange {
        start: start.trim().parse().ok()?,
        end: end.trim().parse().ok()?,
        total: total.trim().parse().ok()?,
    };
    (r.start <= r.end && r.end < r.total).then_some(r)
}

/// What identifies one version of a remote file: its ETag (or Last-Modified) and size, from the first
/// answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validators {
    /// ETag, else Last-Modified; `None` when the server sends neither.
    pub tag: Option<String>,
    /// Size in bytes.
    pub size: u64,
}

impl Validators {
    /// `Ok` when a later answer's tag and size (where it gives them) are this file's.
    ///
    /// # Errors
    /// [`FetchError::Changed`].
    pub fn check(&self, tag: Option<&str>, size: Option<u64>) -> Result<(), FetchError> {
        let tag_differs = self.tag.is_some() && tag != self.tag.as_deref();
        if tag_differs || size.is_some_and(|s| s != self.size) {
            return Err(FetchError::Changed);
        }
        Ok(())
    }
}

/// ETag if present, else Last-Modified.
pub fn validator<'a>(etag: Option<&'a str>, last_modified: Option<&'a str>) -> Option<&'a str> {
    etag.or(last_modified)
}

/// [`FetchError::NotAModel`] when `content_type` says HTML, or JSON unless `json_ok` (the caller
/// asked for a JSON file such as `config.json`).
pub fn not_a_model(content_type: Option<&str>, json_ok: bool) -> Option<FetchError> {
    let ty = content_type.unwrap_or_default().trim().to_ascii_lowercase();
    let kind = if ty.starts_with("text/html") || ty.starts_with("application/xhtml") {
        "an HTML page"
    } else if !json_ok && (ty.starts_with("application/json") || ty.contains("+json")) {
        "a JSON document"
    } else {
        return None;
    };
    Some(FetchError::NotAModel {
        kind,
        content_type: ty,
    })
}

/// How many times a read is tried and how long to wait between tries.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all.
    pub attempts: u32,
    /// Wait before the second attempt; it doubles before each later one.
    pub first_backoff_ms: u64,
    /// Stalls tolerated before giving up (a stalled server is not given every attempt).
    pub max_stalls: u32,
}

/// The policy of every remote read, native and in the browser.
pub const RETRY: RetryPolicy = RetryPolicy {
    attempts: 5,
    first_backoff_ms: 200,
    max_stalls: 2,
};

/// What to do after a failed attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// Wait this long, then try again.
    RetryAfterMs(u64),
    /// Stop: this is the error to report.
    GiveUp(FetchError),
}

/// The retry loop's state for one read, driven by the caller's attempts.
#[derive(Debug, Clone)]
pub struct Retrier {
    policy: RetryPolicy,
    failures: u32,
    stalls: u32,
}

impl Retrier {
    /// A fresh read under `policy`.
    pub fn new(policy: RetryPolicy) -> Self {
        Retrier {
            policy,
            failures: 0,
            stalls: 0,
        }
    }

    /// Records a failed attempt and says whether to try again.
    pub fn failed(&mut self, e: FetchError) -> Next {
        self.failures += 1;
        if !e.retryable() {
            return Next::GiveUp(e);
        }
        if matches!(e, FetchError::Stalled { .. }) {
            self.stalls += 1;
            if self.stalls >= self.policy.max_stalls {
                return Next::GiveUp(e);
            }
        }
        if self.failures >= self.policy.attempts {
            return Next::GiveUp(e);
        }
        Next::RetryAfterMs(self.policy.first_backoff_ms << (self.failures - 1).min(16))
    }

    /// Attempts made so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classed() {
        assert_eq!(status_error(206), None);
        assert_eq!(
            status_error(404),
            Some(FetchError::NotFound { status: 404 })
        );
        assert_eq!(status_error(403), Some(FetchError::Status { status: 403 }));
        for s in [408, 429, 500, 503] {
            assert!(status_error(s).unwrap().retryable(), "{s}");
        }
        assert!(!status_error(416).unwrap().retryable());
    }

    #[test]
    fn content_ranges_parse_strictly() {
        assert_eq!(
            parse_content_range("bytes 0-0/1234"),
            Some(ContentRange {
                start: 0,
                end: 0,
                total: 1234
            })
        );
        assert_eq!(parse_content_range(" bytes 10-19/20 ").unwrap().start, 10);
        for bad in [
            "bytes 0-9/*",
            "bytes 9-0/20",
            "bytes 0-20/20",
            "items 0-1/2",
            "bytes 0-x/2",
            "",
        ] {
            assert_eq!(parse_content_range(bad), None, "{bad}");
        }
    }

    #[test]
    fn validators_catch_a_changed_file() {
        let v = Validators {
            tag: Some("\"a\"".into()),
            size: 10,
        };
        assert!(v.check(Some("\"a\""), Some(10)).is_ok());
        assert!(v.check(Some("\"a\""), None).is_ok());
        assert_eq!(v.check(Some("\"b\""), Some(10)), Err(FetchError::Changed));
        assert_eq!(v.check(None, Some(10)), Err(FetchError::Changed));
        assert_eq!(v.check(Some("\"a\""), Some(11)), Err(FetchError::Changed));
        let untagged = Validators {
            tag: None,
            size: 10,
        };
        assert!(untagged.check(Some("\"x\""), Some(10)).is_ok());
    }

    #[test]
    fn pages_are_not_models() {
        assert!(not_a_model(Some("text/html; charset=utf-8"), true).is_some());
        assert!(not_a_model(Some("application/problem+json"), false).is_some());
        assert!(not_a_model(Some("application/json"), true).is_none());
        assert!(not_a_model(Some("application/octet-stream"), false).is_none());
        assert!(not_a_model(None, false).is_none());
    }

    #[test]
    fn retries_back_off_and_stop() {
        let mut r = Retrier::new(RETRY);
        let net = || FetchError::Network("reset".into());
        assert_eq!(r.failed(net()), Next::RetryAfterMs(200));
        assert_eq!(r.failed(net()), Next::RetryAfterMs(400));
        assert_eq!(r.failed(net()), Next::RetryAfterMs(800));
        assert_eq!(r.failed(net()), Next::RetryAfterMs(1600));
        assert_eq!(r.failed(net()), Next::GiveUp(net()));
        let mut r = Retrier::new(RETRY);
        assert_eq!(
            r.failed(FetchError::NotFound { status: 404 }),
            Next::GiveUp(FetchError::NotFound { status: 404 })
        );
        let mut r = Retrier::new(RETRY);
        let stall = FetchError::Stalled { seconds: 1.0 };
        assert_eq!(r.failed(stall.clone()), Next::RetryAfterMs(200));
        assert_eq!(r.failed(stall.clone()), Next::GiveUp(stall));
    }
}
