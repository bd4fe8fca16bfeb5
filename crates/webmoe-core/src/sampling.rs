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
    /// Window of the repetition penalty (and of the presence and frequency penalties).
    pub repeat_last_n: usize,
    /// OpenAI's presence penalty: subtracted from the logit of every token in the window (0 = off).
    pub presence_penalty: f32,
    /// OpenAI's frequency penalty: subtracted once per occurrence in the window (0 = off).
    pub frequency_penalty: f32,
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
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            seed: 0,
        }
    }
}

impl SamplingParams {
    /// Whether this is greedy decoding.
    pub fn is_greedy(&self) -> bool {
        self.temperature <= 0.0
    }

    /// Checks every value: temperature in [0, 100], top_p and min_p in [0, 1], repetition penalty in
    /// (0, 100], presence and frequency penalties in [-2, 2] (OpenAI's range), a penalty window of at
    /// most 2^20 tokens; all finite.
    ///
    /// # Errors
    /// A message naming the parameter and its value.
    pub fn validate(&self) -> Result<(), String> {
        let range = |name: &str, v: f32, lo: f32, hi: f32, open_lo: bool| {
            let ok = v.is_finite() && v <= hi && if open_lo { v > lo } else { v >= lo };
            if ok {
                Ok(())
            } else {
                let l = if open_lo { "(" } else { "[" };
                Err(format!(
                    "{name} must be a number in {l}{lo}, {hi}], not {v}"
                ))
            }
        };
        range("temperature", self.temperature, 0.0, 100.0, false)?;
        range("top_p", self.top_p, 0.0, 1.0, false)?;
        range("min_p", self.min_p, 0.0, 1.0, false)?;
        range("repeat_penalty", self.repeat_penalty, 0.0, 100.0, true)?;
        range("presence_penalty", self.presence_penalty, -2.0, 2.0, false)?;
        range(
            "frequency_penalty",
            self.frequency_penalty,
            -2.0,
            2.0,
            false,
        )?;
        if self.repeat_last_n > 1 << 20 {
            return Err(format!(
                "repeat_last_n must be at most {}, not {}",
                1 << 20,
                self.repeat_last_n
            ));
        }
        Ok(())
    }
}

/// The token id a sampler returns when the logits hold NaN or ±inf (never a real token: vocabularies
/// are far smaller). Backends turn it into a numerical error instead of a token.
pub const NON_FINITE: u32 = u32::MAX;

/// Most distinct recent tokens the repetition penalty looks at (the GPU sampler's limit too).
pub const MAX_RECENT: usize = 1024;

/// The distinct tokens of the penalty window with their counts, newest first, at most
/// [`MAX_RECENT`] of them.
pub fn penalty_window(params: &SamplingParams, recent: &[u32]) -> Vec<(u32, u32)> {
    let mut uniq: Vec<(u32, u32)> = Vec::new();
    let window = &recent[recent.len().saturating_sub(params.repeat_last_n)..];
    for &t in window.iter().rev() {
        if let Some((_, n)) = uniq.iter_mut().find(|(id, _)| *id == t) {
            *n += 1;
        } else if uniq.len() < MAX_RECENT {
            uniq.push((t, 1));
        }
    }
    uniq
}

/// Whether any penalty is on (the window matters).
pub fn penalizes(p: &SamplingParams) -> bool {
    p.repeat_penalty != 1.0 || p.presence_penalty != 0.0 || p.frequency_penalty != 0.0
}

/// The value a masked-out token's logit becomes: finite (so the non-finite check ignores it) and
/// below every real logit; the thresholds and the draw skip it.
pub const MASKED: f32 = -3.0e38;

/// Whether token `id` is allowed by `mask` (bit `id % 32` of word `id / 32`).
pub fn allowed(mask: &[u32], id: usize) -> bool {
    mask.get(id / 32).is_some_and(|w| w >> (id % 32) & 1 == 1)
}

/// One draw of the next token (serialized as `{params, recent, counter, mask}` for the browser's
/// threaded CPU module).
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Draw<'a> {
    /// Sampler settings.
    pub params: &'a SamplingParams,
    /// The tokens so far (the penalty window is their tail).
    pub recent: &'a [u32],
    /// The draw's number in the seeded stream.
    pub counter: u32,
    /// The tokens allowed (structured output): bit `i % 32` of word `i / 32`; `None` allows all.
    pub mask: Option<&'a [u32]>,
}

impl<'a> Draw<'a> {
    /// A draw without a token mask.
    pub fn new(params: &'a SamplingParams, recent: &'a [u32], counter: u32) -> Self {
        Draw {
            params,
            recent,
            counter,
            mask: None,
        }
    }
}

/// The PCG hash the GPU sampler draws with.
fn pcg(v: u32) -> u32 {
    let s = v.wrapping_mul(747796405).wrapping_add(2891336453);
    let w = ((s >> ((s >> 28) + 4)) ^ s).wrapping_mul(277803737);
    (w >> 22) ^ w
}

