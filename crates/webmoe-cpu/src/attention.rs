//! The KV cache (f32 or f16 per layer, a ring for chunked layers) and causal GQA attention over it.

use half::f16;
use webmoe_core::options::KvDtype;

/// f16 → f32 without a conversion instruction: the f16 bits shifted into an f32's exponent/mantissa
/// place and rescaled by 2^112 (exact for normals and subnormals; infinities and NaNs stay so).
#[inline(always)]
fn f16_to_f32(h: u16) -> f32 {
    let mag = f32::from_bits(((h & 0x7fff) as u32) << 13) * f32::from_bits(0x7780_0000);
    let mag = if h & 0x7c00 == 0x7c00 {
        f32::from_bits(0x7f80_0000 | (((h & 0x3ff) as u32) << 13))
    } else {
        mag
    };
    if h & 0x8000 != 0 {
        -mag
    } else {
        mag
    }
}

enum Store {
    F32(Vec<f32>),
    F16(Vec<u16>),
}

impl Store {
    fn write(&mut self, at: usize, x: &[f32]) {
        match self {
            Store::F32(v) => v[at..at + x.len()].copy_from_slice(x),
            Store::F16(v) => {
                for (o, &x) in v[at..at + x.len()].iter_mut().zip(x) {
                    *o = f16::from_f32(x).to_bits();
                }
            }
        }
    }

    fn read(&self, at: usize, out: &mut [f32]) {
        match self {
            Store::F32(v) => out.copy_from_slice(&v[at..at + out.len()]),
            Store::F16(v) => {
                let n = out.len();
                for (o, &h) in out.iter_mut().zip(&v[at..at + n]) {
                    *o = f16_to_f32(h);
                }
            }
        }
    }
}

/// One layer's keys and values: `slots` positions of `kv_dim` values; position `p` in slot `p % slots`.
pub struct LayerCache {
    k: Store,
    v: Store,
    slots: usize,
    kv_dim: usize,
}

impl LayerCache {
    /// An empty cache.
    pub fn new(slots: usize, kv_dim: usize, dtype: KvDtype) -> Self {
        let n = slots * kv_dim;
        let store = || match dtype {
            KvDtype::F32 => Store::F32(vec![0.0; n]),
            KvDtype::F16 => Store::F16(vec![0; n]),
        };
        LayerCache {
            k: store(),
            v: store(),
            slots,
            kv_dim,
        }
    }

    /// Stores the keys and values of position `pos`.
    pub fn store(&mut self, pos: usize, k: &[f32], v: &[f32]) {
        let at = (pos % self.slots) * self.kv_dim;
        self.k.write(at, k);
        self.v.write(at, v);
    }
}

/// The attention shape of a model.
#[derive(Clone, Copy)]
pub struct Shape {
    /// Query heads.
    pub n_heads: usize,
    /// KV heads.
    pub n_kv_heads: usize,
    /// Per-head dimension.
    pub head_dim: usize,
    /// Chunked attention: a query sees only keys of its own chunk.
    pub chunk: Option<usize>,
}

/// Attention of the query heads sharing KV head `g` for the query at position `pos`: reads the cached
/// keys and values of the positions it sees and writes `out` (`group` heads of `head_dim`). `q` holds
/// those heads' queries; `scores` is scratch of at least `pos + 1` floats per head.
pub fn attend_group(
    cache: &LayerCache,
    s: Shape,
    g: usize,
    pos: usize,
    q: &[f32],
    out: &mut [f32],
    scores: &mut Vec<f32>,
) {
    let hd = s.head_dim;
    let group = s.n_heads / s.n_kv_heads;
    let first = s.chunk.map_or(0, |c| pos / c * c);
    let n = pos + 1 - first;
    let scale = 1.0 / (hd as f32).sqrt();
    scores.clear();
    scores.resize(n * group, 0.0);
    let mut row = vec![0f32; hd];
    for j in 0..n {
        let at = ((first + j) % cache.slots) * cache.kv_dim + g * hd;
        cache.k.read(at, &mut row);
        for h in 0..group {
            scores[h * n + j] =
                crate::kernels::scalar::dot_f32(&q[h * hd..(h + 1) * hd], &row) * scale;
        }
    }
    for h in 0..group {
        let sc = &mut scores[h * n..(h + 1) * n];
        let m = sc.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        let mut sum = 0f32;
        for v in sc.iter_mut() {
            *v = libm::expf(*v - m);
            sum += *v;
        }
        let inv = 1.0 / sum;
        sc.iter_mut().for_each(|v| *v *= inv);
    }
    out.iter_mut().for_each(|o| *o = 0.0);
    for j in 0..n {
        let at = ((first + j) % cache.slots) * cache.kv_dim + g * hd;
        cache.v.read(at, &mut row);
        for h in 0..group {
            let p = scores[h * n + j];
            for (o, &v) in out[h * hd..(h + 1) * hd].iter_mut().zip(&row) {
                *o += p * v;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::f16_to_f32;
    use half::f16;

    #[test]
    fn f16_conversion_is_exact_for_every_value() {
        for h in 0..=u16::MAX {
            let want = f16::from_bits(h).to_f32();
            let got = f16_to_f32(h);
            assert!(
                got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
                "{h:#06x}: {got} vs {want}"
            );
        }
    }
}
