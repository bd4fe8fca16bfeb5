//! Mixture-of-Experts kernels against the CPU reference (webmoe-core `moe`): router top-k in both
//! weightings with ties in the logits, expert mat-vecs that read expert ids from a GPU buffer (every
//! weight type, experts that get no token, a tensor split across bindings so experts straddle shards),
//! the prefill grouping by expert and the grouped expert mat-mul,
//! and a whole routed layer composed from the launches as the executor will run it.

mod common;
use common::*;
use webmoe_core::moe::{route, Routing};
use webmoe_core::quant::GgmlType;
use webmoe_core::reference::{moe_ffn, ExpertWeights};
use webmoe_gpu::kernels::{elementwise, linear, moe};
use webmoe_gpu::uniforms::StepParams;
use webmoe_gpu::{read_buffer, Gpu};

const F32_NMSE: f64 = 1e-10;

fn u32_buffer(gpu: &Gpu, data: &[u32]) -> wgpu::Buffer {
    gpu.storage_init("ids", bytemuck::cast_slice(data))
}

fn read_u32(gpu: &Gpu, b: &wgpu::Buffer, n: usize) -> Vec<u32> {
    let bytes = pollster::block_on(read_buffer(gpu, b, (n * 4) as u64)).unwrap();
    bytemuck::cast_slice(&bytes).to_vec()
}

const ROUTINGS: [Routing; 3] = [
    Routing::Softmax { renorm: false },
    Routing::Softmax { renorm: true },
    Routing::SigmoidInput,
];

