//! The generation loop shared by every backend (GPU, CPU), the CLI and the browser: prefill, sampling,
//! decode, incremental detokenization, and the stop conditions (end-of-generation token, stop strings,
//! max tokens, full context, an interrupt from the caller). It is async and takes its clock from the
//! caller, so the same code runs under `pollster` natively and on the browser's event loop.

use crate::kv::CachedTokens;
use crate::sampling::SamplingParams;
use crate::stop::StopMatcher;
use crate::tokenizer::{TextStream, Tokenizer};
use crate::TokenizerError;
use serde::Serialize;
use std::future::Future;
use thiserror::Error;

/// What the generation loop needs of an engine: a KV cache position and a forward call that also
/// samples. The GPU and CPU engines implement it.
pub trait Backend {
    /// Its error type.
    type Error: std::error::Error;
    /// Tokens in the KV cache.
    fn pos(&self) -> usize;
    /// Positions the KV cache holds.
    fn max_context(&self) -> usize;
    /// The model's own context length.
    fn model_context(&self) -> usize;
    /// Forgets the KV cache.
    fn reset(&mut self);
    /// The token ids the KV cache holds.
    fn cached(&self) -> &CachedTokens;
    /// Keeps the first `n` cached positions (or fewer, see [`CachedTokens::rewind`]) and forgets the
    /// rest; returns how many it kept. The next call runs at that position.
    fn rewind(&mut self, n: usize) -> usize;
    /// Runs `ids` at the next positions; with `sample = (params, recent tokens, draw counter)` also
    /// chooses the next token.
    fn forward(
        &mut self,
        ids: &[u32],
        sample: Option<(&SamplingParams, &[u32], u32)>,
    ) -> impl Future<Output = Result<Option<u32>, Self::Error>>;
}

/// Why a generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Finish {
    /// An end-of-generation token or a stop string.
    Stop,
    /// `max_tokens` reached.
    Length,
    /// The context is full.
    Context,
    /// The caller asked to stop.
    Abort,
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// Prompt token ids (already templated and tokenized).
    pub prompt: &'a [u32],
    /// Sampling settings.
    pub params: &'a SamplingParams,
    /// Most tokens to generate.
    pub max_tokens: usize,
    /// Stop strings (not included in the text).
    pub stop: &'a [String],
}

/// What a generation produced.
#[derive(Debug, Clone, Serialize)]
pub struct Generation {
    /// Prompt token ids.
    pub prompt_ids: Vec<u32>,
    /// Generated token ids (without an end-of-generation token).
    pub ids: Vec<u32>,
    /// Generated text (without a stop string).
    pub text: String,
    /// Why it ended.
    pub finish_reason: Finish,
    /// Prompt tokens per second (includes the first sampling).
    pub prefill_tokens_per_s: f64,
    /// Generated tokens per second after the first.
    pub decode_tokens_per_s: f64,
    /// Seconds from start to the first generated token.
    pub time_to_first_token_s: f64,
    /// Prompt tokens whose keys and values were already in the cache (not prefilled again).
    pub reused_tokens: usize,
}

/// Errors of a generation.
#[derive(Debug, Error)]
pub enum GenerateError<E: std::error::Error> {
    /// The engine failed.
    #[error(transparent)]
    Backend(E),
    /// The prompt does not fit the context.
    #[error("{0}")]
    TooLong(String),
    /// Detokenization failed.
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    /// A request the loop refuses: a sampling parameter out of range, an empty prompt.
    #[error("{0}")]
    Invalid(String),
    /// The model produced NaN or infinite logits (a broken model file or config): no token is
    /// made up from them.
    #[error("numerical error: the model produced non-finite logits (NaN or infinity) at position {0}; the weights or the model configuration are broken")]
    Numerical(usize),
}

/// Generates from `req.prompt`. The part of the prompt the KV cache already holds (the tokens of an
/// earlier call that it starts with) is not run again: only the rest is prefilled. `on_text` is called after every token with
/// the text that became safe to show (possibly empty) and returns `false` to stop (finish reason [`Finish::Abort`]). `now` is a clock in
/// seconds.
///
/// # Errors
/// A prompt that does not fit the context, device failures, detokenization errors.
pub async fn generate<B: Backend>(
    engine: &mut B,
    tok: &Tokenizer,
    req: Request<'_>,
    now: &dyn Fn() -> f64,
    on_text: &mut dyn FnMut(&str) -> bool,
) -> Result<Generation, GenerateError<B::Error>> {
    req.params
        .validate()
        .map_err(|e| GenerateError::Invalid(format!("invalid sampling parameters: {e}")))?;
    if req.prompt.is_empty() {
        return Err(GenerateError::Invalid(
            "the prompt is empty: it has no tokens (this model adds no BOS token), so there is nothing to continue".into(),
        ));
    }
    if req.prompt.len() >= engine.max_context() {
        return Err(GenerateError::TooLong(format!(
            "{} prompt tokens do not fit: the context holds {} positions (prompt + answer); shorten the prompt or raise the context size (up to the model's {})",
            req.prompt.len(),
            engine.max_context(),
            engine.model_context()
        )));
    }
    let params = req.params;
    let mut history: Vec<u32> = req.prompt.to_vec();
    let mut ids = Vec::new();
    let mut stream = TextStream::default();
    let mut stops = StopMatcher::new(req.stop);
    let mut text = String::new();
    let mut finish = Finish::Length;
    let t0 = now();
    let reused = engine.cached().reusable(req.prompt);
    let reused = engine.rewind(reused);
    let mut next = if req.max_tokens > 0 {
        engine
            .forward(&req.prompt[reused..], Some((params, &history, 0)))
            .await
            .map_err(GenerateError::Backend)?
    } else {
        None
    };
    let t1 = now();
    let mut decoded = 0usize;
    while let Some(id) = next {
        if id == crate::sampling::NON_FINITE {
            return Err(GenerateError::Numerical(history.len()));
        }
        if tok.is_eog(id) {
            finish = Finish::Stop;
            break;
        }
        ids.push(id);
        history.push(id);
        let check = stops.push(&stream.push(tok, id)?);
        text += &check.emit;
        // Called every token (with "" while text is held back) so a stop request is seen at once.
        let go_on = on_text(&check.emit);
        if check.stopped {
            finish = Finish::Stop;
            break;
        }
        if !go_on {
            finish = Finish::Abort;
            break;
        }
        if ids.len() >= req.max_tokens {
            break;
        }
        if engine.pos() >= engine.max_context() {
            finish = Finish::Context;
            break;
        }
        next = engine
            .forward(&[id], Some((params, &history, ids.len() as u32)))
            .await
            .map_err(GenerateError::Backend)?;
        decoded += 1;
    }
    if finish != Finish::Stop {
        let rest = stops.flush();
        if !rest.is_empty() {
            on_text(&rest);
            text += &rest;
        }
    }
    let t2 = now();
    Ok(Generation {
        prompt_ids: req.prompt.to_vec(),
        text,
        ids,
        finish_reason: finish,
        prefill_tokens_per_s: (req.prompt.len() - reused) as f64 / (t1 - t0).max(1e-9),
        decode_tokens_per_s: if decoded > 0 {
            decoded as f64 / (t2 - t1).max(1e-9)
        } else {
            0.0
        },
        time_to_first_token_s: t1 - t0,
        reused_tokens: reused,
    })
}
