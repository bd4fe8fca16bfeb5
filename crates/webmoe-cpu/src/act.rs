//! Activations quantized to 8 bits per block of 32 (llama.cpp's Q8_0/Q8_1 for the CPU dot products):
//! `x[i] ≈ d · q[i]` with `d = max|x| / 127`, plus `d · Σq` of each half block for the layouts with an
//! offset (`Σ (d_w q_w + m) · d_a q_a = d_w d_a Σ q_w q_a + m · d_a Σ q_a`).

/// Quantized activations of `n` tokens of `cols` values each.
#[derive(Debug, Clone, Default)]
pub struct QuantAct {
    /// Values per token (a multiple of 32).
    pub cols: usize,
    /// Scale per block.
    pub d: Vec<f32>,
    /// `d · Σq` of each 16-value half block (two per block).
    pub s: Vec<f32>,
    /// The two halves' sum of each block (`s[2b] + s[2b + 1]`).
    pub st: Vec<f32>,
    /// Quantized values.
    pub q: Vec<i8>,
}

impl QuantAct {
    /// Quantizes `x` (whole tokens of `cols` values; `cols` a multiple of 32) into `self`, reusing its
    /// buffers.
    pub fn quantize(&mut self, x: &[f32], cols: usize) {
        debug_assert!(cols.is_multiple_of(32) && x.len().is_multiple_of(cols));
        self.cols = cols;
        let nb = x.len() / 32;
        self.d.resize(nb, 0.0);
        self.s.resize(2 * nb, 0.0);
        self.st.resize(nb, 0.0);
        self.q.resize(x.len(), 0);
        for (b, blk) in x.chunks_exact(32).enumerate() {
            // NaN-propagating maximum: a NaN or infinite input makes the block's scale non-finite, so
            // the dot products (and the logits) become NaN and the sampler reports it, instead of the
            // value being quantized to a silent 0 (`f32::max` would skip NaN).
            let amax = blk.iter().fold(0f32, |a, v| {
                let m = v.abs();
                if m > a || m.is_nan() || a.is_nan() {
                    if a.is_nan() {
                        a
                    } else {
                        m
                    }
                } else {
                    a
                }
            });
            let d = amax / 127.0;
            let id = if d > 0.0 { 1.0 / d } else { 0.0 };
            let q = &mut self.q[32 * b..32 * b + 32];
            let mut sums = [0i32; 2];
            for (i, (&v, o)) in blk.iter().zip(q.iter_mut()).enumerate() {
                let r = (v * id).round() as i32;
                *o = r as i8;
                sums[i / 16] += r;
            }
            self.d[b] = d;
            self.s[2 * b] = d * sums[0] as f32;
            self.s[2 * b + 1] = d * sums[1] as f32;
            self.st[b] = self.s[2 * b] + self.s[2 * b + 1];
        }
    }

    /// Blocks of token `t`: `(d, s, q)`.
    pub fn token(&self, t: usize) -> Token<'_> {
        let nb = self.cols / 32;
        Token {
            d: &self.d[t * nb..(t + 1) * nb],
            s: &self.s[2 * t * nb..2 * (t + 1) * nb],
            st: &self.st[t * nb..(t + 1) * nb],
            q: &self.q[t * self.cols..(t + 1) * self.cols],
        }
    }
}

/// One token's quantized activations.
#[derive(Clone, Copy, Default)]
pub struct Token<'a> {
    /// Scale per block.
    pub d: &'a [f32],
    /// Half-block sums times the scale.
    pub s: &'a [f32],
    /// Whole-block sums times the scale.
    pub st: &'a [f32],
    /// Values.
    pub q: &'a [i8],
}
