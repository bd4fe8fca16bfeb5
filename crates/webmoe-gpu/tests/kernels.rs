//! Every kernel against the CPU reference (webmoe-core `reference`) on random inputs: all weight types,
//! odd shapes, several token counts, tensors split across bindings. Tolerances are normalized
//! mean-squared errors (NMSE); f32 kernels differ from the CPU only by summation order.

mod common;
use common::*;
use webmoe_core::model::RopeStyle;
use webmoe_core::quant::GgmlType;
use webmoe_core::reference;
use webmoe_gpu::kernels::{attention, elementwise, embed, kv, linear, norm};
use webmoe_gpu::uniforms::StepParams;

/// f32 math on identical dequantized values: only the summation order differs.
const F32_NMSE: f64 = 1e-10;

/// The f16 weight tiles against f16-rounded weights: the GPU's dequantized value can differ from the
/// CPU's by an ulp of f32 before rounding, so a few weights land one f16 ulp apart (NMSE up to ~7e-9
/// measured); against unrounded weights the tiles give 2e-8 to 7e-8, and a wrong kernel order 1.
const F16_TILE_NMSE: f64 = 1e-8;

fn k_for(ty: GgmlType) -> usize {
    if ty.block_elems() == 256 {
        512
    } else {
        96 // three 32-blocks: rows of Q4_0/Q8_0 are then not 4-byte aligned
    }
}

fn check_linear(
    gpu: &webmoe_gpu::Gpu,
    ty: GgmlType,
    rows: usize,
    tokens: usize,
    chunk: usize,
    accumulate: bool,
) {
    let mut rng = Rng(ty.id() as u64 * 7919 + rows as u64 + 17);
    let k = k_for(ty);
    let (bytes, w) = random_matrix(&mut rng, ty, rows, k);
    let store = upload(gpu, "w", &[k as u64, rows as u64], ty, &bytes, chunk);
    let t = store.get("w").unwrap();
    let x = rng.vec(tokens * k);
    let y0 = rng.vec(tokens * rows);
    let reference_of = |w: &[f32]| {
        let mut want = reference::matmul(&x, w, k);
        if accumulate {
            want.iter_mut().zip(&y0).for_each(|(w, y)| *w += y);
        }
        want
    };
    let want_vec = reference_of(&w);
    // The f16 tiles of the tiled mat-mul hold each dequantized weight rounded to f16 (quantized and
    // F16 tensors): their reference rounds the weights the same way.
    let f16_tiles = gpu.variants.tiled_prefill
        && gpu.variants.f16
        && !matches!(ty, GgmlType::F32 | GgmlType::BF16);
    let want_mat = if f16_tiles {
        reference_of(&round_f16(&w))
    } else {
        want_vec.clone()
    };
    let xb = f32_buffer(gpu, &x);
    let step = gpu.uniform_of(&StepParams {
        n_tokens: tokens as u32,
        pos0: 0,
        n_splits: 1,
        pad: 0,
    });
    for use_matmul in [false, true] {
        let want = if use_matmul { &want_mat } else { &want_vec };
        let yb = f32_buffer(gpu, &y0);
        let lin = linear::build(
            gpu,
            t,
            &xb,
            &yb,
            &step,
            linear::Layout {
                accumulate,
                ..Default::default()
            },
        )
        .unwrap();
        let ops: Vec<&webmoe_gpu::Op> = if use_matmul {
            lin.prefill.iter().collect()
        } else {
            lin.decode.iter().collect()
        };
        run(gpu, &ops, tokens as u32, 1);
        let got = read_f32(gpu, &yb, tokens * rows);
        let e = nmse(&got, want);
        assert!(
            e < if f16_tiles && use_matmul {
                F16_TILE_NMSE
            } else {
                F32_NMSE
            },
            "{} rows={rows} tokens={tokens} matmul={use_matmul} kernels={}: nmse {e:e}",
            ty.name(),
            gpu.variants.names()
        );
    }
}

#[test]
fn linear_matches_cpu_for_every_type_and_shape() {
    let gpu = gpu();
    for ty in GgmlType::ALL {
        for (rows, tokens) in [(1, 1), (37, 1), (37, 5), (70, 19)] {
            check_linear(&gpu, ty, rows, tokens, 1 << 20, false);
        }
        check_linear(&gpu, ty, 33, 3, 7, true);
    }
}

