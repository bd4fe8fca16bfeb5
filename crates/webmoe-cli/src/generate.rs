//! The generation loop: prefill, GPU sampling, decode, incremental detokenization, stop conditions.

use anyhow::Result;
use serde::Serialize;
use std::time::Instant;
use webmoe_core::sampling::SamplingParams;
use webmoe_core::tokenizer::{TextStream, Tokenizer};
use webmoe_gpu::Engine;

/// What a generation produced.
#[derive(Debug, Serialize)]
pub struct Generation {
    /// Prompt token ids.
    pub prompt_ids: Vec<u32>,
    /// Generated token ids (without the end-of-generation token).
    pub ids: Vec<u32>,
    /// Generated text.
    pub text: String,
    /// `stop` (end-of-generation token), `length` (max tokens) or `context` (context full).
    pub finish_reason: String,
    /// Prompt tokens per second (includes the first sampling).
    pub prefill_tokens_per_s: f64,
    /// Generated tokens per second after the first.
    pub decode_tokens_per_s: f64,
    /// Seconds from start to the first generated token.
    pub time_to_first_token_s: f64,
}

/// Generates up to `max_tokens` tokens after `prompt`, calling `on_text` with each complete piece of
/// text. Stops at an end-of-generation token (not included in the text) or at `max_tokens`.
///
/// # Errors
/// Context overflow, device failures and detokenization errors.
pub fn generate(
    engine: &mut Engine,
    tok: &Tokenizer,
    prompt: &[u32],
    params: &SamplingParams,
    max_tokens: usize,
    mut on_text: impl FnMut(&str),
) -> Result<Generation> {
    engine.reset();
    let mut history: Vec<u32> = prompt.to_vec();
    let mut ids = Vec::new();
    let mut stream = TextStream::default();
    let mut finish = "length";
    let t0 = Instant::now();
    let mut next = if max_tokens > 0 {
        pollster::block_on(engine.forward(prompt, Some((params, &history, 0))))?
    } else {
        None
    };
    let prefill_s = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let mut decoded = 0usize;
    while let Some(id) = next {
        if tok.is_eog(id) {
            finish = "stop";
            break;
        }
        ids.push(id);
        history.push(id);
        on_text(&stream.push(tok, id)?);
        if ids.len() >= max_tokens {
            break;
        }
        if engine.pos >= engine.opts.max_context {
            finish = "context";
            break;
        }
        next =
            pollster::block_on(engine.forward(&[id], Some((params, &history, ids.len() as u32))))?;
        decoded += 1;
    }
    let decode_s = t1.elapsed().as_secs_f64();
    Ok(Generation {
        prompt_ids: prompt.to_vec(),
        text: stream.text().to_string(),
        ids,
        finish_reason: finish.into(),
        prefill_tokens_per_s: prompt.len() as f64 / prefill_s,
        decode_tokens_per_s: if decoded > 0 {
            decoded as f64 / decode_s
        } else {
            0.0
        },
        time_to_first_token_s: prefill_s,
    })
}
