//! Quantization on load on the GPU (`shaders/quantize.wgsl` through the weight store) against the CPU
//! reference quantizers of `webmoe_core::quant`: the same bytes, for every source and target type,
//! with rows streamed in odd-sized pieces, tensors split across shards, rows of an odd number of
//! blocks, all-zero rows and scales that round to f16 subnormals.

mod common;

use common::{gpu_with, Rng};
use half::{bf16, f16};
use webmoe_core::gguf::TensorInfo;
use webmoe_core::quant::{quantize, GgmlType};
use webmoe_core::TensorSink;
use webmoe_gpu::read_buffer;
use webmoe_gpu::weights::WeightStore;

/// Rows with very different magnitudes: an all-zero row, one whose scales are f16 subnormals, one with
/// a repeated extreme value (ties in the max fold), then random rows.
fn rows(rng: &mut Rng, n_rows: usize, k: usize) -> Vec<f32> {
    let mut x = Vec::with_capacity(n_rows * k);
    for r in 0..n_rows {
        let scale = match r {
            0 => 0.0,
            1 => 1e-6,
            _ => [1e-3, 0.5, 3.0, 250.0][r % 4],
        };
        for i in 0..k {
            let v = if r == 2 && i % 7 == 0 {
                -1.0
            } else {
                rng.f32()
            };
            x.push(v * scale);
        }
    }
    x
}

/// `x` in the source type's bytes, and the values those bytes hold.
fn encode(src: GgmlType, x: &[f32]) -> (Vec<u8>, Vec<f32>) {
    match src {
        GgmlType::F16 => (
            x.iter()
                .flat_map(|&v| f16::from_f32(v).to_le_bytes())
                .collect(),
            x.iter().map(|&v| f16::from_f32(v).to_f32()).collect(),
        ),
        GgmlType::BF16 => (
            x.iter()
                .flat_map(|&v| bf16::from_f32(v).to_le_bytes())
                .collect(),
            x.iter().map(|&v| bf16::from_f32(v).to_f32()).collect(),
        ),
        _ => (x.iter().flat_map(|v| v.to_le_bytes()).collect(), x.to_vec()),
    }
}

/// Streams `src_bytes` (rows of `src`) into a `dst` tensor of `[n_rows, k]` and returns its bytes.
fn quantize_on_gpu(
    max_binding: u64,
    src: GgmlType,
    dst: GgmlType,
    n_rows: usize,
    k: usize,
    src_bytes: &[u8],
    piece: usize,
) -> Vec<u8> {
    let gpu = gpu_with(Some(max_binding));
    let info = TensorInfo {
        name: "w".into(),
        dims: vec![k as u64, n_rows as u64],
        ggml_type: dst,
        offset: 0,
        size_bytes: dst.row_bytes(k as u64) * n_rows as u64,
    };
    let mut store = WeightStore::allocate(&gpu, &[(0, &info)]).unwrap();
    store.quantize_on_upload(&gpu, 0, src).unwrap();
    let mut off = 0;
    for c in src_bytes.chunks(piece) {
        store.write(0, off, c).unwrap();
        off += c.len() as u64;
    }
    store.finish().unwrap();
    let t = store.get("w").unwrap();
    assert!(t.shards.len() > 1, "the test should split the tensor");
    let mut out = Vec::new();
    for s in &t.shards {
        let n = s.n_rows * t.row_bytes;
        out.extend(pollster::block_on(read_buffer(&gpu, &s.buffer, n)).unwrap());
    }
    out
}

#[test]
fn gpu_quantization_makes_the_cpu_reference_bytes() {
    let mut rng = Rng(0x5eed_1234);
    for dst in [GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_K] {
        // Q8_0/Q4_0 rows of 3 blocks: blocks pair across rows and the tensor ends on a single block.
        let (k, n_rows) = if dst == GgmlType::Q4_K {
            (512, 11)
        } else {
            (96, 13)
        };
        let x = rows(&mut rng, n_rows, k);
        // Four rows per shard (the smallest shard the store makes; limits are multiples of 256).
        let max_binding = (dst.row_bytes(k as u64) * 4).div_ceil(256) * 256;
        for src in [GgmlType::F32, GgmlType::F16, GgmlType::BF16] {
            let (bytes, values) = encode(src, &x);
            let want = quantize(dst, &values);
            for piece in [1001, bytes.len()] {
                let got = quantize_on_gpu(max_binding, src, dst, n_rows, k, &bytes, piece);
                let bad = got.iter().zip(&want).filter(|(a, b)| a != b).count();

                assert_eq!(
                    bad,
                    0,
                    "{} from {} in pieces of {piece}: {bad} of {} bytes differ",
                    dst.name(),
                    src.name(),
                    want.len()
                );
            }
        }
    }
}

#[test]
fn unsupported_conversions_and_short_sources_are_errors() {
    let gpu = gpu_with(None);
    let info = |ty: GgmlType, k: u64| TensorInfo {
        name: "w".into(),
        dims: vec![k, 4],
        ggml_type: ty,
        offset: 0,
        size_bytes: ty.row_bytes(k) * 4,
    };
    let q5 = info(GgmlType::Q5_0, 64);
    let mut store = WeightStore::allocate(&gpu, &[(0, &q5)]).unwrap();
    let e = store
        .quantize_on_upload(&gpu, 0, GgmlType::F32)
        .unwrap_err();
    assert!(e.to_string().contains("Q8_0, Q4_0 or Q4_K"), "{e}");
    let q8 = info(GgmlType::Q8_0, 64);
    let mut store = WeightStore::allocate(&gpu, &[(0, &q8)]).unwrap();
    let e = store
        .quantize_on_upload(&gpu, 0, GgmlType::Q4_0)
        .unwrap_err();
    assert!(e.to_string().contains("F32, F16 or BF16"), "{e}");
    assert!(store.quantize_on_upload(&gpu, 7, GgmlType::F32).is_err());
    // Half a row, then the end: the store says the source stopped inside a row.
    store.quantize_on_upload(&gpu, 0, GgmlType::F32).unwrap();
    store.write(0, 0, &[0u8; 128]).unwrap();
    let e = store.finish().unwrap_err();
    assert!(e.to_string().contains("ended inside a row"), "{e}");
}