#[test]
fn linear_matches_cpu_under_every_kernel_tuning() {
    for gpu in all_tunings() {
        for ty in [
            GgmlType::Q4_0,
            GgmlType::Q8_0,
            GgmlType::Q4_K,
            GgmlType::Q6_K,
            GgmlType::F16,
        ] {
            for rows in [1, 7, 130] {
                check_linear(&gpu, ty, rows, 2, 1 << 20, rows == 7);
            }
        }
    }
}

/// The GPU kernel variants (subgroup lane sums; the workgroup-memory tiled mat-mul, with f32 and f16
/// weight tiles) on every type, with partial row and token tiles (130 rows, 40 tokens), accumulation
/// and split bindings.
#[test]
fn linear_matches_cpu_under_every_kernel_variant() {
    for set in ["subgroups", "tiled", "tiled,f16", "all"] {
        let v = webmoe_gpu::Variants::parse(set).unwrap();
        let gpu = gpu_variants(None, v);
        assert_eq!(gpu.variants, v, "the adapter runs {set}");
        for ty in GgmlType::ALL {
            for (rows, tokens) in [(1, 1), (37, 5), (130, 40)] {
                check_linear(&gpu, ty, rows, tokens, 1 << 20, false);
            }
            check_linear(&gpu, ty, 65, 33, 7, true);
        }
        let split = gpu_variants(Some(4096), v);
        check_linear(&split, GgmlType::Q8_0, 100, 9, 1000, true);
    }
}

#[test]
fn linear_split_across_bindings_matches_cpu() {
    // 4 KiB bindings: a 100-row Q8_0 matrix of 102-byte rows becomes three shards.
    let gpu = gpu_with(Some(4096));
    for ty in [
        GgmlType::Q8_0,
        GgmlType::Q4_K,
        GgmlType::F32,
        GgmlType::Q6_K,
    ] {
        let rows = 100;
        let store_rows = {
            let k = k_for(ty);
            let mut rng = Rng(1);
            let (bytes, _) = random_matrix(&mut rng, ty, rows, k);
            let s = upload(&gpu, "w", &[k as u64, rows as u64], ty, &bytes, 4093);
            s.get("w").unwrap().shards.len()
        };
        assert!(store_rows > 1, "{} should be split", ty.name());
        check_linear(&gpu, ty, rows, 1, 4093, false);
        check_linear(&gpu, ty, rows, 9, 1000, true);
    }
}

#[test]
fn embedding_lookup_matches_cpu_including_split_tables() {
    for max_binding in [None, Some(4096)] {
        let gpu = gpu_with(max_binding);
        for ty in [
            GgmlType::Q8_0,
            GgmlType::Q4_1,
            GgmlType::Q4_K,
            GgmlType::F16,
            GgmlType::BF16,
        ] {
            let mut rng = Rng(5);
            let (vocab, hidden) = (90, k_for(ty));
            let (bytes, table) = random_matrix(&mut rng, ty, vocab, hidden);
            let store = upload(&gpu, "e", &[hidden as u64, vocab as u64], ty, &bytes, 333);
            let ids: Vec<u32> = vec![0, 89, 45, 3, 45, 77];
            let idb = gpu.storage_init("ids", bytemuck::cast_slice(&ids));
            let xb = gpu.storage("x", (ids.len() * hidden * 4) as u64);
            let step = gpu.uniform_of(&StepParams {
                n_tokens: ids.len() as u32,
                pos0: 0,
                n_splits: 1,
                pad: 0,
            });
            let ops = embed::build(&gpu, store.get("e").unwrap(), &idb, &xb, &step).unwrap();
            run(&gpu, &ops.iter().collect::<Vec<_>>(), ids.len() as u32, 1);
            let want: Vec<f32> = ids
                .iter()
                .flat_map(|&i| table[i as usize * hidden..][..hidden].to_vec())
                .collect();
            // Quantized types read bytes as unorm floats with the ·255 folded into the scale, so a
            // value may differ from the CPU's exact one by a few ulps of the block's largest value.
            let got = read_f32(&gpu, &xb, want.len());
            let tol = 1e-6 * want.iter().fold(0f32, |m, v| m.max(v.abs()));
            for (j, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (g - w).abs() <= tol,
                    "{} split={max_binding:?} element {j}: {g} vs {w}",
                    ty.name()
                );
            }
        }
    }
}

