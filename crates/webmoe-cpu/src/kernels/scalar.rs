//! Portable kernels: the canonical arithmetic of [`super::total`] written out with plain integers. They
//! run where no SIMD version exists and are the oracle the SIMD versions are tested against.

use super::{byte_scales, dispatch_layout, nibble_offset, total};
use crate::act::Token;
use crate::matrix::Matrix;

/// See [`super::rows`].
pub fn rows(m: &Matrix, r0: usize, a: Token, x: &[f32], out: &mut [f32]) {
    dispatch_layout!(m, r0, a, x, out, nibbles, bytes)
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

/// Lane `l` of a block: `Σ value(j) · a[j]` over `j in 4l..4l + 4`.
#[inline(always)]
fn lane(value: impl Fn(usize) -> i32, a: &[i8], l: usize) -> i32 {
    (4 * l..4 * l + 4).map(|j| value(j) * a[j] as i32).sum()
}

/// Row `r` of a nibble matrix · `a` (`OFF`: offsets stored).
pub fn nibbles<const OFF: bool>(m: &Matrix, r: usize, a: &Token) -> f32 {
    let nb = m.blocks();
    let (d, q) = (
        &m.d[r * nb..(r + 1) * nb],
        &m.q[16 * r * nb..16 * (r + 1) * nb],
    );
    let (mut l, mut off) = ([0f32; 8], 0f32);
    for b in 0..nb {
        let qb = &q[16 * b..16 * b + 16];
        let value = |j: usize| (if j < 16 { qb[j] & 15 } else { qb[j - 16] >> 4 }) as i32;
        let dd = d[b] * a.d[b];
        for (i, li) in l.iter_mut().enumerate() {
            *li += lane(value, &a.q[32 * b..32 * b + 32], i) as f32 * dd;
        }
        off += nibble_offset::<OFF>(m, r * nb + b) * a.st[b];
    }
    total(l, off)
}

/// Row `r` of a byte matrix · `a` (`S`: signed values, `B16`: 16-value scales, `OFF`: offsets).
pub fn bytes<const S: bool, const B16: bool, const OFF: bool>(
    m: &Matrix,
    r: usize,
    a: &Token,
) -> f32 {
    let n = m.cols;
    let q = &m.q[r * n..(r + 1) * n];
    let (mut l, mut off) = ([0f32; 8], 0f32);
    for b in 0..n / 32 {
        let qb = &q[32 * b..32 * b + 32];
        let value = |j: usize| if S { qb[j] as i8 as i32 } else { qb[j] as i32 };
        let (d0, d1, o) = byte_scales::<B16, OFF>(m, r, a, b);
        for (i, li) in l.iter_mut().enumerate() {
            *li += lane(value, &a.q[32 * b..32 * b + 32], i) as f32 * if i < 4 { d0 } else { d1 };
        }
        off += o;
    }
    total(l, off)
}
