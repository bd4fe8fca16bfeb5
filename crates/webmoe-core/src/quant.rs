//! ggml tensor types, their block layouts and CPU dequantization.
//!
//! Reference: ggml `src/ggml-common.h` (block structs) and `src/ggml-quants.c` (`dequantize_row_*`);
//! summarized in `docs/models.md` §5. These CPU decoders are the oracle for the WGSL decoders.

use half::{bf16, f16};

/// A ggml storage type that webmoe knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(non_camel_case_types, missing_docs)]
pub enum GgmlType {
    F32,
    F16,
    BF16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q2_K,
    Q3_K,
    Q4_K,
    Q5_K,
    Q6_K,
    /// OCP microscaling FP4 (gpt-oss experts): decoded and run by the CPU backend, not yet by the GPU
    /// kernels (so not in [`GgmlType::ALL`]).
    MXFP4,
}

impl GgmlType {
    /// Every type both executors run (MXFP4 is read, decoded and run by the CPU backend, not yet by
    /// the GPU kernels).
    pub const ALL: [GgmlType; 13] = [
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::BF16,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q8_0,
        GgmlType::Q2_K,
        GgmlType::Q3_K,
        GgmlType::Q4_K,
        GgmlType::Q5_K,
        GgmlType::Q6_K,
    ];

    /// The type for a ggml type id, or `None` if webmoe does not support it.
    pub fn from_id(id: u32) -> Option<Self> {
        Some(match id {
            0 => Self::F32,
            1 => Self::F16,
            2 => Self::Q4_0,
            3 => Self::Q4_1,
            6 => Self::Q5_0,
            7 => Self::Q5_1,
            8 => Self::Q8_0,
            10 => Self::Q2_K,
            11 => Self::Q3_K,
            12 => Self::Q4_K,
            13 => Self::Q5_K,
            14 => Self::Q6_K,
            30 => Self::BF16,
            39 => Self::MXFP4,
            _ => return None,
        })
    }

    /// The ggml type id.
    pub fn id(self) -> u32 {
        match self {
            Self::F32 => 0,
            Self::F16 => 1,
            Self::Q4_0 => 2,
            Self::Q4_1 => 3,
            Self::Q5_0 => 6,
            Self::Q5_1 => 7,
            Self::Q8_0 => 8,
            Self::Q2_K => 10,
            Self::Q3_K => 11,
            Self::Q4_K => 12,
            Self::Q5_K => 13,
            Self::Q6_K => 14,
            Self::BF16 => 30,
            Self::MXFP4 => 39,
        }
    }

    /// Elements per block.
    pub fn block_elems(self) -> u64 {
        match self {
            Self::F32 | Self::F16 | Self::BF16 => 1,
            Self::Q4_0 | Self::Q4_1 | Self::Q5_0 | Self::Q5_1 | Self::Q8_0 | Self::MXFP4 => 32,
            _ => 256,
        }
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> u64 {
        match self {
            Self::F32 => 4,
            Self::F16 | Self::BF16 => 2,
            Self::Q4_0 => 18,
            Self::Q4_1 => 20,
            Self::Q5_0 => 22,
            Self::Q5_1 => 24,
            Self::Q8_0 => 34,
            Self::Q2_K => 84,
            Self::Q3_K => 110,
            Self::Q4_K => 144,
            Self::Q5_K => 176,
            Self::Q6_K => 210,
            Self::MXFP4 => 17,
        }
    }

    /// Bytes of a row of `n` elements (`n` must be a multiple of the block size).
    pub fn row_bytes(self, n: u64) -> u64 {
        n / self.block_elems() * self.block_bytes()
    }

    /// Name as ggml prints it.
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "F32",
            Self::F16 => "F16",
            Self::BF16 => "BF16",
            Self::Q4_0 => "Q4_0",
            Self::Q4_1 => "Q4_1",
            Self::Q5_0 => "Q5_0",
            Self::Q5_1 => "Q5_1",
            Self::Q8_0 => "Q8_0",
            Self::Q2_K => "Q2_K",
            Self::Q3_K => "Q3_K",
            Self::Q4_K => "Q4_K",
            Self::Q5_K => "Q5_K",
            Self::Q6_K => "Q6_K",
            Self::MXFP4 => "MXFP4",
        }
    }

    /// Byte offsets of the f16 scale fields inside one block (used to make valid random blocks in tests).
    pub fn f16_fields(self) -> &'static [usize] {
        match self {
            Self::Q4_0 | Self::Q5_0 | Self::Q8_0 => &[0],
            Self::Q4_1 | Self::Q5_1 => &[0, 2],
            Self::Q2_K => &[80, 82],
            Self::Q3_K => &[108],
            Self::Q4_K | Self::Q5_K => &[0, 2],
            Self::Q6_K => &[208],
            _ => &[],
        }
    }
}