#[test]
fn rmsnorm_matches_cpu() {
    let gpu = gpu();
    let mut rng = Rng(9);
    for (n, t) in [(576, 3), (100, 1), (4096, 2)] {
        let x: Vec<f32> = rng.vec(n * t).iter().map(|v| v * 50.0).collect();
        let w = rng.vec(n);
        let (xb, wb) = (f32_buffer(&gpu, &x), f32_buffer(&gpu, &w));
        let yb = gpu.storage("y", (n * t * 4) as u64);
        let step = gpu.uniform_of(&StepParams {
            n_tokens: t as u32,
            pos0: 0,
            n_splits: 1,
            pad: 0,
        });
        let want = reference::rms_norm(&x, &w, 1e-5);
        let rms = norm::Rms {
            n: n as u32,
            eps: 1e-5,
            last_only: false,
        };
        run(
            &gpu,
            &[&norm::build(&gpu, &xb, &wb, &yb, &step, rms).unwrap()],
            t as u32,
            1,
        );
        assert!(nmse(&read_f32(&gpu, &yb, n * t), &want) < F32_NMSE);
        let rms = norm::Rms {
            n: n as u32,
            eps: 1e-5,
            last_only: true,
        };
        run(
            &gpu,
            &[&norm::build(&gpu, &xb, &wb, &yb, &step, rms).unwrap()],
            t as u32,
            1,
        );
        assert!(
            nmse(&read_f32(&gpu, &yb, n), &want[(t - 1) * n..]) < F32_NMSE,
            "last row only"
        );
    }
}

#[test]
fn rope_matches_cpu_in_both_conventions() {
    let gpu = gpu();
    let mut rng = Rng(11);
    for style in [RopeStyle::Interleaved, RopeStyle::NeoX] {
        for (rope_dim, pos0) in [(64, 0), (32, 1000)] {
            let c = webmoe_core::model::ModelConfig {
                arch: "llama".into(),
                vocab_size: 10,
                hidden: 256,
                n_layers: 1,
                n_heads: 4,
                n_kv_heads: 2,
                head_dim: 64,
                ffn_dim: 32,
                rms_eps: 1e-5,
                rope_base: 10000.0,
                rope_dim,
                rope_style: style,
                rope_freq_divisors: Some((0..rope_dim / 2).map(|i| 1.0 + (i % 3) as f32).collect()),
                context_length: 2048,
                tied_output: true,
                ..Default::default()
            };
            let t = 5;
            let q = rng.vec(t * 4 * 64);
            let k = rng.vec(t * 2 * 64);
            let (qb, kb) = (f32_buffer(&gpu, &q), f32_buffer(&gpu, &k));
            let tables = webmoe_gpu::kernels::rope::tables(&gpu, &c, 2048);
            let step = gpu.uniform_of(&StepParams {
                n_tokens: t as u32,
                pos0,
                n_splits: 1,
                pad: 0,
            });
            let op = webmoe_gpu::kernels::rope::build(
                &gpu,
                &c,
                c.rope_style,
                &qb,
                &kb,
                &tables,
                &step,
                2048,
            )
            .unwrap();
            run(&gpu, &[&op], t as u32, 1);
            let (cos, sin) = webmoe_core::model::rope_tables(&c, pos0 as usize, t);
            let (mut wq, mut wk) = (q.clone(), k.clone());
            reference::rope(&mut wq, 4, 64, rope_dim, style, &cos, &sin);
            reference::rope(&mut wk, 2, 64, rope_dim, style, &cos, &sin);
            assert!(
                nmse(&read_f32(&gpu, &qb, q.len()), &wq) < F32_NMSE,
                "{style:?} q"
            );
            assert!(
                nmse(&read_f32(&gpu, &kb, k.len()), &wk) < F32_NMSE,
                "{style:?} k"
            );
        }
    }
}

fn round_f16(v: &[f32]) -> Vec<f32> {
    v.iter().map(|x| half::f16::from_f32(*x).to_f32()).collect()
}

