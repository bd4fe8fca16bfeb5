//! Weight matrices in the CPU kernels' layouts, repacked row by row from GGUF blocks as they stream in.
//!
//! Every quantized ggml type is, per sub-block of 16 or 32 elements, `value = d · q + m` with integer
//! `q` (ggml `dequantize_row_*`; `docs/models.md` §5). The repack extracts `q` exactly and stores `d` and
//! `m` as f32 (wasm has no f16 conversion instruction, so the inner loops convert nothing):
//! - [`Layout::Nibbles`]: Q4_0 (`m = -8d`, computed, not stored), Q4_1, Q4_K (`d·sc`, `-dmin·mn`): 16
//!   bytes per 32 values, byte `j` holding values `j` (low nibble) and `j + 16` (high), as ggml's Q4_0;
//! - [`Layout::Bytes`]: one byte per value, signed (Q8_0, Q5_0 as `q - 16`, Q6_K as `q - 32`, Q3_K,
//!   MXFP4 as its doubled E2M1 value with half the E8M0 scale) or
//!   unsigned with an offset (Q5_1, Q5_K, Q2_K), scales per 32 or per 16 values;
//! - [`Layout::F32`]: F32, F16 and BF16 as f32, multiplied with unquantized activations.

use half::{bf16, f16};
use webmoe_core::quant::{mxfp4_half_scale, mxfp4_value, scale_min_k4, GgmlType};

/// How a matrix is stored for the kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// 4-bit values, blocks of 32, f32 scale per block and an f32 offset when `offset` (else the
    /// offset is `-8 · scale`, Q4_0's, computed exactly where it is used).
    Nibbles {
        /// Offsets are stored.
        offset: bool,
    },
    /// Byte values, blocks of `block` (16 or 32), f32 scale per block, f32 offset when `offset`.
    Bytes {
        /// Values per scale: 16 or 32.
        block: usize,
        /// Values are `i8` (else `u8`).
        signed: bool,
        /// An offset `m` per block.
        offset: bool,
    },
    /// Plain f32.
    F32,
}

impl Layout {
    /// The kernel layout of a ggml type.
    pub fn of(ty: GgmlType) -> Self {
        use GgmlType::*;
        let bytes = |block, signed, offset| Layout::Bytes {
            block,
            signed,
            offset,
        };
        match ty {
            F32 | F16 | BF16 => Layout::F32,
            Q4_0 => Layout::Nibbles { offset: false },
            Q4_1 | Q4_K => Layout::Nibbles { offset: true },
            Q8_0 | Q5_0 | MXFP4 => bytes(32, true, false),
            Q5_1 | Q5_K => bytes(32, false, true),
            Q6_K | Q3_K => bytes(16, true, false),
            Q2_K => bytes(16, false, true),
        }
    }

    /// Bytes a `rows × cols` matrix takes in this layout.
    pub fn bytes(self, rows: usize, cols: usize) -> u64 {
        let n = (rows * cols) as u64;
        match self {
            Layout::F32 => n * 4,
            Layout::Nibbles { offset } => n / 2 + n / 32 * if offset { 8 } else { 4 },
            Layout::Bytes { block, offset, .. } => {
                n + n / block as u64 * if offset { 8 } else { 4 }
            }
        }
    }
}

/// A weight matrix of `rows` rows of `cols` values in a kernel layout.
#[derive(Debug, Clone)]
pub struct Matrix {
    /// Rows.
    pub rows: usize,
    /// Values per row (a multiple of 32 for quantized layouts).
    pub cols: usize,
    /// The layout.
    pub layout: Layout,
    /// Scale per block (quantized layouts), row-major.
    pub d: Vec<f32>,
    /// Offset per block (when the layout has one).
    pub m: Vec<f32>,
    /// Packed values (quantized layouts).
    pub q: Vec<u8>,
    /// Values (F32 layout).
    pub f: Vec<f32>,
    /// A signed byte layout holds -128 somewhere (its magnitude does not fit 7 bits, which the
    /// relaxed-SIMD signed path needs).
    pub has_i8_min: bool,
}

/// One sub-block of decoded integers: `value[i] = d · q[i] + m`.
struct Sub {
    q: [i32; 32],
    len: usize,
    d: f32,
    m: f32,
}

fn f16_at(b: &[u8], o: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[o], b[o + 1]])).to_f32()
}

