//! wasm32 block sums. With only SIMD128, weight and activation bytes are widened to i16 and multiplied
//! with `i32x4.dot_i16x8_s` (llama.cpp's wasm kernels do the same). Built with `relaxed-simd`, weights
//! that fit 7 bits (nibbles, the unsigned byte layouts) use `i32x4.relaxed_dot_i8x16_i7x16_add_s`
//! directly: exact for such operands (no i16 pair sum can saturate), and about 1.6× faster
//! (`shared/notes/cpu-backend.md`). Signed weight bytes always take the i16 path.

use super::dispatch_layout;
use crate::act::Token;
use crate::matrix::Matrix;
use core::arch::wasm32::*;

/// See [`super::rows`].
pub fn rows(m: &Matrix, r0: usize, a: Token, x: &[f32], out: &mut [f32]) {
    dispatch_layout!(m, r0, a, x, out, nibbles, signed, unsigned)
}

#[inline(always)]
fn load(b: &[u8]) -> v128 {
    assert!(b.len() >= 16);
    // SAFETY: 16 bytes are in bounds (checked above); v128_load has no alignment requirement.
    unsafe { v128_load(b.as_ptr() as *const v128) }
}

#[inline(always)]
fn load_i8(b: &[i8]) -> v128 {
    assert!(b.len() >= 16);
    // SAFETY: as in `load`.
    unsafe { v128_load(b.as_ptr() as *const v128) }
}

#[inline(always)]
fn hsum(v: v128) -> i32 {
    i32x4_extract_lane::<0>(v)
        + i32x4_extract_lane::<1>(v)
        + i32x4_extract_lane::<2>(v)
        + i32x4_extract_lane::<3>(v)
}

/// i32 lanes of `Σ w · a` over 16 bytes, `w` unsigned and below 128, `a` signed, added to `acc`.
#[inline(always)]
fn dot_u7(w: v128, a: v128, acc: v128) -> v128 {
    #[cfg(target_feature = "relaxed-simd")]
    {
        i32x4_relaxed_dot_i8x16_i7x16_add(a, w, acc)
    }
    #[cfg(not(target_feature = "relaxed-simd"))]
    {
        let lo = i32x4_dot_i16x8(u16x8_extend_low_u8x16(w), i16x8_extend_low_i8x16(a));
        let hi = i32x4_dot_i16x8(u16x8_extend_high_u8x16(w), i16x8_extend_high_i8x16(a));
        i32x4_add(acc, i32x4_add(lo, hi))
    }
}

/// i32 lanes of `Σ w · a` over 16 bytes, both signed.
#[inline(always)]
fn dot_i8(w: v128, a: v128) -> v128 {
    let lo = i32x4_dot_i16x8(i16x8_extend_low_i8x16(w), i16x8_extend_low_i8x16(a));
    let hi = i32x4_dot_i16x8(i16x8_extend_high_i8x16(w), i16x8_extend_high_i8x16(a));
    i32x4_add(lo, hi)
}

#[inline(always)]
fn nibbles(q: &[u8], a: &[i8]) -> i32 {
    let raw = load(q);
    let lo = v128_and(raw, u8x16_splat(15));
    let hi = u8x16_shr(raw, 4);
    let zero = i32x4_splat(0);
    hsum(dot_u7(hi, load_i8(&a[16..]), dot_u7(lo, load_i8(a), zero)))
}

#[inline(always)]
fn signed(q: &[u8], a: &[i8]) -> [i32; 2] {
    [
        hsum(dot_i8(load(q), load_i8(a))),
        hsum(dot_i8(load(&q[16..]), load_i8(&a[16..]))),
    ]
}

#[inline(always)]
fn unsigned(q: &[u8], a: &[i8]) -> [i32; 2] {
    let zero = i32x4_splat(0);
    [
        hsum(dot_u7(load(q), load_i8(a), zero)),
        hsum(dot_u7(load(&q[16..]), load_i8(&a[16..]), zero)),
    ]
}