/// Full causal attention, and chunked attention whose cache is a ring shorter than the sequence.
#[test]
fn attention_matches_cpu_for_split_and_barrier_free_plans() {
    use attention::Plan::{BarrierFree, Splits};
    let gpu = gpu();
    let mut rng = Rng(13);
    for (chunk, calls) in [
        (None, &[260usize, 1, 1, 1][..]),
        (Some(40), &[70, 50, 1, 1, 1][..]),
    ] {
        for (f16, cpu) in [(false, false), (true, false), (false, true), (true, true)] {
            for (nh, nkv, hd) in [(4, 2, 64), (6, 1, 80), (2, 2, 256)] {
                let max_pos = webmoe_core::plan::cache_slots(300, chunk, 70);
                let cache = kv::alloc(&gpu, nkv, hd, max_pos, f16);
                let shape = attention::Shape {
                    n_heads: nh,
                    n_kv_heads: nkv,
                    head_dim: hd,
                    max_pos,
                    chunk,
                    scale: 1.0 / (hd as f32).sqrt(),
                    f16,
                };
                let (mut all_k, mut all_v) = (Vec::new(), Vec::new());
                // Prefill in one or two calls, then decode 3 single tokens. GPU plans: key-range
                // splits, then a single range, then barrier-free decode only (which also runs the
                // chunked case's second prefill call, with the online-softmax kernel). CPU adapters:
                // all barrier-free.
                let mut pos = 0;
                for (call, &t) in calls.iter().enumerate() {
                    let plan = match (cpu, calls.len() - call) {
                        (true, _) => BarrierFree { prefill: true },
                        (false, 1 | 4) => BarrierFree { prefill: false },
                        (false, 2) => Splits(1),
                        _ => Splits(attention::MAX_SPLITS),
                    };
                    let q: Vec<f32> = rng.vec(t * nh * hd).iter().map(|v| v * 3.0).collect();
                    let k = rng.vec(t * nkv * hd);
                    let v = rng.vec(t * nkv * hd);
                    let (qb, kb, vb) = (
                        f32_buffer(&gpu, &q),
                        f32_buffer(&gpu, &k),
                        f32_buffer(&gpu, &v),
                    );
                    let splits = attention::n_splits(t as u32, (pos + t) as u32, plan);
                    let step = gpu.uniform_of(&StepParams {
                        n_tokens: t as u32,
                        pos0: pos as u32,
                        n_splits: splits,
                        pad: 0,
                    });
                    let part_len = attention::partial_len(t, nh, hd, max_pos, plan);
                    let part = gpu.storage("part", (part_len * 4) as u64);
                    let out = gpu.storage("out", (t * nh * hd * 4) as u64);
                    let store = kv::build_store(&gpu, &kb, &vb, &cache, &step).unwrap();
                    let att = attention::build(&gpu, shape, plan, &qb, &cache, &part, &out, &step)
                        .unwrap();
                    let ops = if t == 1 { &att.decode } else { &att.prefill };
                    let mut launches = vec![&store];
                    launches.extend(ops);
                    run(&gpu, &launches, t as u32, splits);
                    all_k.extend(if f16 { round_f16(&k) } else { k });
                    all_v.extend(if f16 { round_f16(&v) } else { v });
                    pos += t;
                    let want = reference::attention_chunked(&q, &all_k, &all_v, nh, nkv, hd, chunk);
                    let e = nmse(&read_f32(&gpu, &out, want.len()), &want);
                    assert!(
                    e < 1e-9,
                    "chunk={chunk:?} f16={f16} nh={nh} nkv={nkv} hd={hd} t={t} {plan:?} splits={splits}: nmse {e:e}"
                );
                    // 256 keys per scores workgroup: the full-causal case spans two.
                    let (n_ops, split) = match plan {
                        BarrierFree { prefill } if t == 1 || prefill => (3, pos > 256),
                        Splits(max) if t == 1 => (2, max > 1),
                        _ => (2, false),
                    };
                    assert_eq!(
                        (ops.len(), splits > 1),
                        (n_ops, split),
                        "{plan:?} t={t} as intended"
                    );
                }
                if chunk.is_some() {
                    assert!(pos > max_pos, "the ring must wrap");
                }
            }
        }
    }
}

#[test]
fn swiglu_and_bias_match_cpu() {
    let gpu = gpu();
    let mut rng = Rng(17);
    let (n, t) = (100, 3);
    let (g, u, b) = (rng.vec(n * t), rng.vec(n * t), rng.vec(n));
    let step = gpu.uniform_of(&StepParams {
        n_tokens: t as u32,
        pos0: 0,
        n_splits: 1,
        pad: 0,
    });
    let (gb, ub, bb) = (
        f32_buffer(&gpu, &g),
        f32_buffer(&gpu, &u),
        f32_buffer(&gpu, &b),
    );
    run(
        &gpu,
        &[
            &elementwise::build(&gpu, elementwise::Kind::SwiGlu, &gb, &ub, &step, n as u32)
                .unwrap(),
        ],
        t as u32,
        1,
    );
    assert!(nmse(&read_f32(&gpu, &gb, n * t), &reference::swiglu(&g, &u)) < F32_NMSE);
    run(
        &gpu,
        &[
            &elementwise::build(&gpu, elementwise::Kind::AddBias, &ub, &bb, &step, n as u32)
                .unwrap(),
        ],
        t as u32,
        1,
    );
    let want: Vec<f32> = u.iter().enumerate().map(|(i, x)| x + b[i % n]).collect();
    assert!(nmse(&read_f32(&gpu, &ub, n * t), &want) < F32_NMSE);
}