#[test]
fn router_top_k_matches_cpu_including_ties() {
    let gpu = gpu();
    let mut rng = Rng(11);
    for (e, k) in [(8, 2), (16, 1), (60, 4), (128, 8), (256, 8), (3, 3)] {
        for tokens in [1usize, 5] {
            for coarse in [false, true] {
                // Coarse logits take few distinct values, so ties are everywhere.
                let logits: Vec<f32> = (0..tokens * e)
                    .map(|_| {
                        let v = rng.f32() * 4.0;
                        if coarse {
                            (v * 2.0).round() / 2.0
                        } else {
                            v
                        }
                    })
                    .collect();
                for routing in ROUTINGS {
                    let lb = f32_buffer(&gpu, &logits);
                    let ids = gpu.storage("ids", (tokens * k * 4) as u64);
                    let w = gpu.storage("w", (tokens * k * 4) as u64);
                    let step = gpu.uniform_of(&StepParams {
                        n_tokens: tokens as u32,
                        pos0: 0,
                        n_splits: 1,
                        pad: 0,
                    });
                    let r = moe::Routed {
                        ids: &ids,
                        weights: &w,
                        step: &step,
                        k,
                    };
                    let op = moe::route(&gpu, &lb, r, e, routing).unwrap();
                    run(&gpu, &[&op], tokens as u32, 1);
                    let (want_ids, want_w) = route(&logits, e, k, routing);
                    let ctx = format!("E={e} k={k} T={tokens} coarse={coarse} {routing:?}");
                    assert_eq!(read_u32(&gpu, &ids, tokens * k), want_ids, "{ctx}");
                    let got_w = read_f32(&gpu, &w, tokens * k);
                    for (g, x) in got_w.iter().zip(&want_w) {
                        assert!(
                            (g - x).abs() <= 1e-6 * x.abs().max(1.0),
                            "{ctx}: {g} vs {x}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn router_rejects_impossible_shapes() {
    let gpu = gpu();
    let b = gpu.storage("b", 64);
    let step = gpu.uniform_of(&StepParams {
        n_tokens: 1,
        pos0: 0,
        n_splits: 1,
        pad: 0,
    });
    let r = Routing::Softmax { renorm: false };
    for (e, k) in [(4, 5), (4, 0), (300, 2), (16, 9)] {
        let routed = moe::Routed {
            ids: &b,
            weights: &b,
            step: &step,
            k,
        };
        assert!(matches!(
            moe::route(&gpu, &b, routed, e, r),
            Err(webmoe_gpu::GpuError::Invalid(_))
        ));
    }
}

fn k_for(ty: GgmlType) -> usize {
    if ty.block_elems() == 256 {
        256
    } else {
        96
    }
}

/// Decode's expert mat-vec and prefill's grouping + grouped mat-mul give the same per-slot outputs as the
/// CPU, and the grouping is the CPU's (slots of each expert in increasing order).
#[test]
fn expert_matvec_and_grouped_matmul_read_only_the_chosen_experts_for_every_type() {
    // Small bindings split the stacked tensor so that experts straddle shards.
    for gpu in [gpu(), gpu_with(Some(4096))] {
        for ty in GgmlType::ALL {
            let mut rng = Rng(ty.id() as u64 + 3);
            let (n_exp, rows, k, k_used, tokens) = (6usize, 37usize, k_for(ty), 2usize, 9usize);
            let (bytes, w) = random_matrix(&mut rng, ty, n_exp * rows, k);
            let store = upload(
                &gpu,
                "w",
                &[k as u64, (n_exp * rows) as u64],
                ty,
                &bytes,
                1000,
            );
            let t = store.get("w").unwrap();
            // Experts 0 and 4 get no token; the others get 4 or 5 slots (more than one tile of 4).
            let chosen = [5u32, 1, 3, 2];
            let ids: Vec<u32> = (0..tokens)
                .flat_map(|t| [chosen[t % 4], chosen[(t + 1) % 4]])
                .collect();
            let mut offsets = vec![0u32];
            let mut sorted = Vec::new();
            for e in 0..n_exp as u32 {
                sorted.extend((0..ids.len() as u32).filter(|&s| ids[s as usize] == e));
                offsets.push(sorted.len() as u32);
            }
            for per_slot in [false, true] {
                let x_rows = if per_slot { tokens * k_used } else { tokens };
                let x = rng.vec(x_rows * k);
                let (xb, ib) = (f32_buffer(&gpu, &x), u32_buffer(&gpu, &ids));
                let y = gpu.storage("y", (tokens * k_used * rows * 4) as u64);
                let step = gpu.uniform_of(&StepParams {
                    n_tokens: tokens as u32,
                    pos0: 0,
                    n_splits: 1,
                    pad: 0,
                });
                let r = moe::Routed {
                    ids: &ib,
                    weights: &ib,
                    step: &step,
                    k: k_used,
                };
                let ops = moe::experts(&gpu, t, rows, &xb, &y, r, per_slot).unwrap();
                run(&gpu, &ops.iter().collect::<Vec<_>>(), tokens as u32, 1);
                let got = read_f32(&gpu, &y, tokens * k_used * rows);
                let mut want = Vec::new();
                for (slot, &e) in ids.iter().enumerate() {
                    let xr = if per_slot { slot } else { slot / k_used };
                    let we = &w[e as usize * rows * k..(e as usize + 1) * rows * k];
                    want.extend(webmoe_core::reference::matmul(
                        &x[xr * k..(xr + 1) * k],
                        we,
                        k,
                    ));
                }
                let e = nmse(&got, &want);
                assert!(
                    e < F32_NMSE,
                    "{} per_slot={per_slot} shards={}: nmse {e:e}",
                    ty.name(),
                    t.shards.len()
                );
                // Prefill: group, then the grouped mat-mul into a fresh output.
                let g = moe::Grouped {
                    offsets: &gpu.storage("offsets", ((n_exp + 1) * 4) as u64),
                    sorted: &gpu.storage("sorted", (ids.len() * 4) as u64),
                    n_experts: n_exp,
                };
                let y2 = gpu.storage("y2", (tokens * k_used * rows * 4) as u64);
                let mut ops = vec![moe::group(&gpu, r, g).unwrap()];
                ops.extend(moe::experts_grouped(&gpu, t, rows, &xb, &y2, r, g, per_slot).unwrap());
                run(&gpu, &ops.iter().collect::<Vec<_>>(), tokens as u32, 1);
                assert_eq!(read_u32(&gpu, g.offsets, n_exp + 1), offsets);
                assert_eq!(read_u32(&gpu, g.sorted, ids.len()), sorted);
                let e = nmse(&read_f32(&gpu, &y2, tokens * k_used * rows), &want);
                assert!(
                    e < F32_NMSE,
                    "grouped {} per_slot={per_slot} shards={}: nmse {e:e}",
                    ty.name(),
                    t.shards.len()
                );
            }
        }
    }
}

/// route → (scale input) → gate, up → SwiGLU → down → combine, as launches, against `moe_ffn`; and the
/// same with the fused gate+up+SwiGLU decode launch.
#[test]
fn a_routed_layer_composed_from_the_launches_matches_cpu() {
    let gpu = gpu();
    let (h, width, n_exp) = (64usize, 96usize, 16usize);
    for (routing, k_used, tokens, ty) in [
        (
            Routing::Softmax { renorm: false },
            2usize,
            1usize,
            GgmlType::Q8_0,
        ),
        (Routing::Softmax { renorm: true }, 4, 3, GgmlType::F32),
        (Routing::SigmoidInput, 1, 1, GgmlType::F16),
        (Routing::SigmoidInput, 8, 2, GgmlType::Q4_0),
    ] {
        let mut rng = Rng(k_used as u64 * 31 + tokens as u64);
        let (rb, router) = random_matrix(&mut rng, GgmlType::F32, n_exp, h);
        let (gb, gate) = random_matrix(&mut rng, ty, n_exp * width, h);
        let (ub, up) = random_matrix(&mut rng, ty, n_exp * width, h);
        let (db, down) = random_matrix(&mut rng, ty, n_exp * h, width);
        let s_router = upload(
            &gpu,
            "r",
            &[h as u64, n_exp as u64],
            GgmlType::F32,
            &rb,
            1 << 20,
        );
        let s_gate = upload(
            &gpu,
            "g",
            &[h as u64, (n_exp * width) as u64],
            ty,
            &gb,
            1 << 20,
        );
        let s_up = upload(
            &gpu,
            "u",
            &[h as u64, (n_exp * width) as u64],
            ty,
            &ub,
            1 << 20,
        );
        let s_down = upload(
            &gpu,
            "d",
            &[width as u64, (n_exp * h) as u64],
            ty,
            &db,
            1 << 20,
        );
        let x = rng.vec(tokens * h);
        let y0 = rng.vec(tokens * h);
        let slots = tokens * k_used;
        let xb = f32_buffer(&gpu, &x);
        let yb = f32_buffer(&gpu, &y0);
        let logits = gpu.storage("logits", (tokens * n_exp * 4) as u64);
        let ids = gpu.storage("ids", (slots * 4) as u64);
        let wts = gpu.storage("w", (slots * 4) as u64);
        let xs = gpu.storage("xs", (slots * h * 4) as u64);
        let g = gpu.storage("g", (slots * width * 4) as u64);
        let u = gpu.storage("u", (slots * width * 4) as u64);
        let o = gpu.storage("o", (slots * h * 4) as u64);
        let step = gpu.uniform_of(&StepParams {
            n_tokens: tokens as u32,
            pos0: 0,
            n_splits: 1,
            pad: 0,
        });
        let input_weighted = routing.weights_input();
        let lin = linear::build(
            &gpu,
            s_router.get("r").unwrap(),
            &xb,
            &logits,
            &step,
            Default::default(),
        )
        .unwrap();
        let r = moe::Routed {
            ids: &ids,
            weights: &wts,
            step: &step,
            k: k_used,
        };
        let ex = |t: &webmoe_gpu::weights::WeightStore,
                  n: &str,
                  rows,
                  x: &wgpu::Buffer,
                  y: &wgpu::Buffer,
                  per_slot| {
            moe::experts(&gpu, t.get(n).unwrap(), rows, x, y, r, per_slot).unwrap()
        };
        // Up to the expert gate/up mat-vecs (token count T).
        let mut first = lin.decode.clone();
        first.push(moe::route(&gpu, &logits, r, n_exp, routing).unwrap());
        let x_in = if input_weighted {
            first.push(moe::scale_input(&gpu, &xb, &xs, r, h).unwrap());
            &xs
        } else {
            &xb
        };
        // The same with the fused gate+up+SwiGLU launch.
        let mut fused = first.clone();
        let (tg, tu) = (s_gate.get("g").unwrap(), s_up.get("u").unwrap());
        assert!(moe::can_fuse(tg, tu));
        fused.extend(moe::experts_glu(&gpu, tg, tu, width, x_in, &g, r, input_weighted).unwrap());
        first.extend(ex(&s_gate, "g", width, x_in, &g, input_weighted));
        first.extend(ex(&s_up, "u", width, x_in, &u, input_weighted));
        // SwiGLU over one row of `width` per slot (token count = slots).
        let slot_step = gpu.uniform_of(&StepParams {
            n_tokens: slots as u32,
            pos0: 0,
            n_splits: 1,
            pad: 0,
        });
        let swiglu = elementwise::build(
            &gpu,
            elementwise::Kind::SwiGlu,
            &g,
            &u,
            &slot_step,
            width as u32,
        )
        .unwrap();
        // Down mat-vecs and the combine (token count T).
        let mut last = ex(&s_down, "d", h, &g, &o, true);
        last.push(
            moe::combine(
                &gpu,
                &o,
                &yb,
                r,
                h,
                if input_weighted {
                    moe::Weighting::Unit
                } else {
                    moe::Weighting::Weights
                },
            )
            .unwrap(),
        );
        run(&gpu, &first.iter().collect::<Vec<_>>(), tokens as u32, 1);
        run(&gpu, &[&swiglu], slots as u32, 1);
        run(&gpu, &last.iter().collect::<Vec<_>>(), tokens as u32, 1);
        let got = read_f32(&gpu, &yb, tokens * h);
        gpu.queue.write_buffer(&yb, 0, bytemuck::cast_slice(&y0));
        run(&gpu, &fused.iter().collect::<Vec<_>>(), tokens as u32, 1);
        run(&gpu, &last.iter().collect::<Vec<_>>(), tokens as u32, 1);
        let got_fused = read_f32(&gpu, &yb, tokens * h);
        let m = ExpertWeights {
            q8_inputs: false,
            router: &router,
            gate: &gate,
            up: &up,
            down: &down,
            n_experts: n_exp,
            k: k_used,
            width,
        };
        let want: Vec<f32> = moe_ffn(&x, h, &m, routing)
            .iter()
            .zip(&y0)
            .map(|(a, b)| a + b)
            .collect();
        for (what, got) in [("separate", &got), ("fused gate+up", &got_fused)] {
            let e = nmse(got, &want);
            assert!(
                e < F32_NMSE,
                "{what} {routing:?} k={k_used} T={tokens} {}: nmse {e:e}",
                ty.name()
            );
        }
    }
}
