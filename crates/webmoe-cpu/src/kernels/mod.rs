//! Dot products of weight rows with activations. Each instruction set only computes the exact integer
//! sum of a block (`Σ q_w · q_a` over 32 values, or over each 16-value half); the f32 part (block scales,
//! offsets, the running sum) is one shared function, [`nibbles_row`] / [`bytes_row`], inlined into
//! every version. So AVX2, SIMD128, relaxed SIMD and the portable [`scalar`] code give bit-identical
//! results, and the browser's CPU path produces exactly the native one's tokens.
//!
//! [`rows`] is the entry point: `out[i] = W[r0 + i] · x` for a run of rows, dispatched once per run on
//! the layout and on what the CPU offers (AVX2 detected at run time on x86-64; SIMD128 and relaxed
//! SIMD chosen at build time on wasm32).

#[cfg(target_arch = "x86_64")]
mod avx2;
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
    #[allow(unreachable_code)]
    scalar::rows(m, r0, a, x, out);
}

/// Row `r` of a nibble matrix · `a`, with `sum(16 weight bytes, 32 activations)` the block's exact
/// integer dot product.
#[inline(always)]
pub(crate) fn nibbles_row(
    m: &Matrix,
    r: usize,
    a: Token,
    sum: impl Fn(&[u8], &[i8]) -> i32,
) -> f32 {
    let nb = m.blocks();
    let (d, mm, q) = (
        &m.d[r * nb..(r + 1) * nb],
        &m.m[r * nb..(r + 1) * nb],
        &m.q[16 * r * nb..16 * (r + 1) * nb],
    );
    let mut acc = 0f32;
    for b in 0..nb {
        let s = sum(&q[16 * b..16 * b + 16], &a.q[32 * b..32 * b + 32]);
        acc += d[b] * a.d[b] * s as f32 + mm[b] * (a.s[2 * b] + a.s[2 * b + 1]);
    }
    acc
}

/// Row `r` of a byte matrix · `a` (`B16`: a scale per 16 values, `OFF`: blocks have an offset), with
/// `sum(32 weight bytes, 32 activations)` the exact integer dot products of the two 16-value halves.
#[inline(always)]
pub(crate) fn bytes_row<const B16: bool, const OFF: bool>(
    m: &Matrix,
    r: usize,
    a: Token,
    sum: impl Fn(&[u8], &[i8]) -> [i32; 2],
) -> f32 {
    let n = m.cols;
    let q = &m.q[r * n..(r + 1) * n];
    let mut acc = 0f32;
    for b in 0..n / 32 {
        let [s0, s1] = sum(&q[32 * b..32 * b + 32], &a.q[32 * b..32 * b + 32]);
        if B16 {
            let i = (r * n) / 16 + 2 * b;
            acc += m.d[i] * a.d[b] * s0 as f32;
            acc += m.d[i + 1] * a.d[b] * s1 as f32;
            if OFF {
                acc += m.m[i] * a.s[2 * b] + m.m[i + 1] * a.s[2 * b + 1];
            }
        } else {
            let i = (r * n) / 32 + b;
            acc += m.d[i] * a.d[b] * (s0 + s1) as f32;
            if OFF {
                acc += m.m[i] * (a.s[2 * b] + a.s[2 * b + 1]);
            }
        }
    }
    acc
}

/// The per-layout selection shared by every instruction set: `$nib` sums a nibble block, `$s8` and
/// `$u8` the halves of a signed or unsigned byte block.
macro_rules! dispatch_layout {
    ($m:expr, $r0:expr, $a:expr, $x:expr, $out:expr, $nib:expr, $s8:expr, $u8:expr) => {{
        use $crate::kernels::{bytes_row, nibbles_row};
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
            Layout::Nibbles => each(out, &|r| nibbles_row(m, r, a, $nib)),
            Layout::Bytes {
                block,
                signed,
                offset,
            } => match (signed, block == 16, offset) {
                (true, false, false) => each(out, &|r| bytes_row::<false, false>(m, r, a, $s8)),
                (true, true, false) => each(out, &|r| bytes_row::<true, false>(m, r, a, $s8)),
                (true, false, true) => each(out, &|r| bytes_row::<false, true>(m, r, a, $s8)),
                (true, true, true) => each(out, &|r| bytes_row::<true, true>(m, r, a, $s8)),
                (false, false, false) => each(out, &|r| bytes_row::<false, false>(m, r, a, $u8)),
                (false, true, false) => each(out, &|r| bytes_row::<true, false>(m, r, a, $u8)),
                (false, false, true) => each(out, &|r| bytes_row::<false, true>(m, r, a, $u8)),
                (false, true, true) => each(out, &|r| bytes_row::<true, true>(m, r, a, $u8)),
            },
        }
    }};
}
pub(crate) use dispatch_layout;