/// Calls `out` with each sub-block of the ggml block `b` of type `ty` (quantized types only).
fn decode_block(ty: GgmlType, b: &[u8], out: &mut impl FnMut(Sub)) {
    let mut sub = |len: usize, d: f32, m: f32, f: &dyn Fn(usize) -> i32| {
        let mut q = [0i32; 32];
        for (i, v) in q.iter_mut().enumerate().take(len) {
            *v = f(i);
        }
        out(Sub { q, len, d, m });
    };
    match ty {
        GgmlType::Q4_0 => {
            let d = f16_at(b, 0);
            sub(32, d, -8.0 * d, &|i| {
                (b[2 + i % 16] >> (4 * (i / 16)) & 15) as i32
            });
        }
        GgmlType::Q4_1 => sub(32, f16_at(b, 0), f16_at(b, 2), &|i| {
            (b[4 + i % 16] >> (4 * (i / 16)) & 15) as i32
        }),
        GgmlType::Q5_0 | GgmlType::Q5_1 => {
            let one = ty == GgmlType::Q5_1;
            let o = if one { 4 } else { 2 };
            let h = u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
            let q = |i: usize| {
                ((b[o + 4 + i % 16] >> (4 * (i / 16)) & 15) as u32 | ((h >> i) & 1) << 4) as i32
            };
            if one {
                sub(32, f16_at(b, 0), f16_at(b, 2), &q);
            } else {
                sub(32, f16_at(b, 0), 0.0, &|i| q(i) - 16);
            }
        }
        GgmlType::Q8_0 => sub(32, f16_at(b, 0), 0.0, &|i| b[2 + i] as i8 as i32),
        // The doubled E2M1 values (-12..=12) times half the E8M0 scale: exactly ggml's products.
        GgmlType::MXFP4 => sub(32, mxfp4_half_scale(b[0]), 0.0, &|i| {
            mxfp4_value(b[1 + i % 16] >> (4 * (i / 16))) as i32
        }),
        GgmlType::Q4_K | GgmlType::Q5_K => {
            let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
            let s = &b[4..16];
            let five = ty == GgmlType::Q5_K;
            let (qh, qs) = if five {
                (&b[16..48], &b[48..176])
            } else {
                (&b[0..0], &b[16..144])
            };
            for j in 0..8 {
                let (g, half) = (j / 2, j % 2);
                let (sc, mn) = scale_min_k4(j, s);
                sub(32, d * sc as f32, -(dmin * mn as f32), &|l| {
                    let v = (qs[32 * g + l] >> (4 * half)) & 15;
                    let hi = if five && qh[l] & (1 << j) != 0 { 16 } else { 0 };
                    (v + hi) as i32
                });
            }
        }
        GgmlType::Q6_K => {
            let (ql, qh, sc) = (&b[0..128], &b[128..192], &b[192..208]);
            let d = f16_at(b, 208);
            // Element e = 128n + 32k + l (k = 0..4, l = 0..32) uses scale sc[8n + 2k + l/16].
            for n in 0..2 {
                for k in 0..4 {
                    for half in 0..2 {
                        let s = sc[8 * n + 2 * k + half] as i8 as f32;
                        sub(16, d * s, 0.0, &|i| {
                            let l = 16 * half + i;
                            let low = ql[64 * n + l + 32 * (k % 2)] >> (4 * (k / 2)) & 15;
                            let high = (qh[32 * n + l] >> (2 * k)) & 3;
                            (low | high << 4) as i32 - 32
                        });
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
                for jj in 0..4 {
                    let mbit = 1u8 << (4 * n + jj);
                    for half in 0..2 {
                        sub(16, d * scale(8 * n + 2 * jj + half), 0.0, &|l| {
                            let i = l + 16 * half;
                            ((qs[32 * n + i] >> (2 * jj)) & 3) as i32
                                - if hmask[i] & mbit != 0 { 0 } else { 4 }
                        });
                    }
                }
            }
        }
        GgmlType::Q2_K => {
            let (sc, qs) = (&b[0..16], &b[16..80]);
            let (d, dmin) = (f16_at(b, 80), f16_at(b, 82));
            let mut is = 0;
            for n in 0..2 {
                for jj in 0..4 {
                    for half in 0..2 {
                        let s = sc[is];
                        is += 1;
                        sub(16, d * (s & 15) as f32, -(dmin * (s >> 4) as f32), &|l| {
                            ((qs[32 * n + l + 16 * half] >> (2 * jj)) & 3) as i32
                        });
                    }
                }
            }
        }
        GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => {
            unreachable!("float types are not blocks")
        }
    }
}

impl Matrix {
    /// An empty matrix of `rows × cols` for rows of `ty`, with room for all rows.
    pub fn with_capacity(ty: GgmlType, rows: usize, cols: usize) -> Self {
        let layout = Layout::of(ty);
        let mut m = Matrix {
            rows: 0,
            cols,
            layout,
            d: Vec::new(),
            m: Vec::new(),
            q: Vec::new(),
            f: Vec::new(),
            has_i8_min: false,
        };
        let n = rows * cols;
        match layout {
            Layout::F32 => m.f.reserve_exact(n),
            Layout::Nibbles { offset } => {
                m.q.reserve_exact(n / 2);
                m.d.reserve_exact(n / 32);
                if offset {
                    m.m.reserve_exact(n / 32);
                }
            }
            Layout::Bytes { block, offset, .. } => {
                m.q.reserve_exact(n);
                m.d.reserve_exact(n / block);
                if offset {
                    m.m.reserve_exact(n / block);
                }
            }
        }
        m
    }

    /// Repacks whole rows of `ty` from `bytes` (a multiple of the row size) and appends them.
    pub fn push_rows(&mut self, ty: GgmlType, bytes: &[u8]) {
        match ty {
            GgmlType::F32 => self.f.extend(
                bytes
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            ),
            GgmlType::F16 => self.f.extend(
                bytes
                    .chunks_exact(2)
                    .map(|c| f16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32()),
            ),
            GgmlType::BF16 => self.f.extend(
                bytes
                    .chunks_exact(2)
                    .map(|c| bf16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32()),
            ),
            _ => {
                let layout = self.layout;
                let (q, d, m, min) = (&mut self.q, &mut self.d, &mut self.m, &mut self.has_i8_min);
                let mut put = |s: Sub| match layout {
                    Layout::Nibbles { offset } => {
                        for j in 0..16 {
                            q.push((s.q[j] | s.q[j + 16] << 4) as u8);
                        }
                        d.push(s.d);
                        if offset {
                            m.push(s.m);
                        }
                    }
                    Layout::Bytes { block, offset, .. } => {
                        *min |= s.q[..s.len].contains(&-128);
                        q.extend(s.q[..s.len].iter().map(|&v| v as u8));
                        // Layouts with 16-value scales get 32-value blocks split in two.
                        for _ in 0..s.len / block {
                            d.push(s.d);
                            if offset {
                                m.push(s.m);
                            }
                        }
                    }
                    Layout::F32 => unreachable!(),
                };
                for b in bytes.chunks_exact(ty.block_bytes() as usize) {
                    decode_block(ty, b, &mut put);
                }
            }
        }
        self.rows += bytes.len() / ty.row_bytes(self.cols as u64) as usize;
    }

    /// Blocks of 32 values per row.
    pub fn blocks(&self) -> usize {
        self.cols / 32
    }

    /// Row `r` as f32 values (embedding lookups, tests).
    pub fn row_f32(&self, r: usize, out: &mut [f32]) {
        let n = self.cols;
        match self.layout {
            Layout::F32 => out.copy_from_slice(&self.f[r * n..(r + 1) * n]),
            Layout::Nibbles { offset } => {
                for b in 0..n / 32 {
                    let i = r * (n / 32) + b;
                    let d = self.d[i];
                    let m = if offset { self.m[i] } else { -8.0 * d };
                    let q = &self.q[i * 16..i * 16 + 16];
                    for j in 0..16 {
                        out[32 * b + j] = d * (q[j] & 15) as f32 + m;
                        out[32 * b + j + 16] = d * (q[j] >> 4) as f32 + m;
                    }
                }
            }
            Layout::Bytes {
                block,
                signed,
                offset,
            } => {
                let q = &self.q[r * n..(r + 1) * n];
                for (j, o) in out.iter_mut().enumerate().take(n) {
                    let bi = (r * n + j) / block;
                    let v = if signed {
                        q[j] as i8 as f32
                    } else {
                        q[j] as f32
                    };
                    *o = self.d[bi] * v + if offset { self.m[bi] } else { 0.0 };
                }
            }
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        ((self.d.len() + self.m.len() + self.f.len()) * 4 + self.q.len()) as u64
    }
}
