//! `webmoe bench --chat-turns N`: time to first token of each turn of a scripted chat (greedy, fixed
//! questions), on one engine whose cache carries the conversation, against the same prompt prefilled
//! whole on a reset engine in the same run. Turn N / turn 1 near 1 at equal new-token counts means a
//! later turn costs only its new tokens.

use anyhow::{Context, Result};
use webmoe_cli::{generate, load};
use webmoe_core::chat::{encode_chat, Message};
use webmoe_core::generate::{Backend, Request};
use webmoe_core::sampling::SamplingParams;
use webmoe_engine::OpenOptions;

/// The user's side of the scripted chat (repeated when more turns are asked for).
const QUESTIONS: [&str; 6] = [
    "What is the capital of France?",
    "And what river flows through it?",
    "Name a famous museum there.",
    "What is on display in it?",
    "How old is that building?",
    "Thank you. Summarize what we said.",
];

/// Runs the chat and prints one line per turn, or JSON with `--json`.
///
/// # Errors
/// Load failures, a chat longer than the context, device failures.
pub fn run(
    model: &str,
    turns: usize,
    gen_tokens: usize,
    json: bool,
    open: &OpenOptions,
    quantize: Option<webmoe_core::quant::GgmlType>,
) -> Result<()> {
    let mut m = load::load_on(model, open, quantize, json)?;
    let greedy = SamplingParams {
        temperature: 0.0,
        ..Default::default()
    };
    let mut msgs: Vec<Message> = Vec::new();
    let mut rows = Vec::new();
    let mut prompts = Vec::new();
    // Warm-up (pipeline compilation, first touch of buffers), then an empty cache.
    let warm = encode_chat(&m.tokenizer, &[Message::new("user", "Hi")], true)?;
    generate::generate(
        &mut m.engine,
        &m.tokenizer,
        Request::new(&warm, &greedy, 1, &[]),
        |_| {},
    )?;
    m.engine.reset();
    for turn in 0..turns {
        msgs.push(Message::new("user", QUESTIONS[turn % QUESTIONS.len()]));
        let prompt = encode_chat(&m.tokenizer, &msgs, true)?;
        let room = m.engine.max_context().saturating_sub(prompt.len());
        anyhow::ensure!(room > 0, "turn {} does not fit the context", turn + 1);
        let req = Request::new(&prompt, &greedy, gen_tokens.min(room), &[]);
        let g = generate::generate(&mut m.engine, &m.tokenizer, req, |_| {})
            .with_context(|| format!("turn {}", turn + 1))?;
        rows.push(serde_json::json!({
            "turn": turn + 1,
            "prompt_tokens": prompt.len(),
            "cached_tokens": g.reused_tokens,
            "prefilled_tokens": prompt.len() - g.reused_tokens,
            "ttft_s": g.time_to_first_token_s,
        }));
        prompts.push(prompt);
        msgs.push(Message::new("assistant", &g.text));
    }
    // The same prompts prefilled whole on a reset engine, as every turn cost before the cache carried
    // the conversation.
    for (row, prompt) in rows.iter_mut().zip(&prompts) {
        m.engine.reset();
        let cold = generate::generate(
            &mut m.engine,
            &m.tokenizer,
            Request::new(prompt, &greedy, 1, &[]),
            |_| {},
        )?;
        row["whole_prompt_ttft_s"] = cold.time_to_first_token_s.into();
    }
    let ttft = |i: usize| rows[i]["ttft_s"].as_f64().unwrap_or(f64::NAN);
    let summary = serde_json::json!({
        "model": model,
        "device": m.device,
        "gen_tokens": gen_tokens,
        "turns": rows,
        "last_over_first_ttft": ttft(turns - 1) / ttft(0),
    });
    if json {
        println!("{summary}");
    } else {
        println!("turn  prompt  cached  prefilled  TTFT s  whole-prompt TTFT s");
        for r in summary["turns"].as_array().into_iter().flatten() {
            println!(
                "{:>4}  {:>6}  {:>6}  {:>9}  {:>6.3}  {:>6.3}",
                r["turn"].as_u64().unwrap_or(0),
                r["prompt_tokens"].as_u64().unwrap_or(0),
                r["cached_tokens"].as_u64().unwrap_or(0),
                r["prefilled_tokens"].as_u64().unwrap_or(0),
                r["ttft_s"].as_f64().unwrap_or(0.0),
                r["whole_prompt_ttft_s"].as_f64().unwrap_or(0.0)
            );
        }
        println!(
            "turn {turns} / turn 1 TTFT: {:.2}",
            summary["last_over_first_ttft"].as_f64().unwrap_or(f64::NAN)
        );
    }
    Ok(())
}
