//! `webmoe serve`: static files (demo page, models) on localhost with `Range` support, via
//! axum + tower-http's `ServeDir`.

use anyhow::{Context, Result};
use std::path::Path;

pub fn run(dir: &Path, host: &str, port: u16) -> Result<()> {
    anyhow::ensure!(dir.is_dir(), "{} is not a folder", dir.display());
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind((host, port))
            .await
            .with_context(|| format!("binding {host}:{port}"))?;
        let addr = listener.local_addr()?;
        println!("serving {} at http://{addr}/", dir.display());
        let app = axum::Router::new().fallback_service(tower_http::services::ServeDir::new(dir));
        axum::serve(listener, app).await.context("serving")
    })
}
