//! Portable block sums: plain integer loops. They run where no SIMD version exists and are the oracle
//! the SIMD versions are tested against.

use super::dispatch_layout;
use crate::act::Token;
use crate::matrix::Matrix;

/// See [`super::rows`].
pub fn rows(m: &Matrix, r0: usize, a: Token, x: &[f32], out: &mut [f32]) {
    dispatch_layout!(m, r0, a, x, out, nibbles, signed, unsigned)
}

/// `w · x` in f32 with eight partial sums in a fixed order (every instruction set runs this code, so
/// the result is the same everywhere; the compiler vectorizes the eight lanes).
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
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

/// `Σ` of 16 nibble bytes (value `j` low, `j + 16` high) times 32 activations.
#[inline(always)]
pub fn nibbles(q: &[u8], a: &[i8]) -> i32 {
    (0..16)
        .map(|j| (q[j] & 15) as i32 * a[j] as i32 + (q[j] >> 4) as i32 * a[j + 16] as i32)
        .sum()
}

fn halves(q: &[u8], a: &[i8], val: impl Fn(u8) -> i32) -> [i32; 2] {
    let half = |h: usize| (16 * h..16 * h + 16).map(|j| val(q[j]) * a[j] as i32).sum();
    [half(0), half(1)]
}

/// Half sums of 32 signed weight bytes times 32 activations.
#[inline(always)]
pub fn signed(q: &[u8], a: &[i8]) -> [i32; 2] {
    halves(q, a, |v| v as i8 as i32)
}

/// Half sums of 32 unsigned weight bytes times 32 activations.
#[inline(always)]
pub fn unsigned(q: &[u8], a: &[i8]) -> [i32; 2] {
    halves(q, a, |v| v as i32)
}
