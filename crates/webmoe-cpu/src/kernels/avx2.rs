//! x86-64 kernels with AVX2 (detected at run time): `maddubs` multiplies unsigned weight bytes with
//! signed activation bytes into i16 pairs (at most 2 · 128 · 127, so never saturating) and `madd`
//! widens them to the eight i32 lanes of [`super::total`], as llama.cpp's AVX2 `vec_dot` does; signed
//! weight bytes go through `sign` (|w| times a · sign(w)). Lane sums stay in one f32x8 register.

use super::{byte_scales, dispatch_layout, nibble_offset, total};
use crate::act::Token;
use crate::matrix::Matrix;
use std::arch::x86_64::*;

/// AVX2 is present.
pub fn available() -> bool {
    is_x86_feature_detected!("avx2")
}

/// See [`super::rows`].
///
/// # Safety
/// The CPU must have AVX2 ([`available`]).
#[target_feature(enable = "avx2")]
pub unsafe fn rows(m: &Matrix, r0: usize, a: Token, x: &[f32], out: &mut [f32]) {
    dispatch_layout!(m, r0, a, x, out, nibbles, bytes)
}

/// The eight 4-byte group sums of `w` (unsigned) · `a` (signed).
#[inline(always)]
unsafe fn dot_u8_i8(w: __m256i, a: __m256i) -> __m256i {
    _mm256_madd_epi16(_mm256_maddubs_epi16(w, a), _mm256_set1_epi16(1))
}

#[inline(always)]
unsafe fn load32(p: *const u8) -> __m256i {
    _mm256_loadu_si256(p as *const __m256i)
}

#[inline(always)]
unsafe fn finish(l: __m256, off: f32) -> f32 {
    let mut lanes = [0f32; 8];
    _mm256_storeu_ps(lanes.as_mut_ptr(), l);
    total(lanes, off)
}

#[target_feature(enable = "avx2")]
unsafe fn nibbles<const OFF: bool>(m: &Matrix, r: usize, a: &Token) -> f32 {
    let nb = m.blocks();
    let q = &m.q[16 * r * nb..16 * (r + 1) * nb];
    assert!(a.q.len() >= 32 * nb && a.d.len() >= nb && a.st.len() >= nb);
    let mask = _mm_set1_epi8(15);
    let (mut l, mut off) = (_mm256_setzero_ps(), 0f32);
    for b in 0..nb {
        // SAFETY: block b's 16 weight bytes and 32 activation bytes are in bounds (slices above).
        let raw = _mm_loadu_si128(q.as_ptr().add(16 * b) as *const __m128i);
        let lo = _mm_and_si128(raw, mask);
        let hi = _mm_and_si128(_mm_srli_epi16(raw, 4), mask);
        let p = dot_u8_i8(
            _mm256_set_m128i(hi, lo),
            load32(a.q.as_ptr().add(32 * b) as *const u8),
        );
        let i = r * nb + b;
        let dd = _mm256_set1_ps(m.d[i] * a.d[b]);
        l = _mm256_add_ps(l, _mm256_mul_ps(_mm256_cvtepi32_ps(p), dd));
        off += nibble_offset::<OFF>(m, i) * a.st[b];
    }
    finish(l, off)
}

#[target_feature(enable = "avx2")]
unsafe fn bytes<const S: bool, const B16: bool, const OFF: bool>(
    m: &Matrix,
    r: usize,
    a: &Token,
) -> f32 {
    let n = m.cols;
    let q = &m.q[r * n..(r + 1) * n];
    assert!(a.q.len() >= n);
    let (mut l, mut off) = (_mm256_setzero_ps(), 0f32);
    for b in 0..n / 32 {
        // SAFETY: block b's 32 weight and 32 activation bytes are in bounds (slices above).
        let w = load32(q.as_ptr().add(32 * b));
        let x = load32(a.q.as_ptr().add(32 * b) as *const u8);
        let p = if S {
            dot_u8_i8(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w))
        } else {
            dot_u8_i8(w, x)
        };
        let (d0, d1, o) = byte_scales::<B16, OFF>(m, r, a, b);
        let dd = _mm256_set_m128(_mm_set1_ps(d1), _mm_set1_ps(d0));
        l = _mm256_add_ps(l, _mm256_mul_ps(_mm256_cvtepi32_ps(p), dd));
        off += o;
    }
    finish(l, off)
}
