//! x86-64 kernels with AVX2 and FMA (detected at run time): `maddubs` multiplies unsigned weight bytes
//! with signed activation bytes into i16 pairs (at most 2 · 127 · 127, so never saturating), `madd`
//! widens them to i32 and FMA applies the block scales, as llama.cpp's AVX2 `vec_dot` does. Signed weight
//! bytes go through `sign` (|w| times a · sign(w)).

use super::dispatch_layout;
use crate::act::Token;
use crate::matrix::Matrix;
use std::arch::x86_64::*;

/// AVX2 and FMA are present.
pub fn available() -> bool {
    is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
}

/// See [`super::rows`].
///
/// # Safety
/// The CPU must have AVX2 and FMA ([`available`]).
#[target_feature(enable = "avx2,fma")]
pub unsafe fn rows(m: &Matrix, r0: usize, a: Token, x: &[f32], out: &mut [f32]) {
    dispatch_layout!(m, r0, a, x, out, nibbles, bytes, dot_f32)
}

#[target_feature(enable = "avx2,fma")]
unsafe fn dot_f32(w: &[f32], x: &[f32]) -> f32 {
    super::scalar::dot_f32(w, x)
}

#[target_feature(enable = "avx2,fma")]
unsafe fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

/// i32 sums of 4-byte groups of `w` (unsigned) · `a` (signed), as f32.
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_u8_i8(w: __m256i, a: __m256i) -> __m256 {
    let p16 = _mm256_maddubs_epi16(w, a);
    _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, _mm256_set1_epi16(1)))
}

#[target_feature(enable = "avx2,fma")]
unsafe fn nibbles(m: &Matrix, r: usize, a: Token) -> f32 {
    let nb = m.blocks();
    let mask = _mm_set1_epi8(15);
    let mut acc = _mm256_setzero_ps();
    let mut off = 0f32;
    let (q, d, mm) = (m.q.as_ptr(), &m.d[r * nb..(r + 1) * nb], &m.m[r * nb..(r + 1) * nb]);
    for b in 0..nb {
        let i = r * nb + b;
        let raw = _mm_loadu_si128(q.add(16 * i) as *const __m128i);
        let lo = _mm_and_si128(raw, mask);
        let hi = _mm_and_si128(_mm_srli_epi16(raw, 4), mask);
        let w = _mm256_set_m128i(hi, lo);
        let qa = _mm256_loadu_si256(a.q.as_ptr().add(32 * b) as *const __m256i);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d[b] * a.d[b]), dot_u8_i8(w, qa), acc);
        off += mm[b] * (a.s[2 * b] + a.s[2 * b + 1]);
    }
    hsum(acc) + off
}

#[target_feature(enable = "avx2,fma")]
unsafe fn bytes<const S: bool, const B16: bool, const OFF: bool>(
    m: &Matrix,
    r: usize,
    a: Token,
) -> f32 {
    let n = m.cols;
    let q = m.q.as_ptr().add(r * n);
    let mut acc = _mm256_setzero_ps();
    let mut off = 0f32;
    for b in 0..n / 32 {
        let w = _mm256_loadu_si256(q.add(32 * b) as *const __m256i);
        let qa = _mm256_loadu_si256(a.q.as_ptr().add(32 * b) as *const __m256i);
        let p = if S {
            dot_u8_i8(_mm256_sign_epi8(w, w), _mm256_sign_epi8(qa, w))
        } else {
            dot_u8_i8(w, qa)
        };
        let scale = if B16 {
            let i = (r * n) / 16 + 2 * b;
            if OFF {
                off += m.m[i] * a.s[2 * b] + m.m[i + 1] * a.s[2 * b + 1];
            }
            _mm256_set_m128(
                _mm_set1_ps(m.d[i + 1] * a.d[b]),
                _mm_set1_ps(m.d[i] * a.d[b]),
            )
        } else {
            let i = (r * n) / 32 + b;
            if OFF {
                off += m.m[i] * (a.s[2 * b] + a.s[2 * b + 1]);
            }
            _mm256_set1_ps(m.d[i] * a.d[b])
        };
        acc = _mm256_fmadd_ps(scale, p, acc);
    }
    hsum(acc) + off
}
