//! wasm32 kernels. Each 16-byte half of a block gives four of the eight 4-byte group lanes of
//! [`super::total`]. Built with `relaxed-simd`, weights that fit 7 bits (nibbles, the unsigned byte
//! layouts) use `i32x4.relaxed_dot_i8x16_i7x16_add_s`, which sums exactly those groups (exact for such
//! operands: no i16 pair sum can saturate) and is about 1.6× faster (`shared/notes/cpu-backend.md`);
//! otherwise, and for signed weight bytes always, the bytes are widened to i16 and multiplied with
//! `i32x4.dot_i16x8_s` (as llama.cpp's wasm kernels do), then adjacent pairs are added.

use super::{byte_scales, dispatch_layout, nibble_offset, total};
use crate::act::Token;
use crate::matrix::Matrix;
use core::arch::wasm32::*;

/// See [`super::rows`].
pub fn rows(m: &Matrix, r0: usize, a: Token, x: &[f32], out: &mut [f32]) {
    dispatch_layout!(m, r0, a, x, out, nibbles, bytes)
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

/// 4-byte group sums from the 2-byte pair sums of the low (`lo`) and high (`hi`) eight bytes.
#[inline(always)]
fn groups(lo: v128, hi: v128) -> v128 {
    i32x4_add(
        i32x4_shuffle::<0, 2, 4, 6>(lo, hi),
        i32x4_shuffle::<1, 3, 5, 7>(lo, hi),
    )
}

/// The four 4-byte group sums of 16 weight bytes `w` (unsigned, below 128) · activations `a`.
#[inline(always)]
fn dot_u7(w: v128, a: v128) -> v128 {
    #[cfg(target_feature = "relaxed-simd")]
    {
        i32x4_relaxed_dot_i8x16_i7x16_add(a, w, i32x4_splat(0))
    }
    #[cfg(not(target_feature = "relaxed-simd"))]
    {
        let lo = i32x4_dot_i16x8(u16x8_extend_low_u8x16(w), i16x8_extend_low_i8x16(a));
        let hi = i32x4_dot_i16x8(u16x8_extend_high_u8x16(w), i16x8_extend_high_i8x16(a));
        groups(lo, hi)
    }
}

/// The four 4-byte group sums of 16 signed weight bytes · activations: with relaxed SIMD, as
/// `|w| · (a · sign w)` through the i7 dot product when no weight is -128 (`fits7`), else widened.
#[inline(always)]
fn dot_s8(w: v128, a: v128, fits7: bool) -> v128 {
    #[cfg(target_feature = "relaxed-simd")]
    if fits7 {
        let signed_a = v128_bitselect(i8x16_neg(a), a, i8x16_lt(w, i8x16_splat(0)));
        return dot_u7(i8x16_abs(w), signed_a);
    }
    let _ = fits7;
    dot_i8(w, a)
}

/// The four 4-byte group sums of 16 signed weight bytes · activations, widened to i16.
#[inline(always)]
fn dot_i8(w: v128, a: v128) -> v128 {
    let lo = i32x4_dot_i16x8(i16x8_extend_low_i8x16(w), i16x8_extend_low_i8x16(a));
    let hi = i32x4_dot_i16x8(i16x8_extend_high_i8x16(w), i16x8_extend_high_i8x16(a));
    groups(lo, hi)
}

#[inline(always)]
fn finish(l0: v128, l1: v128, off: f32) -> f32 {
    let lanes = [
        f32x4_extract_lane::<0>(l0),
        f32x4_extract_lane::<1>(l0),
        f32x4_extract_lane::<2>(l0),
        f32x4_extract_lane::<3>(l0),
        f32x4_extract_lane::<0>(l1),
        f32x4_extract_lane::<1>(l1),
        f32x4_extract_lane::<2>(l1),
        f32x4_extract_lane::<3>(l1),
    ];
    total(lanes, off)
}

/// `l + f32(g) · d`, lane-wise (multiply, then add: never fused).
#[inline(always)]
fn scaled_add(l: v128, g: v128, d: f32) -> v128 {
    f32x4_add(l, f32x4_mul(f32x4_convert_i32x4(g), f32x4_splat(d)))
}

fn nibbles<const OFF: bool>(m: &Matrix, r: usize, a: &Token) -> f32 {
    let nb = m.blocks();
    let (d, q) = (
        &m.d[r * nb..(r + 1) * nb],
        &m.q[16 * r * nb..16 * (r + 1) * nb],
    );
    let zero = f32x4_splat(0.0);
    let (mut l0, mut l1, mut off) = (zero, zero, 0f32);
    for b in 0..nb {
        let raw = load(&q[16 * b..]);
        let ab = &a.q[32 * b..];
        let dd = d[b] * a.d[b];
        l0 = scaled_add(l0, dot_u7(v128_and(raw, u8x16_splat(15)), load_i8(ab)), dd);
        l1 = scaled_add(l1, dot_u7(u8x16_shr(raw, 4), load_i8(&ab[16..])), dd);
        off += nibble_offset::<OFF>(m, r * nb + b) * a.st[b];
    }
    finish(l0, l1, off)
}

fn bytes<const S: bool, const B16: bool, const OFF: bool>(m: &Matrix, r: usize, a: &Token) -> f32 {
    let n = m.cols;
    let q = &m.q[r * n..(r + 1) * n];
    let fits7 = !m.has_i8_min;
    let dot = |w, x| if S { dot_s8(w, x, fits7) } else { dot_u7(w, x) };
    let zero = f32x4_splat(0.0);
    let (mut l0, mut l1, mut off) = (zero, zero, 0f32);
    for b in 0..n / 32 {
        let (qb, ab) = (&q[32 * b..], &a.q[32 * b..]);
        let (d0, d1, o) = byte_scales::<B16, OFF>(m, r, a, b);
        l0 = scaled_add(l0, dot(load(qb), load_i8(ab)), d0);
        l1 = scaled_add(l1, dot(load(&qb[16..]), load_i8(&ab[16..])), d1);
        off += o;
    }
    finish(l0, l1, off)
}
