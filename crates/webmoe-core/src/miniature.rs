//! A miniature of a model: the same family switches (RoPE style and NoPE layers, q/k norms, biases,
//! chunked attention, temperature tuning, routing, shared experts) and the same weight type for every
//! tensor, at tiny dimensions, with random weights. The GPU self-test runs it on the device and on the
//! CPU reference before a real model is downloaded: it uses every kernel variant the real model will.

use crate::gguf::writer::GgufWriter;
use crate::gguf::{parse_header, GgufHeader, GgufValue, HeaderParse};
use crate::model::{AttnTemperature, ModelDesc};
use crate::quant::{random_blocks, GgmlType};
use half::{bf16, f16};

/// Width of every matrix of a miniature (a multiple of 256, so every block type fits).
pub const WIDTH: usize = 256;
/// Positions a miniature holds.
pub const CONTEXT: usize = 32;

/// A miniature model: description, header and the GGUF bytes the header describes.
pub struct Miniature {
    /// Its description (the real model's switches at tiny sizes).
    pub desc: ModelDesc,
    /// Its GGUF header.
    pub header: GgufHeader,
    /// The whole GGUF file.
    pub bytes: Vec<u8>,
}

/// The miniature of `desc`, with each tensor of the type `type_of(name)` gives (the real model's).
/// Up to four blocks are kept, so a NoPE layer every fourth block is included.
pub fn miniature(desc: &ModelDesc, type_of: impl Fn(&str) -> GgmlType, seed: u64) -> Miniature {
    let real = &desc.config;
    let mut c = real.clone();
    let ratio = (real.n_heads / real.n_kv_heads.max(1)).clamp(1, 8);
    c.n_heads = 8;
    c.n_kv_heads = 8 / if 8 % ratio == 0 { ratio } else { 8 };
    c.head_dim = WIDTH / 8;
    c.hidden = WIDTH;
    c.ffn_dim = WIDTH;
    c.vocab_size = WIDTH;
    c.context_length = CONTEXT;
    c.rope_dim = ((real.rope_dim * c.head_dim / real.head_dim.max(1)) & !1).max(2);
    c.rope_freq_divisors = real.rope_freq_divisors.as_ref().map(|d| {
        (0..c.rope_dim / 2)
            .map(|i| d[i * d.len() / (c.rope_dim / 2)])
            .collect()
    });
    c.n_layers = real.n_layers.min(4);
    if let Some(m) = &mut c.moe {
        m.n_used = m.n_used.min(2);
        m.n_experts = m.n_experts.clamp(m.n_used, 4);
        m.expert_ffn_dim = WIDTH;
    }
    // Small chunks and a short temperature period, so a few tokens cross a chunk boundary and
    // change the temperature factor.
    c.attn_chunk = c.attn_chunk.map(|_| 4);
    c.temperature = c.temperature.map(|t| AttnTemperature {
        floor_scale: 3.0,
        ..t
    });
    let mut layers: Vec<_> = desc.layers[..c.n_layers].to_vec();
    for l in &mut layers {
        if let Some(s) = &mut l.shared {
            s.width = WIDTH;
        }
    }
    let mini = ModelDesc {
        config: c,
        layers,
        ..desc.clone()
    };
    let mut next = crate::synthetic::random_u32s(seed);
    let mut w = GgufWriter::default();
    w.kv(
        "general.architecture",
        GgufValue::Str(mini.config.arch.clone()),
    );
    for (name, dims) in mini.expected_tensors() {
        let n: u64 = dims.iter().product();
        if dims.len() == 1 || (dims.len() == 2 && dims[1] == 1) {
            // Norm weights near 1, biases and gates small: F32, as GGUF requires.
            let norm = name.contains("norm");
            let data = (0..n)
                .flat_map(|_| {
                    let r = (next() % 2001) as f32 / 1000.0 - 1.0;
                    (if norm { 1.0 + 0.1 * r } else { 0.1 * r }).to_le_bytes()
                })
                .collect();
            w.tensor(&name, &dims, GgmlType::F32, data);
            continue;
        }
        let ty = type_of(&name);
        let mut data = random_blocks(ty, (n / ty.block_elems()) as usize, &mut next);
        // Scale the blocks down so activations stay of order one (random full-range blocks make
        // near one-hot attention, where rounding noise decides).
        let bb = ty.block_bytes() as usize;
        for blk in data.chunks_exact_mut(bb) {
            for &o in ty.f16_fields() {
                let v = f16::from_bits(u16::from_le_bytes([blk[o], blk[o + 1]])).to_f32() * 0.1;
                blk[o..o + 2].copy_from_slice(&f16::from_f32(v).to_bits().to_le_bytes());
            }
            match ty {
                GgmlType::F32 => {
                    let v = f32::from_le_bytes([blk[0], blk[1], blk[2], blk[3]]) * 0.1;
                    blk.copy_from_slice(&v.to_le_bytes());
                }
                GgmlType::F16 => {
                    let v = f16::from_bits(u16::from_le_bytes([blk[0], blk[1]])).to_f32() * 0.1;
                    blk.copy_from_slice(&f16::from_f32(v).to_bits().to_le_bytes());
                }
                GgmlType::BF16 => {
                    let v = bf16::from_bits(u16::from_le_bytes([blk[0], blk[1]])).to_f32() * 0.1;
                    blk.copy_from_slice(&bf16::from_f32(v).to_bits().to_le_bytes());
                }
                _ => {}
            }
        }
        w.tensor(&name, &dims, ty, data);
    }
    let bytes = w.to_bytes();
    let HeaderParse::Done(header) =
        parse_header(&bytes, bytes.len() as u64).expect("a miniature is a valid GGUF")
    else {
        unreachable!("the whole file is given")
    };
    Miniature {
        desc: mini,
        header: *header,
        bytes,
    }
}
