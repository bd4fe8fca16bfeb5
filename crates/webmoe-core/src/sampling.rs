//! Sampling parameters (the GPU sampler implements them; see webmoe-gpu `sampler`).

use serde::{Deserialize, Serialize};

/// How the next token is chosen. `temperature <= 0` means greedy (argmax, lowest id on ties).
/// Order of application follows llama.cpp's default chain: repetition penalty, top-k, top-p, min-p
/// (these three on the penalized logits at temperature 1), then temperature, then a seeded draw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SamplingParams {
    /// Softmax temperature; `<= 0` selects greedy decoding.
    pub temperature: f32,
    /// Keep the `top_k` most likely tokens (0 = all).
    pub top_k: u32,
    /// Keep the smallest set of tokens whose probability sum reaches `top_p` (1 = all).
    pub top_p: f32,
    /// Drop tokens whose probability is below `min_p` times the most likely one (0 = off).
    pub min_p: f32,
    /// llama.cpp-style repetition penalty over the last `repeat_last_n` tokens (1 = off).
    pub repeat_penalty: f32,
    /// Window of the repetition penalty.
    pub repeat_last_n: usize,
    /// Random seed.
    pub seed: u64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 0.0,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            seed: 0,
        }
    }
}

impl SamplingParams {
    /// Whether this is greedy decoding.
    pub fn is_greedy(&self) -> bool {
        self.temperature <= 0.0
    }
}
