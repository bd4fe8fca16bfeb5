//! The GPU sampler against CPU-computed expectations on random logits.

mod common;
use common::*;
use webmoe_core::sampling::{sample, Draw, SamplingParams};
use webmoe_gpu::kernels::sampler::Sampler;

fn draw(
    gpu: &webmoe_gpu::Gpu,
    logits: &[f32],
    p: &SamplingParams,
    recent: &[u32],
    counter: u32,
) -> u32 {
    draw_masked(gpu, logits, &Draw::new(p, recent, counter))
}

fn draw_masked(gpu: &webmoe_gpu::Gpu, logits: &[f32], d: &Draw) -> u32 {
    let lb = f32_buffer(gpu, logits);
    let s = Sampler::new(gpu, &lb, logits.len()).unwrap();
    s.prepare(gpu, d);
    run(gpu, &[s.op()], 1, 1);
    let b = pollster::block_on(webmoe_gpu::read_buffer(gpu, &s.out, 4)).unwrap();
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if *x > v[best] {
            best = i;
        }
    }
    best as u32
}

fn ranked(v: &[f32]) -> Vec<u32> {
    let mut idx: Vec<u32> = (0..v.len() as u32).collect();
    idx.sort_by(|a, b| v[*b as usize].total_cmp(&v[*a as usize]));
    idx
}

#[test]
fn greedy_is_the_argmax_with_lowest_id_on_ties() {
    let gpu = gpu();
    let mut rng = Rng(3);
    for vocab in [10usize, 1000, 49152] {
        let mut l: Vec<f32> = rng.vec(vocab).iter().map(|v| v * 10.0).collect();
        assert_eq!(
            draw(&gpu, &l, &SamplingParams::default(), &[], 0),
            argmax(&l),
            "vocab {vocab}"
        );
        let m = argmax(&l) as usize;
        let tie = (m + vocab / 2) % vocab;
        l[tie] = l[m];
        assert_eq!(
            draw(&gpu, &l, &SamplingParams::default(), &[], 0),
            m.min(tie) as u32
        );
    }
}

#[test]
fn repetition_penalty_demotes_recent_tokens() {
    let gpu = gpu();
    let mut rng = Rng(4);
    let mut l = rng.vec(500);
    let top = ranked(&l);
    l[top[0] as usize] = 5.0;
    l[top[1] as usize] = 4.0;
    let p = SamplingParams {
        repeat_penalty: 2.0,
        ..Default::default()
    };
    // 5/2 < 4: the second best wins once the best is penalized.
    assert_eq!(draw(&gpu, &l, &p, &[top[0], top[0], 7], 0), top[1]);
    // Outside the window the penalty does not apply.
    let p_short = SamplingParams {
        repeat_last_n: 1,
        ..p.clone()
    };
    assert_eq!(draw(&gpu, &l, &p_short, &[top[0], 7], 0), top[0]);
}

#[test]
fn sampling_respects_top_k_top_p_and_min_p() {
    let gpu = gpu();
    let mut rng = Rng(5);
    let l: Vec<f32> = rng.vec(2000).iter().map(|v| v * 4.0).collect();
    let order = ranked(&l);
    let base = SamplingParams {
        temperature: 1.5,
        top_k: 0,
        top_p: 1.0,
        min_p: 0.0,
        seed: 42,
        ..Default::default()
    };
    let mut seen = std::collections::HashSet::new();
    for c in 0..40 {
        let t = draw(
            &gpu,
            &l,
            &SamplingParams {
                top_k: 5,
                ..base.clone()
            },
            &[],
            c,
        );
        assert!(
            order[..5].contains(&t),
            "top-k 5 drew rank {:?}",
            order.iter().position(|&x| x == t)
        );
        seen.insert(t);
    }
    assert!(
        seen.len() > 1,
        "temperature sampling should not be deterministic across draws"
    );
    // top-p: the smallest prefix of the ranking whose probability reaches p.
    let mx = l[order[0] as usize];
    let z: f64 = l.iter().map(|v| ((v - mx) as f64).exp()).sum();
    let mut acc = 0.0;
    let mut keep = 0;
    while acc < 0.5 * z {
        acc += ((l[order[keep] as usize] - mx) as f64).exp();
        keep += 1;
    }
    for c in 0..30 {
        let t = draw(
            &gpu,
            &l,
            &SamplingParams {
                top_p: 0.5,
                ..base.clone()
            },
            &[],
            c,
        );
        assert!(order[..keep].contains(&t), "top-p 0.5 keeps {keep} tokens");
    }
    // min-p: only tokens with p >= min_p * p_max.
    for c in 0..30 {
        let t = draw(
            &gpu,
            &l,
            &SamplingParams {
                min_p: 0.3,
                ..base.clone()
            },
            &[],
            c,
        );
        assert!(l[t as usize] - mx >= 0.3f32.ln() - 1e-5);
    }
    // top-k 1 is greedy whatever the temperature.
    assert_eq!(
        draw(
            &gpu,
            &l,
            &SamplingParams {
                top_k: 1,
                ..base.clone()
            },
            &[],
            9
        ),
        order[0]
    );
}