/// An MXFP4 4-bit E2M1 code as its value doubled (ggml's `kvalues_mxfp4`: 0, ±1, ±2, ±3, ±4, ±6,
/// ±8, ±12); [`mxfp4_half_scale`] is halved to match.
pub fn mxfp4_value(code: u8) -> i8 {
    const VALUES: [i8; 16] = [0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12];
    VALUES[(code & 15) as usize]
}

/// Half of an MXFP4 block's E8M0 scale byte, `2^(e - 128)`, with the bits ggml's
/// `ggml_e8m0_to_fp32_half` builds (e < 2 gives the subnormals 2^-128 and 2^-127).
pub fn mxfp4_half_scale(e: u8) -> f32 {
    let bits = if e < 2 {
        0x0020_0000u32 << e
    } else {
        ((e - 1) as u32) << 23
    };
    f32::from_bits(bits)
}

fn f16_at(b: &[u8], o: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[o], b[o + 1]])).to_f32()
}

/// Dequantizes `bytes` (whole blocks of `ty`) into `out`, which must hold the element count.
///
/// # Panics
/// If `bytes` is not a whole number of blocks or `out` has the wrong length; callers check sizes first.
pub fn dequantize(ty: GgmlType, bytes: &[u8], out: &mut [f32]) {
    let be = ty.block_elems() as usize;
    let bb = ty.block_bytes() as usize;
    assert_eq!(bytes.len() % bb, 0, "partial block");
    assert_eq!(bytes.len() / bb * be, out.len(), "output length");
    for (b, y) in bytes.chunks_exact(bb).zip(out.chunks_exact_mut(be)) {
        dequantize_block(ty, b, y);
    }
}

