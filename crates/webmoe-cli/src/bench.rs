//! `webmoe bench`: prefill and decode speed, and the decode's weight bandwidth as a fraction of the
//! device's own copy bandwidth measured in the same run.

use anyhow::Result;
use std::time::Instant;
use webmoe_core::sampling::SamplingParams;
use webmoe_gpu::kernels::copy::copy_bandwidth;
use webmoe_gpu::EngineOptions;

pub fn run(
    model: &str,
    prompt_tokens: usize,
    gen_tokens: usize,
    json: bool,
    profile: bool,
    opts: EngineOptions,
    quantize: Option<webmoe_core::quant::GgmlType>,
) -> Result<()> {
    let t_load = Instant::now();
    let mut m = webmoe_cli::load::load_quantized(model, opts, quantize, json)?;
    let load_s = t_load.elapsed().as_secs_f64();
    let vocab = m.engine.desc.config.vocab_size as u32;
    // A fixed pseudo-random prompt: speed does not depend on the text.
    let prompt: Vec<u32> = (0..prompt_tokens as u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 7) % vocab)
        .collect();
    let greedy = SamplingParams::default();
    // Warm-up (pipeline compilation, first-touch of buffers).
    pollster::block_on(
        m.engine
            .forward(&prompt[..prompt.len().min(8)], Some((&greedy, &[], 0))),
    )?;
    m.engine.reset();
    let t = Instant::now();
    let mut next = pollster::block_on(m.engine.forward(&prompt, Some((&greedy, &[], 0))))?.unwrap();
    let prefill_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut n = 0;
    while n < gen_tokens && m.engine.pos < m.engine.opts.max_context {
        next = pollster::block_on(m.engine.forward(&[next], Some((&greedy, &[], 0))))?.unwrap();
        n += 1;
    }
    let decode_s = t.elapsed().as_secs_f64();
    let copy_gbs = copy_bandwidth(&m.engine.gpu, 256 << 20, 5)?;
    let bytes_per_token = m.engine.weight_bytes_per_token();
    let decode_tps = n as f64 / decode_s;
    let decode_gbs = bytes_per_token as f64 * decode_tps / 1e9;
    let mut v = serde_json::json!({
        "model": model,
        "adapter": m.engine.gpu.adapter_name(),
        "load_s": load_s,
        "prompt_tokens": prompt_tokens,
        "gen_tokens": n,
        "prefill_tokens_per_s": prompt_tokens as f64 / prefill_s,
        "time_to_first_token_s": prefill_s,
        "decode_tokens_per_s": decode_tps,
        "weight_bytes_per_token": bytes_per_token,
        "expert_bytes_total": m.engine.expert_bytes().0,
        "expert_bytes_per_token": m.engine.expert_bytes().1,
        "decode_weight_gb_per_s": decode_gbs,
        "copy_gb_per_s": copy_gbs,
        "decode_bandwidth_ratio": decode_gbs / copy_gbs,
    });
    if profile {
        let p = m.engine.profile_decode(next, 20);
        v["decode_profile_ms"] = p
            .iter()
            .map(|(k, ms)| ((*k).to_string(), (*ms).into()))
            .collect::<serde_json::Map<_, _>>()
            .into();
    }
    if json {
        println!("{v}");
    } else {
        println!("{}", serde_json::to_string_pretty(&v)?);
    }
    Ok(())
}
