//! `webmoe serve`: static files (demo page, models) on localhost with `Range` support, via
//! axum + tower-http's `ServeDir` (which also answers conditional requests with ETag/Last-Modified),
//! behind a guard that serves only what is inside the folders: no dotfiles, nothing reached through
//! a link that leads outside, and only for `Host` names of the bound address (a DNS-rebinding page
//! cannot read it) unless `--allow-host` adds one. Connections that send no complete request headers
//! within the timeout (slow or idle clients) are closed. Pages get cross-origin isolation headers, so
//! the demo can run the CPU backend on threads. With `--openai MODEL`, OpenAI's API for that model is
//! served under `/v1/` behind the same guard (`crate::openai`).

use anyhow::{Context, Result};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tower_http::services::ServeDir;

/// What `webmoe serve` serves and how.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The folder served at `/` (none: only the API).
    pub dir: Option<PathBuf>,
    /// A folder served at `/models/`.
    pub models: Option<PathBuf>,
    /// Address to bind.
    pub host: String,
    /// Port (0 picks a free one).
    pub port: u16,
    /// `Host` names accepted besides the bound address's (`localhost`, `127.0.0.1`, `[::1]`).
    pub allow_hosts: Vec<String>,
    /// Seconds a connection may take to send a request's headers (and may sit idle between requests).
    pub timeout: Duration,
    /// OpenAI's API for a loaded model, under `/v1/`.
    pub openai: Option<Arc<crate::openai::Api>>,
    /// Page origins (`http://host:port`, or `*`) that may call the API from their scripts (CORS).
    pub allow_origins: Vec<String>,
}

struct Guard {
    dir: Option<PathBuf>,
    models: Option<PathBuf>,
    hosts: Vec<String>,
    origins: Vec<String>,
}

impl Guard {
    /// Whether `host` (a `Host` header) names this server.
    fn host_ok(&self, host: &str) -> bool {
        let name = match host.rsplit_once(':') {
            Some((n, p)) if p.bytes().all(|b| b.is_ascii_digit()) && !n.ends_with(':') => n,
            _ => host,
        };
        self.hosts.iter().any(|h| h.eq_ignore_ascii_case(name))
    }

    /// The file a request path names, if it is inside a served folder and not a dotfile.
    fn allowed(&self, path: &str) -> bool {
        let Ok(decoded) = percent_encoding::percent_decode_str(path).decode_utf8() else {
            return false;
        };
        let segments: Vec<&str> = decoded.split('/').filter(|s| !s.is_empty()).collect();
        if segments
            .iter()
            .any(|s| s.starts_with('.') || s.contains('\\') || s.contains('\0'))
        {
            return false;
        }
        let (root, rest) = match (segments.first(), &self.models, &self.dir) {
            (Some(&"models"), Some(m), _) => (m, &segments[1..]),
            (_, _, Some(d)) => (d, &segments[..]),
            // Nothing is served from disk: the router answers (the API, or 404).
            (_, _, None) => return true,
        };
        let target = rest.iter().fold(root.clone(), |p, s| p.join(s));
        match target.canonicalize() {
            Ok(real) => real.starts_with(root),
            // Missing files are ServeDir's to answer (404).
            Err(_) => true,
        }
    }
}

async fn guard(State(g): State<Arc<Guard>>, req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if !g.host_ok(host) {
        return (
            StatusCode::FORBIDDEN,
            format!(
                "Host {host:?} is not this server (webmoe serve --allow-host NAME accepts it)\n"
            ),
        )
            .into_response();
    }
    if !g.allowed(req.uri().path()) {
        return (StatusCode::NOT_FOUND, "not found\n").into_response();
    }
    // Pages of the origins `--allow-origin` names may call the API (and only the API).
    let cors = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .filter(|o| {
            req.uri().path().starts_with("/v1/")
                && g.origins
                    .iter()
                    .any(|a| a == "*" || a.eq_ignore_ascii_case(o))
        })
        .and_then(|o| HeaderValue::from_str(o).ok());
    let mut res = match (&cors, req.method()) {
        (Some(_), &axum::http::Method::OPTIONS) => StatusCode::NO_CONTENT.into_response(),
        _ => next.run(req).await,
    };
    let h = res.headers_mut();
    let resource_policy = if cors.is_some() {
        "cross-origin"
    } else {
        "same-origin"
    };
    for (k, v) in [
        ("cross-origin-opener-policy", "same-origin"),
        ("cross-origin-embedder-policy", "require-corp"),
        ("cross-origin-resource-policy", resource_policy),
    ] {
        h.insert(k, HeaderValue::from_static(v));
    }
    if let Some(origin) = cors {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.insert(header::VARY, HeaderValue::from_static("origin"));
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST, OPTIONS"),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("authorization, content-type"),
        );
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
    }
    res
}

/// Serves until the process is stopped.
///
/// # Errors
/// A folder that does not exist, an address that cannot be bound.
pub fn run(o: &ServeOptions) -> Result<()> {
    let real = |p: &Path| {
        anyhow::ensure!(p.is_dir(), "{} is not a folder", p.display());
        p.canonicalize()
            .with_context(|| format!("resolving {}", p.display()))
    };
    let dir = o.dir.as_deref().map(real).transpose()?;
    let models = o.models.as_deref().map(real).transpose()?;
    let mut hosts = vec![
        "localhost".to_string(),
        "127.0.0.1".into(),
        "[::1]".into(),
        o.host.clone(),
    ];
    hosts.extend(o.allow_hosts.iter().cloned());
    let g = Arc::new(Guard {
        dir: dir.clone(),
        models: models.clone(),
        hosts,
        origins: o.allow_origins.clone(),
    });
    let mut app = axum::Router::new();
    if let Some(m) = &models {
        app = app.nest_service("/models", ServeDir::new(m));
    }
    if let Some(api) = &o.openai {
        app = app.merge(crate::openai::routes(api.clone()));
    }
    if let Some(d) = &dir {
        app = app.fallback_service(ServeDir::new(d));
    }
    let app = app.layer(axum::middleware::from_fn_with_state(g, guard));
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind((o.host.as_str(), o.port))
            .await
            .with_context(|| format!("binding {}:{}", o.host, o.port))?;
        let addr = listener.local_addr()?;
        match &dir {
            Some(d) => println!("serving {} at http://{addr}/", d.display()),
            None => println!("serving at http://{addr}/"),
        }
        if o.openai.is_some() {
            println!("OpenAI API at http://{addr}/v1/ (chat/completions, completions, models)");
        }
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(s) => s,
                Err(_) => continue,
            };
            let service = hyper_util::service::TowerToHyperService::new(app.clone());
            let timeout = o.timeout;
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(timeout)
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}
