//! Every CPU kernel against the oracle on random data: every weight type (MXFP4 too, which only the CPU
//! backend runs), odd shapes (an odd number of
//! blocks, a single row, rows that split unevenly across threads). The repack must reproduce the
//! reference dequantization; the SIMD kernels must equal the portable scalar kernel bit for bit (so the
//! browser's wasm build and the native build agree exactly); and both must match the f32 dot product of
//! the dequantized weights and the dequantized 8-bit activations.

use webmoe_core::quant::{dequantize, random_blocks, GgmlType};
use webmoe_cpu::act::QuantAct;
use webmoe_cpu::kernels;
use webmoe_cpu::matrix::{Layout, Matrix};

struct Rng(u64);
impl Rng {
    fn u32(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 16) as u32
    }
    fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n)
            .map(|_| (self.u32() % 2_000_000) as f32 / 1_000_000.0 - 1.0)
            .collect()
    }
}

/// `(GGUF bytes, dequantized f32, repacked matrix)` of a random `rows × cols` matrix of `ty`.
fn random_matrix(rng: &mut Rng, ty: GgmlType, rows: usize, cols: usize) -> (Vec<f32>, Matrix) {
    let bytes = random_blocks(ty, rows * cols / ty.block_elems() as usize, || rng.u32());
    let mut f = vec![0f32; rows * cols];
    dequantize(ty, &bytes, &mut f);
    let mut m = Matrix::with_capacity(ty, rows, cols);
    // Stream it in two uneven pieces of whole rows, as the store does.
    let row = ty.row_bytes(cols as u64) as usize;
    let split = (rows / 3) * row;
    m.push_rows(ty, &bytes[..split]);
    m.push_rows(ty, &bytes[split..]);
    assert_eq!(m.rows, rows);
    (f, m)
}

fn shapes(ty: GgmlType) -> Vec<(usize, usize)> {
    if ty.block_elems() == 256 {
        vec![(1, 256), (7, 768), (33, 512)]
    } else {
        vec![(1, 32), (7, 96), (33, 544), (5, 2080)]
    }
}

#[test]
fn repacked_rows_equal_the_reference_dequantization() {
    let mut rng = Rng(7);
    for ty in GgmlType::ALL.into_iter().chain([GgmlType::MXFP4]) {
        for (rows, cols) in shapes(ty) {
            let (f, m) = random_matrix(&mut rng, ty, rows, cols);
            let mut row = vec![0f32; cols];
            for r in 0..rows {
                m.row_f32(r, &mut row);
                let want = &f[r * cols..(r + 1) * cols];
                let scale = want.iter().fold(1e-6f32, |a, v| a.max(v.abs()));
                for (j, (a, b)) in row.iter().zip(want).enumerate() {
                    assert!(
                        (a - b).abs() <= 1e-6 * scale,
                        "{} {rows}x{cols} row {r} col {j}: {a} vs {b}",
                        ty.name()
                    );
                }
            }
            assert_eq!(
                m.bytes(),
                Layout::of(ty).bytes(rows, cols),
                "{} planned size",
                ty.name()
            );
        }
    }
}

#[test]
fn simd_kernels_agree_with_the_scalar_kernel_and_the_f32_dot_product() {
    let mut rng = Rng(11);
    eprintln!("kernels: {}", kernels::isa());
    for ty in GgmlType::ALL.into_iter().chain([GgmlType::MXFP4]) {
        for (rows, cols) in shapes(ty) {
            let (f, m) = random_matrix(&mut rng, ty, rows, cols);
            let x = rng.vec(2 * cols);
            let mut a = QuantAct::default();
            a.quantize(&x, cols);
            for t in 0..2 {
                let xt = &x[t * cols..(t + 1) * cols];
                let tok = a.token(t);
                // The activations as the integer kernels see them.
                let xq: Vec<f32> = if m.layout == Layout::F32 {
                    xt.to_vec()
                } else {
                    (0..cols).map(|j| tok.d[j / 32] * tok.q[j] as f32).collect()
                };
                let mut fast = vec![0f32; rows - 1];
                let mut slow = vec![0f32; rows - 1];
                // Rows 1.. (an offset start), so row indexing inside the kernels is covered.
                kernels::rows(&m, 1, tok, xt, &mut fast);
                kernels::scalar::rows(&m, 1, tok, xt, &mut slow);
                for i in 0..rows - 1 {
                    let r = i + 1;
                    let w = &f[r * cols..(r + 1) * cols];
                    let exact: f32 = w.iter().zip(&xq).map(|(a, b)| a * b).sum();
                    let mag: f32 =
                        w.iter().zip(&xq).map(|(a, b)| (a * b).abs()).sum::<f32>() + 1e-6;
                    let tol = 2e-5 * mag;
                    assert_eq!(
                        fast[i].to_bits(),
                        slow[i].to_bits(),
                        "{} {rows}x{cols} row {r}: simd and scalar differ",
                        ty.name()
                    );
                    assert!(
                        (slow[i] - exact).abs() <= tol,
                        "{} {rows}x{cols} row {r}: simd {} scalar {} f32 {exact}",
                        ty.name(),
                        fast[i],
                        slow[i]
                    );
                    // Against the unquantized activations: within 8-bit quantization error.
                    let true_dot: f32 = w.iter().zip(xt).map(|(a, b)| a * b).sum();
                    assert!(
                        (fast[i] - true_dot).abs() <= 0.02 * mag,
                        "{} row {r}: {} vs f32 activations {true_dot}",
                        ty.name(),
                        fast[i]
                    );
                }
            }
        }
    }
}

#[test]
fn activation_quantization_matches_ggml_q8_0() {
    let mut rng = Rng(5);
    let x = rng.vec(96);
    let mut a = QuantAct::default();
    a.quantize(&x, 96);
    let ggml = webmoe_core::quant::quantize(GgmlType::Q8_0, &x);
    for b in 0..3 {
        let blk = &ggml[34 * b..34 * b + 34];
        let d = half::f16::from_bits(u16::from_le_bytes([blk[0], blk[1]])).to_f32();
        assert!((d - a.d[b]).abs() <= 1e-3 * d.abs());
        for j in 0..32 {
            assert_eq!(blk[2 + j] as i8, a.q[32 * b + j], "block {b} value {j}");
        }
    }
}
