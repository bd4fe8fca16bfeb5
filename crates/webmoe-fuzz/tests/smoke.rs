//! Every fuzz target on its seeds and on a few thousand deterministic mutations of them (bit flips,
//! byte overwrites with boundary values, truncations, splices, length-field inflation): no panic. The
//! long coverage-guided runs are `cargo +nightly fuzz run TARGET` in `fuzz/` (README).

use webmoe_fuzz::{seeds, TARGETS};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut Rng, seed: &[u8], other: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        if v.is_empty() {
            v.push(0);
        }
        let i = rng.below(v.len());
        match rng.below(6) {
            0 => v[i] ^= 1 << rng.below(8),
            1 => v[i] = [0, 1, 0x7f, 0x80, 0xff][rng.below(5)],
            2 => v.truncate(i),
            3 => {
                let j = rng.below(other.len().max(1));
                v.splice(i..i, other[j.min(other.len())..].iter().take(64).copied());
            }
            // A little-endian u64 of a huge or boundary value (GGUF counts and lengths).
            4 => {
                let x: u64 = [u64::MAX, 1 << 62, 1 << 36, 0, 0xffff_ffff][rng.below(5)];
                for (k, b) in x.to_le_bytes().iter().enumerate() {
                    if i + k < v.len() {
                        v[i + k] = *b;
                    }
                }
            }
            _ => {
                let c = v[i];
                v.insert(i, c);
            }
        }
    }
    v
}

#[test]
fn every_target_survives_its_seeds_and_their_mutations() {
    for t in TARGETS {
        let s = seeds(t);
        assert!(!s.is_empty(), "{} has no seeds", t.name);
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ t.name.len() as u64);
        for seed in &s {
            (t.run)(seed);
        }
        let rounds = if t.name.starts_with("gguf") || t.name == "chat_template" {
            1500
        } else {
            300
        };
        for _ in 0..rounds {
            let a = &s[rng.below(s.len())];
            let b = &s[rng.below(s.len())];
            let m = mutate(&mut rng, a, b);
            (t.run)(&m);
        }
    }
}

/// Inputs the long fuzz runs found crashing (`tests/regressions/TARGET/`), each fixed: they run clean.
#[test]
fn every_crash_found_by_fuzzing_runs_clean() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/regressions");
    let mut n = 0;
    for t in TARGETS {
        let Ok(entries) = std::fs::read_dir(dir.join(t.name)) else {
            continue;
        };
        for e in entries.flatten() {
            (t.run)(&std::fs::read(e.path()).unwrap());
            n += 1;
        }
    }
    assert!(n > 0, "the regression inputs are missing");
}
