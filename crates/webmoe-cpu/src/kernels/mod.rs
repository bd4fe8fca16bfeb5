//! Dot products of weight rows with activations, one function per layout and instruction set. Every
//! SIMD version computes the same integer sums as the portable [`scalar`] one and applies the same f32
//! scales (the order of the f32 additions differs, so results agree to rounding).
//!
//! [`rows`] is the entry point: `out[i] = W[r0 + i] · x` for a run of rows, dispatched once per run on
//! the layout and on what the CPU offers (AVX2+FMA detected at run time on x86-64; SIMD128 and relaxed
//! SIMD chosen at build time on wasm32).

pub mod scalar;
#[cfg(target_arch = "x86_64")]
mod avx2;
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
/// layouts), `x` the f32 values (used by [`Layout::F32`]).
pub fn rows(m: &Matrix, r0: usize, a: Token, x: &[f32], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if avx2::available() {
        // SAFETY: AVX2 and FMA are present (checked at run time).
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

/// The per-layout selection shared by the SIMD modules: calls the matching row function.
macro_rules! dispatch_layout {
    ($m:expr, $r0:expr, $a:expr, $x:expr, $out:expr, $nib:path, $bytes:ident, $f32:path) => {{
        let (m, r0, a, x, out) = ($m, $r0, $a, $x, $out);
        match m.layout {
            $crate::matrix::Layout::F32 => {
                for (i, o) in out.iter_mut().enumerate() {
                    let r = r0 + i;
                    *o = $f32(&m.f[r * m.cols..(r + 1) * m.cols], x);
                }
            }
            $crate::matrix::Layout::Nibbles => {
                for (i, o) in out.iter_mut().enumerate() {
                    *o = $nib(m, r0 + i, a);
                }
            }
            $crate::matrix::Layout::Bytes {
                block,
                signed,
                offset,
            } => {
                let f = match (signed, block == 16, offset) {
                    (true, false, false) => $bytes::<true, false, false>,
                    (true, true, false) => $bytes::<true, true, false>,
                    (false, false, true) => $bytes::<false, false, true>,
                    (false, true, true) => $bytes::<false, true, true>,
                    (true, false, true) => $bytes::<true, false, true>,
                    (true, true, true) => $bytes::<true, true, true>,
                    (false, false, false) => $bytes::<false, false, false>,
                    (false, true, false) => $bytes::<false, true, false>,
                };
                for (i, o) in out.iter_mut().enumerate() {
                    *o = f(m, r0 + i, a);
                }
            }
        }
    }};
}
pub(crate) use dispatch_layout;
