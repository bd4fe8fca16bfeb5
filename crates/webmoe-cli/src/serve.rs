//! `webmoe serve`: static files (demo page, models) on localhost with `Range` support, via
//! axum + tower-http's `ServeDir` (which also answers conditional requests with ETag/Last-Modified).

use anyhow::{Context, Result};
use std::path::Path;
use tower_http::services::ServeDir;

/// Serves `dir` at `/` and, when given, `models` at `/models/`, until the process is stopped.
///
/// # Errors
/// A folder that does not exist, an address that cannot be bound.
pub fn run(dir: &Path, models: Option<&Path>, host: &str, port: u16) -> Result<()> {
    anyhow::ensure!(dir.is_dir(), "{} is not a folder", dir.display());
    if let Some(m) = models {
        anyhow::ensure!(m.is_dir(), "{} is not a folder", m.display());
    }
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind((host, port))
            .await
            .with_context(|| format!("binding {host}:{port}"))?;
        let addr = listener.local_addr()?;
        let mut app = axum::Router::new();
        if let Some(m) = models {
            app = app.nest_service("/models", ServeDir::new(m));
        }
        let app = app.fallback_service(ServeDir::new(dir));
        println!("serving {} at http://{addr}/", dir.display());
        axum::serve(listener, app).await.context("serving")
    })
}
