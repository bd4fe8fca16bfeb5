//! x86-64 block sums with AVX2 (detected at run time): `maddubs` multiplies unsigned weight bytes with
//! signed activation bytes into i16 pairs (at most 2 · 128 · 127, so never saturating) and `madd`
//! widens them to i32, as llama.cpp's AVX2 `vec_dot` does. Signed weight bytes go through `sign`
//! (|w| times a · sign(w)).

use super::dispatch_layout;
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
    dispatch_layout!(
        m,
        r0,
        a,
        x,
        out,
        |q, a| nibbles(q, a),
        |q, a| signed(q, a),
        |q, a| unsigned(q, a)
    )
}

/// i32 sums of each 4-byte group of `w` (unsigned) · `a` (signed).
#[inline(always)]
unsafe fn dot_u8_i8(w: __m256i, a: __m256i) -> __m256i {
    _mm256_madd_epi16(_mm256_maddubs_epi16(w, a), _mm256_set1_epi16(1))
}

#[inline(always)]
unsafe fn hsum128(v: __m128i) -> i32 {
    let v = _mm_add_epi32(v, _mm_unpackhi_epi64(v, v));
    let v = _mm_add_epi32(v, _mm_shuffle_epi32(v, 1));
    _mm_cvtsi128_si32(v)
}

/// The two 16-value half sums of an i32x8 of 4-byte group sums.
#[inline(always)]
unsafe fn halves(p: __m256i) -> [i32; 2] {
    [
        hsum128(_mm256_castsi256_si128(p)),
        hsum128(_mm256_extracti128_si256(p, 1)),
    ]
}

#[inline(always)]
unsafe fn load32(a: &[i8]) -> __m256i {
    debug_assert!(a.len() >= 32);
    _mm256_loadu_si256(a.as_ptr() as *const __m256i)
}

#[inline(always)]
unsafe fn nibbles(q: &[u8], a: &[i8]) -> i32 {
    debug_assert!(q.len() >= 16);
    let mask = _mm_set1_epi8(15);
    let raw = _mm_loadu_si128(q.as_ptr() as *const __m128i);
    let lo = _mm_and_si128(raw, mask);
    let hi = _mm_and_si128(_mm_srli_epi16(raw, 4), mask);
    let [s0, s1] = halves(dot_u8_i8(_mm256_set_m128i(hi, lo), load32(a)));
    s0 + s1
}

#[inline(always)]
unsafe fn signed(q: &[u8], a: &[i8]) -> [i32; 2] {
    let w = _mm256_loadu_si256(q.as_ptr() as *const __m256i);
    let x = load32(a);
    halves(dot_u8_i8(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w)))
}

#[inline(always)]
unsafe fn unsigned(q: &[u8], a: &[i8]) -> [i32; 2] {
    let w = _mm256_loadu_si256(q.as_ptr() as *const __m256i);
    halves(dot_u8_i8(w, load32(a)))
}