fn dequantize_block(ty: GgmlType, b: &[u8], y: &mut [f32]) {
    match ty {
        GgmlType::F32 => y[0] = f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        GgmlType::F16 => y[0] = f16_at(b, 0),
        GgmlType::BF16 => y[0] = bf16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32(),
        GgmlType::Q4_0 => {
            let d = f16_at(b, 0);
            for j in 0..16 {
                y[j] = ((b[2 + j] & 15) as f32 - 8.0) * d;
                y[j + 16] = ((b[2 + j] >> 4) as f32 - 8.0) * d;
            }
        }
        GgmlType::MXFP4 => {
            // One scale byte, then 16 bytes: element j in the low nibble, j + 16 in the high one.
            let d = mxfp4_half_scale(b[0]);
            for j in 0..16 {
                y[j] = d * mxfp4_value(b[1 + j]) as f32;
                y[j + 16] = d * mxfp4_value(b[1 + j] >> 4) as f32;
            }
        }
        GgmlType::Q4_1 => {
            let (d, m) = (f16_at(b, 0), f16_at(b, 2));
            for j in 0..16 {
                y[j] = (b[4 + j] & 15) as f32 * d + m;
                y[j + 16] = (b[4 + j] >> 4) as f32 * d + m;
            }
        }
        GgmlType::Q5_0 => {
            let d = f16_at(b, 0);
            let h = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
            for j in 0..16 {
                let q0 = (b[6 + j] & 15) as u32 | (((h >> j) & 1) << 4);
                let q1 = (b[6 + j] >> 4) as u32 | (((h >> (j + 16)) & 1) << 4);
                y[j] = (q0 as f32 - 16.0) * d;
                y[j + 16] = (q1 as f32 - 16.0) * d;
            }
        }
        GgmlType::Q5_1 => {
            let (d, m) = (f16_at(b, 0), f16_at(b, 2));
            let h = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
            for j in 0..16 {
                let q0 = (b[8 + j] & 15) as u32 | (((h >> j) & 1) << 4);
                let q1 = (b[8 + j] >> 4) as u32 | (((h >> (j + 16)) & 1) << 4);
                y[j] = q0 as f32 * d + m;
                y[j + 16] = q1 as f32 * d + m;
            }
        }
        GgmlType::Q8_0 => {
            let d = f16_at(b, 0);
            for k in 0..32 {
                y[k] = (b[2 + k] as i8) as f32 * d;
            }
        }
        GgmlType::Q2_K => {
            let (sc, qs) = (&b[0..16], &b[16..80]);
            let (d, dmin) = (f16_at(b, 80), f16_at(b, 82));
            let mut is = 0;
            for n in 0..2 {
                let q = &qs[32 * n..];
                for jj in 0..4 {
                    let shift = 2 * jj;
                    for half in 0..2 {
                        let s = sc[is];
                        is += 1;
                        let (dl, ml) = (d * (s & 15) as f32, dmin * (s >> 4) as f32);
                        for l in 0..16 {
                            let qv = (q[l + 16 * half] >> shift) & 3;
                            y[128 * n + 32 * jj + 16 * half + l] = dl * qv as f32 - ml;
                        }
                    }
                }
            }
        }
        GgmlType::Q3_K => {
            let (hmask, qs, sb) = (&b[0..32], &b[32..96], &b[96..108]);
            let d = f16_at(b, 108);
            let scale = |i: usize| -> f32 {
                let lo = if i < 8 { sb[i] & 15 } else { sb[i - 8] >> 4 };
                let hi = (sb[8 + i % 4] >> (2 * (i / 4))) & 3;
                ((lo | (hi << 4)) as i32 - 32) as f32
            };
            for n in 0..2 {
                let q = &qs[32 * n..];
                for jj in 0..4 {
                    let shift = 2 * jj;
                    let mbit = 1u8 << (4 * n + jj);
                    for half in 0..2 {
                        let dl = d * scale(8 * n + 2 * jj + half);
                        for l in 0..16 {
                            let i = l + 16 * half;
                            let qv = ((q[i] >> shift) & 3) as i32
                                - if hmask[i] & mbit != 0 { 0 } else { 4 };
                            y[128 * n + 32 * jj + 16 * half + l] = dl * qv as f32;
                        }
                    }
                }
            }
        }
        GgmlType::Q4_K | GgmlType::Q5_K => {
            let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
            let s = &b[4..16];
            let (qh, qs) = if ty == GgmlType::Q5_K {
                (Some(&b[16..48]), &b[48..176])
            } else {
                (None, &b[16..144])
            };
            for g in 0..4 {
                let q = &qs[32 * g..];
                for half in 0..2 {
                    let (sc, mn) = scale_min_k4(2 * g + half, s);
                    let (dl, ml) = (d * sc as f32, dmin * mn as f32);
                    for l in 0..32 {
                        let mut qv = if half == 0 { q[l] & 15 } else { q[l] >> 4 } as u32;
                        if let Some(qh) = qh {
                            if qh[l] & (1 << (2 * g + half)) != 0 {
                                qv += 16;
                            }
                        }
                        y[64 * g + 32 * half + l] = dl * qv as f32 - ml;
                    }
                }
            }
        }
        GgmlType::Q6_K => {
            let (ql, qh, sc) = (&b[0..128], &b[128..192], &b[192..208]);
            let d = f16_at(b, 208);
            for n in 0..2 {
                let (l_, h_, s_) = (&ql[64 * n..], &qh[32 * n..], &sc[8 * n..]);
                for l in 0..32 {
                    let is = l / 16;
                    let q1 = ((l_[l] & 15) | ((h_[l] & 3) << 4)) as i32 - 32;
                    let q2 = ((l_[l + 32] & 15) | (((h_[l] >> 2) & 3) << 4)) as i32 - 32;
                    let q3 = ((l_[l] >> 4) | (((h_[l] >> 4) & 3) << 4)) as i32 - 32;
                    let q4 = ((l_[l + 32] >> 4) | (((h_[l] >> 6) & 3) << 4)) as i32 - 32;
                    y[128 * n + l] = d * (s_[is] as i8) as f32 * q1 as f32;
                    y[128 * n + l + 32] = d * (s_[is + 2] as i8) as f32 * q2 as f32;
                    y[128 * n + l + 64] = d * (s_[is + 4] as i8) as f32 * q3 as f32;
                    y[128 * n + l + 96] = d * (s_[is + 6] as i8) as f32 * q4 as f32;
                }
            }
        }
    }
}

