//! Writes a synthetic random Llama GGUF (for benchmarks and experiments):
//! `cargo run --release -p webmoe-cli --example synth -- OUT.gguf TYPE HIDDEN LAYERS FFN VOCAB [EXPERTS USED]`.
//! With EXPERTS and USED the feed-forward blocks are Mixtral-style experts, each FFN wide; the dense
//! model with the same active parameters per token has FFN = USED × that width.

use webmoe_core::quant::GgmlType;
use webmoe_core::synthetic::SyntheticLlama;

fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.len() != 7 && a.len() != 9 {
        eprintln!("usage: synth OUT.gguf TYPE HIDDEN LAYERS FFN VOCAB [EXPERTS USED]");
        std::process::exit(2);
    }
    let ty = *GgmlType::ALL
        .iter()
        .find(|t| t.name() == a[2])
        .expect("unknown type");
    let n = |i: usize| a[i].parse::<u64>().expect("a number");
    let hidden = n(3);
    let spec = SyntheticLlama {
        vocab: n(6),
        hidden,
        layers: n(4),
        heads: hidden / 64,
        kv_heads: (1..=(hidden / 64 / 3).max(1))
            .rev()
            .find(|k| (hidden / 64) % k == 0)
            .unwrap(),
        ffn: n(5),
        ty,
        untied: false,
        context: 4096,
        seed: 1,
        experts: (a.len() == 9).then(|| (n(7), n(8))),
    };
    std::fs::write(&a[1], spec.writer().to_bytes()).expect("write");
}
