//! `webmoe chat`: an interactive chat in the terminal. Each line read from standard input is a user
//! message; the answer streams to standard output. The conversation stays in the KV cache, so each turn
//! prefills only its new tokens (the generation loop reuses the cached prefix); a line on standard
//! error after each answer says how many prompt tokens were reused.

use anyhow::{Context, Result};
use std::io::{BufRead, Write};
use webmoe_cli::{generate, load};
use webmoe_core::chat::{encode_chat, Message};
use webmoe_core::generate::{Backend, Request};
use webmoe_core::sampling::SamplingParams;
use webmoe_engine::OpenOptions;

/// What `chat` needs beyond the model.
pub struct ChatOptions<'a> {
    /// The system message, if any.
    pub system: Option<String>,
    /// Sampler settings (validated).
    pub params: SamplingParams,
    /// Most tokens per answer.
    pub max_tokens: usize,
    /// Stop strings.
    pub stop: &'a [String],
}

/// Loads `model` and chats until standard input ends (or a line `/exit`); `/reset` starts over.
///
/// # Errors
/// Load failures, a conversation longer than the context, device failures.
pub fn run(
    model: &str,
    open: &OpenOptions,
    quantize: Option<webmoe_core::quant::GgmlType>,
    o: ChatOptions<'_>,
) -> Result<()> {
    let mut m = load::load_on(model, open, quantize, false)?;
    let start: Vec<Message> = o.system.iter().map(|s| Message::new("system", s)).collect();
    let mut msgs = start.clone();
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    for (turn, line) in stdin.lock().lines().enumerate() {
        let line = line.context("reading standard input")?;
        match line.trim() {
            "" => continue,
            "/exit" => break,
            "/reset" => {
                msgs = start.clone();
                continue;
            }
            _ => {}
        }
        msgs.push(Message::new("user", &line));
        let prompt = encode_chat(&m.tokenizer, &msgs, true)?;
        let room = m.engine.max_context().saturating_sub(prompt.len());
        let req = Request {
            prompt: &prompt,
            params: &SamplingParams {
                seed: o.params.seed.wrapping_add(turn as u64),
                ..o.params.clone()
            },
            max_tokens: o.max_tokens.min(room),
            stop: o.stop,
            constraint: None,
            logprobs: None,
        };
        let g = generate::generate(&mut m.engine, &m.tokenizer, req, |t| {
            let mut out = stdout.lock();
            let _ = out.write_all(t.as_bytes());
            let _ = out.flush();
        })
        .with_context(|| format!("turn {}", turn + 1))?;
        println!();
        eprintln!(
            "[{} prompt tokens, {} reused from the cache, {} prefilled; {} generated, {:.2} s to first token, {:.1} tok/s decode]",
            prompt.len(),
            g.reused_tokens,
            prompt.len() - g.reused_tokens,
            g.ids.len(),
            g.time_to_first_token_s,
            g.decode_tokens_per_s
        );
        msgs.push(Message::new("assistant", &g.text));
    }
    Ok(())
}