/// ggml's `get_scale_min_k4`: the 6-bit scale and min of sub-block `j` (0..8) of a Q4_K/Q5_K block.
pub fn scale_min_k4(j: usize, s: &[u8]) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        (
            (s[j + 4] & 15) | ((s[j - 4] >> 6) << 4),
            (s[j + 4] >> 4) | ((s[j] >> 6) << 4),
        )
    }
}

/// Quantizes f32 values to Q8_0 (ggml's reference `quantize_row_q8_0`).
pub fn quantize_q8_0(x: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(x.len() / 32 * 34);
    for blk in x.chunks_exact(32) {
        let amax = blk.iter().fold(0f32, |a, v| a.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        out.extend_from_slice(&f16::from_f32(d).to_bits().to_le_bytes());
        out.extend(blk.iter().map(|v| (v * id).round() as i8 as u8));
    }
    out
}

/// Quantizes f32 values to Q4_0 (ggml's reference `quantize_row_q4_0`: the signed value of largest
/// magnitude maps to -8).
pub fn quantize_q4_0(x: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(x.len() / 32 * 18);
    for blk in x.chunks_exact(32) {
        let max = blk
            .iter()
            .fold(0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
        let d = max / -8.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        out.extend_from_slice(&f16::from_f32(d).to_bits().to_le_bytes());
        let q = |v: f32| ((v * id + 8.5) as i32).clamp(0, 15) as u8;
        out.extend((0..16).map(|l| q(blk[l]) | (q(blk[l + 16]) << 4)));
    }
    out
}

/// Quantizes f32 values to Q4_K: per 32-element sub-block an affine range (scale and minimum, each
/// stored in 6 bits relative to the block's f16 `d` and `dmin`), 4-bit codes. A plain min/max fit,
/// not ggml's iterative search: slightly larger error, the same layout.
pub fn quantize_q4_k(x: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(x.len() / 256 * 144);
    for blk in x.chunks_exact(256) {
        let mut scale = [0f32; 8];
        let mut min = [0f32; 8];
        for (j, sub) in blk.chunks_exact(32).enumerate() {
            let lo = sub.iter().fold(f32::INFINITY, |a, &v| a.min(v)).min(0.0);
            let hi = sub.iter().fold(f32::NEG_INFINITY, |a, &v| a.max(v));
            scale[j] = (hi - lo) / 15.0;
            min[j] = -lo;
        }
        let d = f16::from_f32(scale.iter().fold(0f32, |a, &v| a.max(v)) / 63.0);
        let dmin = f16::from_f32(min.iter().fold(0f32, |a, &v| a.max(v)) / 63.0);
        let q6 = |v: f32, unit: f32| {
            if unit > 0.0 {
                ((v / unit).round() as i32).clamp(0, 63) as u8
            } else {
                0
            }
        };
        let sc: Vec<u8> = scale.iter().map(|&v| q6(v, d.to_f32())).collect();
        let mn: Vec<u8> = min.iter().map(|&v| q6(v, dmin.to_f32())).collect();
        let mut packed = [0u8; 12];
        for j in 0..4 {
            packed[j] = sc[j] | ((sc[j + 4] >> 4) << 6);
            packed[j + 4] = mn[j] | ((mn[j + 4] >> 4) << 6);
            packed[j + 8] = (sc[j + 4] & 15) | ((mn[j + 4] & 15) << 4);
        }
        out.extend_from_slice(&d.to_bits().to_le_bytes());
        out.extend_from_slice(&dmin.to_bits().to_le_bytes());
        out.extend_from_slice(&packed);
        let code = |j: usize, v: f32| {
            let (s, m) = scale_min_k4(j, &packed);
            let step = d.to_f32() * s as f32;
            if step > 0.0 {
                (((v + dmin.to_f32() * m as f32) / step).round() as i32).clamp(0, 15) as u8
            } else {
                0
            }
        };
        for g in 0..4 {
            for l in 0..32 {
                let (a, b) = (2 * g, 2 * g + 1);
                out.push(code(a, blk[a * 32 + l]) | (code(b, blk[b * 32 + l]) << 4));
            }
        }
    }
    out
}

/// Quantizes f32 rows to `ty` (Q8_0, Q4_0 or Q4_K; F32 copies). `x.len()` must be a multiple of the
/// block size.
///
/// # Panics
/// For other types.
pub fn quantize(ty: GgmlType, x: &[f32]) -> Vec<u8> {
    match ty {
        GgmlType::Q8_0 => quantize_q8_0(x),
        GgmlType::Q4_0 => quantize_q4_0(x),
        GgmlType::Q4_K => quantize_q4_k(x),
        GgmlType::F32 => x.iter().flat_map(|v| v.to_le_bytes()).collect(),
        other => panic!("quantizing to {} is not supported", other.name()),
    }
}

/// Fills `n_blocks` blocks of `ty` with random bytes whose f16 scale fields hold small finite values,
/// so that every block decodes to finite numbers. `next` yields random u32s. Used by tests and fixtures.
pub fn random_blocks(ty: GgmlType, n_blocks: usize, mut next: impl FnMut() -> u32) -> Vec<u8> {
    let bb = ty.block_bytes() as usize;
    let mut out: Vec<u8> = (0..n_blocks * bb).map(|_| next() as u8).collect();
    for blk in out.chunks_exact_mut(bb) {
        match ty {
            GgmlType::F32 => {
                let v = (next() % 2001) as f32 / 1000.0 - 1.0;
                blk.copy_from_slice(&v.to_le_bytes());
            }
            GgmlType::F16 => {
                let v = (next() % 2001) as f32 / 1000.0 - 1.0;
                blk.copy_from_slice(&f16::from_f32(v).to_bits().to_le_bytes());
            }
            GgmlType::BF16 => {
                let v = (next() % 2001) as f32 / 1000.0 - 1.0;
                blk.copy_from_slice(&bf16::from_f32(v).to_bits().to_le_bytes());
            }
            // E8M0 scales of 2^-10..2^-1, now and then the two subnormal ones.
            GgmlType::MXFP4 => {
                blk[0] = if next().is_multiple_of(16) {
                    (next() % 2) as u8
                } else {
                    118 + (next() % 10) as u8
                };
            }
            _ => {
                for &o in ty.f16_fields() {
                    let v = ((next() % 1000) as f32 + 1.0) / 1000.0
                        * 0.05
                        * if next().is_multiple_of(4) { -1.0 } else { 1.0 };
                    blk[o..o + 2].copy_from_slice(&f16::from_f32(v).to_bits().to_le_bytes());
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Quantize, dequantize with the reference decoder, and bound the relative RMS error: each format
    /// keeps what its bits allow (8-bit ≈ 0.4%, 4-bit ≈ 7–9% on Gaussian-like data).
    #[test]
    fn quantizers_round_trip_through_the_reference_decoder() {
        let mut state = 12345u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            // Sum of uniforms: roughly Gaussian, with an offset so minima differ from -maxima.
            (0..4)
                .map(|i| ((state >> (16 * i)) & 0xffff) as f32 / 65536.0)
                .sum::<f32>()
                - 1.7
        };
        let x: Vec<f32> = (0..4096).map(|_| next()).collect();
        for (ty, bound) in [
            (GgmlType::Q8_0, 0.01),
            (GgmlType::Q4_0, 0.15),
            (GgmlType::Q4_K, 0.15),
        ] {
            let q = quantize(ty, &x);
            assert_eq!(
                q.len() as u64,
                ty.row_bytes(x.len() as u64),
                "{}",
                ty.name()
            );
            let mut y = vec![0f32; x.len()];
            dequantize(ty, &q, &mut y);
            let err: f32 = x.iter().zip(&y).map(|(a, b)| (a - b).powi(2)).sum();
            let norm: f32 = x.iter().map(|a| a * a).sum();
            let rel = (err / norm).sqrt();
            assert!(rel < bound, "{}: relative RMS error {rel}", ty.name());
            // Not trivially exact either: 4-bit formats must lose something.
            if ty != GgmlType::Q8_0 {
                assert!(rel > 0.01, "{}: {rel}", ty.name());
            }
        }
        // All-zero blocks stay zero.
        for ty in [GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_K] {
            let mut y = vec![1f32; 256];
            dequantize(ty, &quantize(ty, &[0.0; 256]), &mut y);
            assert!(y.iter().all(|&v| v == 0.0), "{}", ty.name());
        }
    }
}