/// The q/k adjustments: per-head and full-width weighted RMSNorm, the weightless norm, and Llama 4
/// temperature tuning at positions on both sides of a `floor_scale` boundary.
#[test]
fn qk_norm_and_temperature_match_cpu() {
    use webmoe_core::model::AttnTemperature;
    use webmoe_gpu::kernels::qk;
    let gpu = gpu();
    let mut rng = Rng(23);
    let (t, nh, nkv, hd) = (5, 4, 2, 48);
    let pos0 = 6;
    let temp = AttnTemperature {
        floor_scale: 4.0,
        scale: 0.5,
    };
    let per_head = qk::Rows {
        q_rows: nh,
        q_len: hd,
        k_rows: nkv,
        k_len: hd,
    };
    let full = qk::Rows {
        q_rows: 1,
        q_len: nh * hd,
        k_rows: 1,
        k_len: nkv * hd,
    };
    for (rows, weighted, unit, with_temp) in [
        (per_head, true, false, false),
        (full, true, false, false),
        (per_head, false, true, false),
        (per_head, false, false, true),
    ] {
        let q: Vec<f32> = rng.vec(t * nh * hd).iter().map(|v| v * 3.0).collect();
        let k = rng.vec(t * nkv * hd);
        let (qw, kw) = (rng.vec(rows.q_len), rng.vec(rows.k_len));
        let (qb, kb) = (f32_buffer(&gpu, &q), f32_buffer(&gpu, &k));
        let (qwb, kwb) = (f32_buffer(&gpu, &qw), f32_buffer(&gpu, &kw));
        let norm = if weighted {
            qk::Norm::Weighted(&qwb, &kwb)
        } else if unit {
            qk::Norm::Unit
        } else {
            qk::Norm::None
        };
        let step = gpu.uniform_of(&StepParams {
            n_tokens: t as u32,
            pos0,
            n_splits: 1,
            pad: 0,
        });
        let op = qk::build(
            &gpu,
            &qb,
            &kb,
            rows,
            norm,
            1e-6,
            with_temp.then_some(temp),
            &step,
        )
        .unwrap();
        run(&gpu, &[&op], t as u32, 1);
        let (mut wq, mut wk) = (q.clone(), k.clone());
        if weighted || unit {
            let (a, b) = if weighted {
                (Some(&qw[..]), Some(&kw[..]))
            } else {
                (None, None)
            };
            reference::rms_norm_rows(&mut wq, rows.q_len, a, 1e-6);
            reference::rms_norm_rows(&mut wk, rows.k_len, b, 1e-6);
        }
        if with_temp {
            for (i, row) in wq.chunks_exact_mut(nh * hd).enumerate() {
                let f = reference::attn_temperature(&temp, pos0 as usize + i);
                row.iter_mut().for_each(|v| *v *= f);
            }
            // Positions 6..11 with floor_scale 4 cross a boundary: the factor is not constant.
            assert!(
                reference::attn_temperature(&temp, 6) != reference::attn_temperature(&temp, 10)
            );
        }
        let what = format!(
            "weighted={weighted} unit={unit} temp={with_temp} q_len={}",
            rows.q_len
        );
        assert!(
            nmse(&read_f32(&gpu, &qb, q.len()), &wq) < F32_NMSE,
            "{what}: q"
        );
        assert!(
            nmse(&read_f32(&gpu, &kb, k.len()), &wk) < F32_NMSE,
            "{what}: k"
        );
    }
}

#[test]
fn attention_rejects_unsupported_head_dims_clearly() {
    let gpu = gpu();
    for hd in [258, 63] {
        let cache = kv::alloc(&gpu, 1, hd, 8, true);
        let shape = attention::Shape {
            n_heads: 1,
            n_kv_heads: 1,
            head_dim: hd,
            max_pos: 8,
            chunk: None,
            scale: 1.0,
            f16: true,
        };
        let b = gpu.storage("b", 4096);
        for plan in [
            attention::Plan::Splits(16),
            attention::Plan::BarrierFree { prefill: true },
        ] {
            let err = attention::build(&gpu, shape, plan, &b, &cache, &b, &b, &b)
                .err()
                .expect("an error");
            assert!(err.to_string().contains(&format!("head_dim {hd}")), "{err}");
        }
    }
}