#[test]
fn same_seed_and_counter_give_the_same_token() {
    let gpu = gpu();
    let l = Rng(6).vec(3000);
    let p = SamplingParams {
        temperature: 1.0,
        top_k: 0,
        top_p: 1.0,
        min_p: 0.0,
        seed: 7,
        ..Default::default()
    };
    let a: Vec<u32> = (0..10).map(|c| draw(&gpu, &l, &p, &[], c)).collect();
    let b: Vec<u32> = (0..10).map(|c| draw(&gpu, &l, &p, &[], c)).collect();
    assert_eq!(a, b);
    let other = SamplingParams { seed: 8, ..p };
    let c: Vec<u32> = (0..10).map(|c| draw(&gpu, &l, &other, &[], c)).collect();
    assert_ne!(a, c, "a different seed changes the draws");
}

/// A mask allowing the ids `keep` of `vocab`.
fn mask_of(vocab: usize, keep: &[u32]) -> Vec<u32> {
    let mut m = vec![0u32; vocab.div_ceil(32)];
    for &i in keep {
        m[i as usize / 32] |= 1 << (i % 32);
    }
    m
}

#[test]
fn a_token_mask_limits_every_draw_to_allowed_tokens_as_on_the_cpu() {
    let gpu = gpu();
    let mut rng = Rng(11);
    let vocab = 49152;
    let l: Vec<f32> = rng.vec(vocab).iter().map(|v| v * 6.0).collect();
    let order = ranked(&l);
    // Allowed: a few ranks far from the top, and ids past the last full mask word.
    let keep: Vec<u32> = vec![order[100], order[2000], order[30000], 49151, 49120];
    let mask = mask_of(vocab, &keep);
    let greedy = SamplingParams::default();
    let hot = SamplingParams {
        temperature: 2.0,
        top_k: 0,
        top_p: 1.0,
        min_p: 0.0,
        seed: 5,
        ..Default::default()
    };
    let mut seen = std::collections::HashSet::new();
    for p in [
        &greedy,
        &hot,
        &SamplingParams {
            top_k: 3,
            ..hot.clone()
        },
    ] {
        for c in 0..20 {
            let d = Draw {
                mask: Some(&mask),
                ..Draw::new(p, &[], c)
            };
            let t = draw_masked(&gpu, &l, &d);
            assert!(keep.contains(&t), "drew {t}, not allowed");
            assert_eq!(t, sample(&mut l.clone(), &d), "GPU and CPU samplers differ");
            seen.insert(t);
        }
    }
    assert!(
        seen.len() > 2,
        "temperature draws spread over the allowed tokens"
    );
}

#[test]
fn frequency_and_presence_penalties_match_the_cpu_sampler() {
    let gpu = gpu();
    let mut l = Rng(12).vec(500);
    let top = ranked(&l);
    l[top[0] as usize] = 5.0;
    l[top[1] as usize] = 4.0;
    l[top[2] as usize] = 3.5;
    let recent = [top[0], top[0], top[0], top[1], 9];
    for (presence, frequency, want) in [
        (0.0, 0.0, top[0]),
        // 5 - 3 * 0.5 = 3.5 and 4 - 0.5 = 3.5: the lower id of the two wins ties.
        (0.0, 0.5, top[0].min(top[1])),
        (0.0, 0.6, top[2]),
        (2.0, 0.0, top[2]),
        (-1.0, 0.0, top[0]),
    ] {
        let p = SamplingParams {
            presence_penalty: presence,
            frequency_penalty: frequency,
            ..Default::default()
        };
        let d = Draw::new(&p, &recent, 0);
        let got = draw_masked(&gpu, &l, &d);
        assert_eq!(
            got,
            sample(&mut l.clone(), &d),
            "presence {presence} frequency {frequency}"
        );
        if frequency != 0.5 {
            assert_eq!(got, want, "presence {presence} frequency {frequency}");
        }
    }
}
