//! wasm32 kernels. With only SIMD128, weight and activation bytes are widened to i16 and multiplied with
//! `i32x4.dot_i16x8_s` (llama.cpp's wasm kernels do the same). Built with `relaxed-simd`, weights that
//! fit 7 bits (nibbles, the unsigned byte layouts) use `i32x4.relaxed_dot_i8x16_i7x16_add_s` directly:
//! deterministic for such operands, and about 1.6× faster (`shared/notes/cpu-backend.md`). Signed
//! weight bytes always take the i16 path.

use super::dispatch_layout;
use crate::act::Token;
use crate::matrix::Matrix;
use core::arch::wasm32::*;

/// See [`super::rows`].
pub fn rows(m: &Matrix, r0: usize, a: Token, x: &[f32], out: &mut [f32]) {
    dispatch_layout!(m, r0, a, x, out, nibbles, bytes, dot_f32)
}

fn dot_f32(w: &[f32], x: &[f32]) -> f32 {
    let n = w.len() / 4 * 4;
    let mut acc = f32x4_splat(0.0);
    // SAFETY: every load reads 4 floats inside `w[..n]` and `x[..n]`.
    unsafe {
        let (pw, px) = (w.as_ptr(), x.as_ptr());
        let mut i = 0;
        while i < n {
            let a = v128_load(pw.add(i) as *const v128);
            let b = v128_load(px.add(i) as *const v128);
            acc = f32x4_add(acc, f32x4_mul(a, b));
            i += 4;
        }
    }
    let tail: f32 = w[n..].iter().zip(&x[n..]).map(|(a, b)| a * b).sum();
    hsum(acc) + tail
}

fn hsum(v: v128) -> f32 {
    f32x4_extract_lane::<0>(v)
        + f32x4_extract_lane::<1>(v)
        + f32x4_extract_lane::<2>(v)
        + f32x4_extract_lane::<3>(v)
}

/// i32 lanes of `Σ w · a` over 16 bytes, `w` unsigned and below 128, `a` signed.
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
fn dot_i8(w: v128, a: v128, acc: v128) -> v128 {
    let lo = i32x4_dot_i16x8(i16x8_extend_low_i8x16(w), i16x8_extend_low_i8x16(a));
    let hi = i32x4_dot_i16x8(i16x8_extend_high_i8x16(w), i16x8_extend_high_i8x16(a));
    i32x4_add(acc, i32x4_add(lo, hi))
}

fn nibbles(m: &Matrix, r: usize, a: Token) -> f32 {
    let nb = m.blocks();
    let mask = u8x16_splat(15);
    let zero = i32x4_splat(0);
    let mut acc = f32x4_splat(0.0);
    let mut off = 0f32;
    let (d, mm) = (&m.d[r * nb..(r + 1) * nb], &m.m[r * nb..(r + 1) * nb]);
    let q = &m.q[16 * r * nb..16 * (r + 1) * nb];
    for b in 0..nb {
        // SAFETY: 16 weight bytes of block b and 32 activation bytes of block b are in bounds.
        let (raw, a0, a1) = unsafe {
            (
                v128_load(q.as_ptr().add(16 * b) as *const v128),
                v128_load(a.q.as_ptr().add(32 * b) as *const v128),
                v128_load(a.q.as_ptr().add(32 * b + 16) as *const v128),
            )
        };
        let lo = v128_and(raw, mask);
        let hi = u8x16_shr(raw, 4);
        let s = dot_u7(hi, a1, dot_u7(lo, a0, zero));
        acc = f32x4_add(acc, f32x4_mul(f32x4_convert_i32x4(s), f32x4_splat(d[b] * a.d[b])));
        off += mm[b] * (a.s[2 * b] + a.s[2 * b + 1]);
    }
    hsum(acc) + off
}

fn bytes<const S: bool, const B16: bool, const OFF: bool>(m: &Matrix, r: usize, a: Token) -> f32 {
    let n = m.cols;
    let q = &m.q[r * n..(r + 1) * n];
    let zero = i32x4_splat(0);
    let dot = |w, x, acc| if S { dot_i8(w, x, acc) } else { dot_u7(w, x, acc) };
    let mut acc = f32x4_splat(0.0);
    let mut off = 0f32;
    for b in 0..n / 32 {
        // SAFETY: 32 weight and 32 activation bytes of block b are in bounds.
        let (w0, w1, a0, a1) = unsafe {
            (
                v128_load(q.as_ptr().add(32 * b) as *const v128),
                v128_load(q.as_ptr().add(32 * b + 16) as *const v128),
                v128_load(a.q.as_ptr().add(32 * b) as *const v128),
                v128_load(a.q.as_ptr().add(32 * b + 16) as *const v128),
            )
        };
        if B16 {
            let i = (r * n) / 16 + 2 * b;
            let s0 = f32x4_convert_i32x4(dot(w0, a0, zero));
            let s1 = f32x4_convert_i32x4(dot(w1, a1, zero));
            acc = f32x4_add(acc, f32x4_mul(s0, f32x4_splat(m.d[i] * a.d[b])));
            acc = f32x4_add(acc, f32x4_mul(s1, f32x4_splat(m.d[i + 1] * a.d[b])));
            if OFF {
                off += m.m[i] * a.s[2 * b] + m.m[i + 1] * a.s[2 * b + 1];
            }
        } else {
            let i = (r * n) / 32 + b;
            let s = f32x4_convert_i32x4(dot(w1, a1, dot(w0, a0, zero)));
            acc = f32x4_add(acc, f32x4_mul(s, f32x4_splat(m.d[i] * a.d[b])));
            if OFF {
                off += m.m[i] * (a.s[2 * b] + a.s[2 * b + 1]);
            }
        }
    }
    hsum(acc) + off
}
