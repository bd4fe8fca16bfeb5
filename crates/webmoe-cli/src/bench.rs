//! `webmoe bench`: prefill and decode speed, and the decode's weight bandwidth as a fraction of the
//! device's own copy bandwidth measured in the same run (a copy kernel on the GPU, `memcpy` over all
//! threads on the CPU).

use anyhow::Result;
use std::time::Instant;
use webmoe_core::generate::Backend;
use webmoe_core::sampling::{Draw, SamplingParams};
use webmoe_engine::{AnyEngine, OpenOptions};
use webmoe_gpu::kernels::copy::copy_bandwidth;

/// Best of `reps` copies of `bytes` split over the rayon threads, in GB/s (read + write).
fn cpu_copy_bandwidth(bytes: usize, reps: usize) -> f64 {
    use rayon::prelude::*;
    let src = vec![1u8; bytes];
    let mut dst = vec![0u8; bytes];
    let piece = bytes.div_ceil(rayon::current_num_threads());
    let mut best = f64::INFINITY;
    for _ in 0..reps {
        let t = Instant::now();
        dst.par_chunks_mut(piece)
            .zip(src.par_chunks(piece))
            .for_each(|(d, s)| d.copy_from_slice(s));
        best = best.min(t.elapsed().as_secs_f64());
    }
    std::hint::black_box(&dst);
    2.0 * bytes as f64 / best / 1e9
}

pub fn run(
    model: &str,
    prompt_tokens: usize,
    gen_tokens: usize,
    json: bool,
    profile: bool,
    open: &OpenOptions,
    quantize: Option<webmoe_core::quant::GgmlType>,
) -> Result<()> {
    let t_load = Instant::now();
    let mut m = webmoe_cli::load::load_on(model, open, quantize, json)?;
    let load_s = t_load.elapsed().as_secs_f64();
    let e = &mut m.engine;
    let vocab = e.desc().config.vocab_size as u32;
    // A fixed pseudo-random prompt: speed does not depend on the text.
    let prompt: Vec<u32> = (0..prompt_tokens as u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 7) % vocab)
        .collect();
    let greedy = SamplingParams::default();
    let step = |e: &mut AnyEngine, ids: &[u32]| -> Result<u32> {
        Ok(pollster::block_on(e.forward(ids, Some(Draw::new(&greedy, &[], 0))))?.unwrap_or(0))
    };
    // Warm-up (pipeline compilation, first-touch of buffers).
    step(e, &prompt[..prompt.len().min(8)])?;
    e.reset();
    let t = Instant::now();
    let mut next = step(e, &prompt)?;
    let prefill_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut n = 0;
    while n < gen_tokens && e.pos() < e.max_context() {
        next = step(e, &[next])?;
        n += 1;
    }
    let decode_s = t.elapsed().as_secs_f64();
    let copy_gbs = match e.gpu() {
        Some(g) => copy_bandwidth(&g.gpu, 256 << 20, 5)?,
        None => cpu_copy_bandwidth(256 << 20, 5),
    };
    let bytes_per_token = e.weight_bytes_per_token();
    let decode_tps = n as f64 / decode_s;
    let decode_gbs = bytes_per_token as f64 * decode_tps / 1e9;
    let mut v = serde_json::json!({
        "model": model,
        "device": m.device,
        "adapter": m.device.adapter.clone().unwrap_or_default(),
        "threads": if e.gpu().is_none() { webmoe_cpu::threads() } else { 0 },
        "load_s": load_s,
        "prompt_tokens": prompt_tokens,
        "gen_tokens": n,
        "prefill_tokens_per_s": prompt_tokens as f64 / prefill_s,
        "time_to_first_token_s": prefill_s,
        "decode_tokens_per_s": decode_tps,
        "weight_bytes": e.weight_bytes(),
        "weight_bytes_per_token": bytes_per_token,
        "decode_weight_gb_per_s": decode_gbs,
        "copy_gb_per_s": copy_gbs,
        "decode_bandwidth_ratio": decode_gbs / copy_gbs,
    });
    if let AnyEngine::Gpu(g) = e {
        v["decode_launches_per_token"] = g.decode_launches().into();
        v["gpu_kernels"] = g.gpu.variants.names().into();
        v["expert_bytes_total"] = g.expert_bytes().0.into();
        v["expert_bytes_per_token"] = g.expert_bytes().1.into();
        if profile {
            let p = g.profile_decode(next, 20);
            v["decode_profile_ms"] = p
                .iter()
                .map(|(k, ms)| ((*k).to_string(), (*ms).into()))
                .collect::<serde_json::Map<_, _>>()
                .into();
        }
    }
    if json {
        println!("{v}");
    } else {
        println!("{}", serde_json::to_string_pretty(&v)?);
    }
    Ok(())
}
