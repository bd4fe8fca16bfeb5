//! Blocking wrapper around the shared generation loop (`webmoe_core::generate`) with a wall clock.

use anyhow::Result;
use std::time::Instant;
use webmoe_core::generate::{Backend, Generation, Request};
use webmoe_core::tokenizer::Tokenizer;

/// Runs `req` to completion, calling `on_text` with each piece of text as it is produced.
///
/// # Errors
/// Context overflow, device failures and detokenization errors.
pub fn generate<B: Backend>(
    engine: &mut B,
    tok: &Tokenizer,
    req: Request<'_>,
    mut on_text: impl FnMut(&str),
) -> Result<Generation>
where
    B::Error: Send + Sync + 'static,
{
    let start = Instant::now();
    let now = move || start.elapsed().as_secs_f64();
    Ok(pollster::block_on(webmoe_core::generate::generate(
        engine,
        tok,
        req,
        &now,
        &mut |t| {
            on_text(t);
            true
        },
    ))?)
}
