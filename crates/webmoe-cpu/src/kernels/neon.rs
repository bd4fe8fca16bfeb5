//! aarch64 kernels with NEON (part of every aarch64 CPU, so nothing is detected). Weight and activation
//! bytes are multiplied as signed bytes into i16 (`vmull_s8`: every layout's values fit, at most
//! 128 · 128, and the unsigned layouts stay below 128), adjacent products are added into i32 pairs
//! (`vpaddlq_s16`) and pairs into the eight 4-byte group lanes of [`super::total`] (`vpaddq_s32`), as
//! the other instruction sets do; the f32 lane sums are a multiply and an add, never fused.

use super::{byte_scales, dispatch_layout, nibble_offset, total};
use crate::act::Token;
use crate::matrix::Matrix;
use core::arch::aarch64::*;

/// See [`super::rows`].
pub fn rows(m: &Matrix, r0: usize, a: Token, x: &[f32], out: &mut [f32]) {
    dispatch_layout!(m, r0, a, x, out, nibbles, bytes)
}

/// The four 4-byte group sums of 16 weight bytes `w` · 16 activation bytes `a`.
#[inline(always)]
fn groups(w: int8x16_t, a: int8x16_t) -> int32x4_t {
    // SAFETY: NEON is part of the aarch64 baseline; these operate on registers only.
    unsafe {
        let lo = vpaddlq_s16(vmull_s8(vget_low_s8(w), vget_low_s8(a)));
        let hi = vpaddlq_s16(vmull_high_s8(w, a));
        vpaddq_s32(lo, hi)
    }
}

#[inline(always)]
fn load_u8(b: &[u8]) -> uint8x16_t {
    assert!(b.len() >= 16);
    // SAFETY: 16 bytes are in bounds (checked above); vld1q has no alignment requirement.
    unsafe { vld1q_u8(b.as_ptr()) }
}

#[inline(always)]
fn load_i8(b: &[i8]) -> int8x16_t {
    assert!(b.len() >= 16);
    // SAFETY: as in `load_u8`.
    unsafe { vld1q_s8(b.as_ptr()) }
}

/// Adds block lanes `g0` (lanes 0–3) and `g1` (4–7) times their scales to the running sums.
#[inline(always)]
fn accumulate(l: &mut [float32x4_t; 2], g0: int32x4_t, g1: int32x4_t, d0: f32, d1: f32) {
    // SAFETY: register operations only.
    unsafe {
        l[0] = vaddq_f32(l[0], vmulq_f32(vcvtq_f32_s32(g0), vdupq_n_f32(d0)));
        l[1] = vaddq_f32(l[1], vmulq_f32(vcvtq_f32_s32(g1), vdupq_n_f32(d1)));
    }
}

#[inline(always)]
fn finish(l: [float32x4_t; 2], off: f32) -> f32 {
    let mut lanes = [0f32; 8];
    // SAFETY: `lanes` holds 8 f32s.
    unsafe {
        vst1q_f32(lanes.as_mut_ptr(), l[0]);
        vst1q_f32(lanes.as_mut_ptr().add(4), l[1]);
    }
    total(lanes, off)
}

fn zero() -> [float32x4_t; 2] {
    // SAFETY: register operation only.
    unsafe { [vdupq_n_f32(0.0); 2] }
}

fn nibbles<const OFF: bool>(m: &Matrix, r: usize, a: &Token) -> f32 {
    let nb = m.blocks();
    let q = &m.q[16 * r * nb..16 * (r + 1) * nb];
    let (mut l, mut off) = (zero(), 0f32);
    for b in 0..nb {
        let raw = load_u8(&q[16 * b..]);
        let xa = &a.q[32 * b..32 * b + 32];
        // SAFETY: register operations only.
        let (lo, hi) = unsafe {
            (
                vreinterpretq_s8_u8(vandq_u8(raw, vdupq_n_u8(15))),
                vreinterpretq_s8_u8(vshrq_n_u8::<4>(raw)),
            )
        };
        let g0 = groups(lo, load_i8(&xa[..16]));
        let g1 = groups(hi, load_i8(&xa[16..]));
        let i = r * nb + b;
        let dd = m.d[i] * a.d[b];
        accumulate(&mut l, g0, g1, dd, dd);
        off += nibble_offset::<OFF>(m, i) * a.st[b];
    }
    finish(l, off)
}

fn bytes<const S: bool, const B16: bool, const OFF: bool>(m: &Matrix, r: usize, a: &Token) -> f32 {
    let n = m.cols;
    let q = &m.q[r * n..(r + 1) * n];
    let (mut l, mut off) = (zero(), 0f32);
    for b in 0..n / 32 {
        let xa = &a.q[32 * b..32 * b + 32];
        // Signed layouts store i8 bits; unsigned ones stay below 128, so both read as i8.
        // SAFETY: register operation only.
        let (w0, w1) = unsafe {
            (
                vreinterpretq_s8_u8(load_u8(&q[32 * b..])),
                vreinterpretq_s8_u8(load_u8(&q[32 * b + 16..])),
            )
        };
        let g0 = groups(w0, load_i8(&xa[..16]));
        let g1 = groups(w1, load_i8(&xa[16..]));
        let (d0, d1, o) = byte_scales::<B16, OFF>(m, r, a, b);
        accumulate(&mut l, g0, g1, d0, d1);
        off += o;
    }
    finish(l, off)
}
