//! Portable kernels: plain integer loops. They run where no SIMD version exists and are the oracle
//! the SIMD versions are tested against.

use super::dispatch_layout;
use crate::act::Token;
use crate::matrix::Matrix;

/// See [`super::rows`].
pub fn rows(m: &Matrix, r0: usize, a: Token, x: &[f32], out: &mut [f32]) {
    dispatch_layout!(m, r0, a, x, out, nibbles, bytes, dot_f32)
}

/// `w · x` in f32 with eight partial sums.
#[inline(always)]
pub fn dot_f32(w: &[f32], x: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (wc, xc) = (w.chunks_exact(8), x.chunks_exact(8));
    let (wr, xr) = (wc.remainder(), xc.remainder());
    for (a, b) in wc.zip(xc) {
        for i in 0..8 {
            acc[i] += a[i] * b[i];
        }
    }
    let tail: f32 = wr.iter().zip(xr).map(|(a, b)| a * b).sum();
    acc.iter().sum::<f32>() + tail
}

/// Row `r` of a [`Layout::Nibbles`] matrix · `a`.
pub fn nibbles(m: &Matrix, r: usize, a: Token) -> f32 {
    let nb = m.blocks();
    let mut acc = 0f32;
    for b in 0..nb {
        let i = r * nb + b;
        let q = &m.q[16 * i..16 * i + 16];
        let qa = &a.q[32 * b..32 * b + 32];
        let mut sum = 0i32;
        for j in 0..16 {
            sum += (q[j] & 15) as i32 * qa[j] as i32 + (q[j] >> 4) as i32 * qa[j + 16] as i32;
        }
        acc += m.d[i] * a.d[b] * sum as f32 + m.m[i] * (a.s[2 * b] + a.s[2 * b + 1]);
    }
    acc
}

/// Row `r` of a [`Layout::Bytes`] matrix · `a` (`S`: signed values, `B16`: 16-value blocks, `OFF`:
/// blocks have an offset).
pub fn bytes<const S: bool, const B16: bool, const OFF: bool>(m: &Matrix, r: usize, a: Token) -> f32 {
    let n = m.cols;
    let q = &m.q[r * n..(r + 1) * n];
    let val = |v: u8| if S { v as i8 as i32 } else { v as i32 };
    let mut acc = 0f32;
    for b in 0..n / 32 {
        let qa = &a.q[32 * b..32 * b + 32];
        let qw = &q[32 * b..32 * b + 32];
        let half = |h: usize| -> i32 {
            (16 * h..16 * h + 16)
                .map(|j| val(qw[j]) * qa[j] as i32)
                .sum()
        };
        if B16 {
            for h in 0..2 {
                let i = (r * n) / 16 + 2 * b + h;
                acc += m.d[i] * a.d[b] * half(h) as f32;
                if OFF {
                    acc += m.m[i] * a.s[2 * b + h];
                }
            }
        } else {
            let i = (r * n) / 32 + b;
            acc += m.d[i] * a.d[b] * (half(0) + half(1)) as f32;
            if OFF {
                acc += m.m[i] * (a.s[2 * b] + a.s[2 * b + 1]);
            }
        }
    }
    acc
}
