//! Dot products of weight rows with activations. Every instruction set follows one canonical order of
//! operations ([`total`]: integer sums in eight lanes per block, f32 lane sums, offsets apart), so
//! AVX2, SIMD128, relaxed SIMD and the portable [`scalar`] code give bit-identical results, and the
//! browser's CPU path produces exactly the native one's tokens.
//!
//! [`rows`] is the entry point: `out[i] = W[r0 + i] · x` for a run of rows, dispatched once per run on
//! the layout and on what the CPU offers (AVX2 detected at run time on x86-64; NEON on aarch64; SIMD128
//! and relaxed SIMD chosen at build time on wasm32).

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "aarch64")]
mod neon;
pub mod scalar;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod simd128;

use crate::act::Token;
use crate::matrix::Matrix;

/// The instruction set the kernels use on this machine.
pub fn isa() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    if avx2::available() {
        return "avx2";
    }
    #[cfg(target_arch = "aarch64")]
    return "neon";
    #[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
    return "wasm-relaxed-simd";
    #[cfg(all(
        target_arch = "wasm32",
        target_feature = "simd128",
        not(target_feature = "relaxed-simd")
    ))]
    return "wasm-simd128";
    #[allow(unreachable_code)]
    "scalar"
}

/// `out[i] = row (r0 + i) of m · x` for `i in 0..out.len()`. `a` is `x` quantized (used by quantized
/// layouts), `x` the f32 values (used by [`crate::matrix::Layout::F32`]).
pub fn rows(m: &Matrix, r0: usize, a: Token, x: &[f32], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if avx2::available() {
        // SAFETY: AVX2 is present (checked at run time).
        unsafe { avx2::rows(m, r0, a, x, out) };
        return;
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    {
        simd128::rows(m, r0, a, x, out);
        return;
    }
    #[cfg(target_arch = "aarch64")]
    {
        neon::rows(m, r0, a, x, out);
        return;
    }
    #[allow(unreachable_code)]
    scalar::rows(m, r0, a, x, out);
}

/// The canonical arithmetic every instruction set follows, so that all give the same bits:
/// - a 32-value block's integer products are summed in 8 lanes, lane `l` holding values `4l..4l + 4`
///   (exact: at most 4 · 128 · 127);
/// - each lane is converted to f32 and multiplied by the block's scale `d_w · d_a` (for 16-value
///   scales, lanes 0–3 by the first half's, 4–7 by the second's), then added to the lane's running sum:
///   a multiply and an add, never fused;
/// - the offsets (`m · d_a Σq_a`) are summed separately in block order;
/// - the row's result is `((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7)) + offsets`.
#[inline(always)]
pub(crate) fn total(l: [f32; 8], off: f32) -> f32 {
    (((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]))) + off
}

/// The offset of block `i` of a nibble matrix (`OFF`: stored; else Q4_0's `-8 · d`, exact in f32).
#[inline(always)]
pub(crate) fn nibble_offset<const OFF: bool>(m: &Matrix, i: usize) -> f32 {
    if OFF {
        m.m[i]
    } else {
        -8.0 * m.d[i]
    }
}

/// The scales of lanes 0–3 and 4–7 and the offset term of block `b` of row `r` of a byte matrix.
#[inline(always)]
pub(crate) fn byte_scales<const B16: bool, const OFF: bool>(
    m: &Matrix,
    r: usize,
    a: &Token,
    b: usize,
) -> (f32, f32, f32) {
    let n = m.cols;
    if B16 {
        let i = (r * n) / 16 + 2 * b;
        let off = if OFF {
            m.m[i] * a.s[2 * b] + m.m[i + 1] * a.s[2 * b + 1]
        } else {
            0.0
        };
        (m.d[i] * a.d[b], m.d[i + 1] * a.d[b], off)
    } else {
        let i = (r * n) / 32 + b;
        let dd = m.d[i] * a.d[b];
        (dd, dd, if OFF { m.m[i] * a.st[b] } else { 0.0 })
    }
}

/// The per-layout selection shared by every instruction set: `$nib` is its nibble row function,
/// `$bytes` its byte row function (generic over signedness, 16-value scales and offsets).
macro_rules! dispatch_layout {
    ($m:expr, $r0:expr, $a:expr, $x:expr, $out:expr, $nib:ident, $bytes:ident) => {{
        use $crate::matrix::Layout;
        let (m, r0, a, x, out) = ($m, $r0, $a, $x, $out);
        let each = |out: &mut [f32], f: &dyn Fn(usize) -> f32| {
            for (i, o) in out.iter_mut().enumerate() {
                *o = f(r0 + i);
            }
        };
        match m.layout {
            Layout::F32 => each(out, &|r| {
                $crate::kernels::scalar::dot_f32(&m.f[r * m.cols..(r + 1) * m.cols], x)
            }),
            Layout::Nibbles { offset: true } => each(out, &|r| $nib::<true>(m, r, &a)),
            Layout::Nibbles { offset: false } => each(out, &|r| $nib::<false>(m, r, &a)),
            Layout::Bytes {
                block,
                signed,
                offset,
            } => match (signed, block == 16, offset) {
                (true, false, false) => each(out, &|r| $bytes::<true, false, false>(m, r, &a)),
                (true, true, false) => each(out, &|r| $bytes::<true, true, false>(m, r, &a)),
                (true, false, true) => each(out, &|r| $bytes::<true, false, true>(m, r, &a)),
                (true, true, true) => each(out, &|r| $bytes::<true, true, true>(m, r, &a)),
                (false, false, false) => each(out, &|r| $bytes::<false, false, false>(m, r, &a)),
                (false, true, false) => each(out, &|r| $bytes::<false, true, false>(m, r, &a)),
                (false, false, true) => each(out, &|r| $bytes::<false, false, true>(m, r, &a)),
                (false, true, true) => each(out, &|r| $bytes::<false, true, true>(m, r, &a)),
            },
        }
    }};
}
pub(crate) use dispatch_layout;