/// The uniform number in `[0, 1)` of draw `counter` of the stream `seed` (the same on every backend).
pub fn uniform(seed: u64, counter: u32) -> f32 {
    let r = pcg(pcg(seed as u32 ^ pcg((seed >> 32) as u32)) ^ counter);
    (r >> 8) as f32 * (1.0 / 16777216.0)
}

/// Largest `t` in `[lo, hi]` (by 40 bisection steps, as the GPU sampler does) with `f(t) >= goal`.
fn bisect(mut lo: f32, mut hi: f32, goal: f32, f: impl Fn(f32) -> f32) -> f32 {
    for _ in 0..40 {
        let mid = 0.5 * (lo + hi);
        if f(mid) >= goal {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo
}

/// Chooses the next token from `logits` on the CPU with the GPU sampler's chain and thresholds
/// (`shaders/sample.wgsl`): repetition penalty over `recent`, greedy argmax (lowest id on ties) when
/// `temperature <= 0`, else the top-k, top-p and min-p thresholds on the penalized logits and a draw
/// from `softmax(l / temperature)` over the kept tokens in index order with [`uniform`]`(seed, counter)`.
/// `logits` is used as scratch.
pub fn sample(logits: &mut [f32], d: &Draw) -> u32 {
    let (p, counter) = (d.params, d.counter);
    let n = logits.len();
    if logits.iter().any(|v| !v.is_finite()) {
        return NON_FINITE;
    }
    if penalizes(p) {
        for (id, count) in penalty_window(p, d.recent) {
            if let Some(v) = logits.get_mut(id as usize) {
                let r = if *v > 0.0 {
                    *v / p.repeat_penalty
                } else {
                    *v * p.repeat_penalty
                };
                *v = r - (count as f32 * p.frequency_penalty + p.presence_penalty);
            }
        }
    }
    if let Some(mask) = d.mask {
        for (i, v) in logits.iter_mut().enumerate() {
            if !allowed(mask, i) {
                *v = MASKED;
            }
        }
    }
    let (mut mx, mut argmax, mut mn) = (-3.4e38f32, 0usize, 3.4e38f32);
    for (i, &v) in logits.iter().enumerate() {
        if v > mx {
            mx = v;
            argmax = i;
        }
        if v > MASKED {
            mn = mn.min(v);
        }
    }
    if p.is_greedy() {
        return argmax as u32;
    }
    let mut tau = mn;
    if p.top_k > 0 && (p.top_k as usize) < n {
        let count = |t: f32| logits.iter().filter(|&&v| v >= t).count() as f32;
        tau = bisect(mn, mx, p.top_k as f32, count);
    }
    if p.top_p < 1.0 {
        let mass = |t: f32| -> f32 {
            logits
                .iter()
                .filter(|&&v| v >= t)
                .map(|&v| libm::expf(v - mx))
                .sum()
        };
        let goal = p.top_p * mass(tau);
        tau = tau.max(bisect(tau, mx, goal, mass));
    }
    if p.min_p > 0.0 {
        tau = tau.max(mx + libm::logf(p.min_p));
    }
    tau = tau.min(mx);
    let weight = |v: f32| libm::expf((v - mx) / p.temperature);
    let total: f32 = logits
        .iter()
        .filter(|&&v| v >= tau)
        .map(|&v| weight(v))
        .sum();
    let u = uniform(p.seed, counter) * total;
    let mut acc = 0.0;
    let mut pick = argmax;
    for (i, &v) in logits.iter().enumerate() {
        if v >= tau {
            pick = i;
            acc += weight(v);
            if acc > u {
                break;
            }
        }
    }
    pick as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_the_lowest_id_among_equal_maxima() {
        let mut l = vec![0.0, 3.0, 1.0, 3.0];
        assert_eq!(
            sample(&mut l, &Draw::new(&SamplingParams::default(), &[], 0)),
            1
        );
    }

    #[test]
    fn top_k_one_is_greedy_at_any_temperature() {
        let p = SamplingParams {
            temperature: 5.0,
            top_k: 1,
            ..Default::default()
        };
        for counter in 0..20 {
            let mut l = vec![0.5, 0.1, 2.0, 1.9, -1.0];
            assert_eq!(sample(&mut l, &Draw::new(&p, &[], counter)), 2);
        }
    }

    #[test]
    fn draws_follow_the_softmax_over_kept_tokens() {
        let p = SamplingParams {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            ..Default::default()
        };
        let logits = [0.0f32, 1.0, 2.0];
        let mut counts = [0usize; 3];
        for c in 0..3000 {
            counts[sample(&mut logits.to_vec(), &Draw::new(&p, &[], c)) as usize] += 1;
        }
        let z: f32 = logits.iter().map(|v| v.exp()).sum();
        for (i, &n) in counts.iter().enumerate() {
            let want = logits[i].exp() / z;
            let got = n as f32 / 3000.0;
            assert!((got - want).abs() < 0.03, "token {i}: {got} vs {want}");
        }
    }
}
