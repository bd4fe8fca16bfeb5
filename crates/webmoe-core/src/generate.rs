//! The generation loop shared by every backend (GPU, CPU), the CLI and the browser: prefill, sampling,
//! decode, incremental detokenization, and the stop conditions (end-of-generation token, stop strings,
//! max tokens, full context, an interrupt from the caller). It is async and takes its clock from the
//! caller, so the same code runs under `pollster` natively and on the browser's event loop.

use crate::kv::CachedTokens;
use crate::sampling::{Draw, SamplingParams};
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
        sample: Option<Draw<'_>>,
    ) -> impl Future<Output = Result<Option<u32>, Self::Error>>;
    /// The logits of the last token of the last call (read back from the device: only for log
    /// probabilities).
    fn logits(&self) -> impl Future<Output = Result<Vec<f32>, Self::Error>>;
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

/// What constrains the generated tokens (structured output: a JSON schema, a grammar, a regex). The
/// loop asks for the allowed tokens before every draw and reports each chosen token.
pub trait Constraint {
    /// The tokens allowed next: bit `i % 32` of word `i / 32` allows token `i`; words past the end
    /// allow nothing.
    ///
    /// # Errors
    /// A message when the constraint cannot continue (an internal grammar error).
    fn mask(&mut self) -> Result<&[u32], String>;
    /// Records the chosen token (never an end-of-generation token: the loop ends there).
    ///
    /// # Errors
    /// A message when the token breaks the constraint.
    fn commit(&mut self, id: u32) -> Result<(), String>;
    /// Whether the output is complete and nothing may follow but the end.
    fn finished(&self) -> bool;
}

/// What to generate.
pub struct Request<'a> {
    /// Prompt token ids (already templated and tokenized).
    pub prompt: &'a [u32],
    /// Sampling settings.
    pub params: &'a SamplingParams,
    /// Most tokens to generate.
    pub max_tokens: usize,
    /// Stop strings (not included in the text).
    pub stop: &'a [String],
    /// Structured output: the tokens allowed at each step (`None`: any).
    pub constraint: Option<&'a mut dyn Constraint>,
    /// Report each generated token's log probability and this many most likely alternatives
    /// (OpenAI's `logprobs` / `top_logprobs`); `None`: none (the logits stay on the device).
    pub logprobs: Option<usize>,
}

impl<'a> Request<'a> {
    /// A request without a constraint.
    pub fn new(
        prompt: &'a [u32],
        params: &'a SamplingParams,
        max_tokens: usize,
        stop: &'a [String],
    ) -> Self {
        Request {
            prompt,
            params,
            max_tokens,
            stop,
            constraint: None,
            logprobs: None,
        }
    }
}

/// A generated token's log probability under the model (log-softmax of the raw logits, before
/// penalties, temperature and masks) and the most likely alternatives.
#[derive(Debug, Clone, Serialize)]
pub struct TokenLogprob {
    /// The token.
    pub id: u32,
    /// Its log probability.
    pub logprob: f32,
    /// The most likely tokens and their log probabilities, most likely first.
    pub top: Vec<(u32, f32)>,
}

/// [`TokenLogprob`] of `id` from `logits`, with `top` alternatives.
pub fn token_logprob(logits: &[f32], id: u32, top: usize) -> TokenLogprob {
    let mx = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let lse = mx + logits.iter().map(|&v| (v - mx).exp()).sum::<f32>().ln();
    let mut best: Vec<(u32, f32)> = Vec::with_capacity(top + 1);
    for (i, &v) in logits.iter().enumerate() {
        if best.len() < top || best.last().is_some_and(|b| v > b.1) {
            let at = best.partition_point(|b| b.1 >= v);
            best.insert(at, (i as u32, v));
            best.truncate(top);
        }
    }
    TokenLogprob {
        id,
        logprob: logits
            .get(id as usize)
            .map_or(f32::NEG_INFINITY, |v| v - lse),
        top: best.into_iter().map(|(i, v)| (i, v - lse)).collect(),
    }
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
    /// Seconds spent computing the constraint's token masks (0 without one).
    pub constraint_s: f64,
    /// Per generated token, when asked for ([`Request::logprobs`]).
    pub logprobs: Vec<TokenLogprob>,
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
    /// The constraint failed or allowed no token.
    #[error("structured output: {0}")]
    Constraint(String),
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
    mut req: Request<'_>,
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
    let mut constraint_s = 0.0;
    let mut next = if req.max_tokens > 0 {
        let mask = next_mask(&mut req.constraint, now, &mut constraint_s)?;
        let draw = Draw {
            mask,
            ..Draw::new(params, &history, 0)
        };
        engine
            .forward(&req.prompt[reused..], Some(draw))
            .await
            .map_err(GenerateError::Backend)?
    } else {
        None
    };
    let t1 = now();
    let mut decoded = 0usize;
    let mut logprobs = Vec::new();
    while let Some(id) = next {
        if id == crate::sampling::NON_FINITE {
            return Err(GenerateError::Numerical(history.len()));
        }
        if let Some(top) = req.logprobs {
            let logits = engine.logits().await.map_err(GenerateError::Backend)?;
            logprobs.push(token_logprob(&logits, id, top));
        }
        if tok.is_eog(id) {
            finish = Finish::Stop;
            break;
        }
        if let Some(c) = req.constraint.as_deref_mut() {
            c.commit(id).map_err(GenerateError::Constraint)?;
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
        if req.constraint.as_deref().is_some_and(|c| c.finished()) {
            finish = Finish::Stop;
            break;
        }
        let mask = next_mask(&mut req.constraint, now, &mut constraint_s)?;
        let draw = Draw {
            mask,
            ..Draw::new(params, &history, ids.len() as u32)
        };
        next = engine
            .forward(&[id], Some(draw))
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
        constraint_s,
        logprobs,
    })
}

/// The constraint's mask for the next draw (timed into `spent`); an error when it allows nothing.
fn next_mask<'c, E: std::error::Error>(
    constraint: &'c mut Option<&mut dyn Constraint>,
    now: &dyn Fn() -> f64,
    spent: &mut f64,
) -> Result<Option<&'c [u32]>, GenerateError<E>> {
    let Some(c) = constraint.as_deref_mut() else {
        return Ok(None);
    };
    let t = now();
    let mask = c.mask().map_err(GenerateError::Constraint)?;
    *spent += now() - t;
    if mask.iter().all(|&w| w == 0) {
        return Err(GenerateError::Constraint(
            "the grammar allows no token here (no token of this vocabulary can continue it)".into(),
        ));
    }
    Ok(Some(mask))
}
