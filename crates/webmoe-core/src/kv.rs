//! The record of what a KV cache holds: the token ids at positions `0..len`, in order. Every engine
//! keeps one, so a request whose prompt starts with those tokens prefills only the rest (a chat's next
//! turn, a regenerated answer, a shared system prompt). Going back to a shorter prefix is free for
//! full-attention layers (later positions are simply overwritten); a chunked-attention layer keeps
//! only a ring of positions, so [`CachedTokens::rewind`] falls back to the chunk start when the ring
//! no longer holds what the first new query needs.

use crate::plan::LayerPlan;

/// Token ids whose keys and values the cache holds, and the ring sizes that bound going back.
#[derive(Debug, Clone, Default)]
pub struct CachedTokens {
    tokens: Vec<u32>,
    /// `(chunk, slots)` of each chunked-attention layer whose ring is shorter than the context.
    rings: Vec<(usize, usize)>,
}

impl CachedTokens {
    /// An empty record for a model with `plans`, a cache of `ctx` positions and prefill calls of up to
    /// `prefill_chunk` tokens (the ring rule of [`crate::plan::AttentionPlan::cache_slots`]).
    pub fn new(plans: &[LayerPlan], ctx: usize, prefill_chunk: usize) -> Self {
        let mut rings: Vec<(usize, usize)> = plans
            .iter()
            .filter_map(|l| {
                let c = l.attention.chunk?;
                let slots = l.attention.cache_slots(ctx, prefill_chunk);
                (slots < ctx).then_some((c, slots))
            })
            .collect();
        rings.sort_unstable();
        rings.dedup();
        CachedTokens {
            tokens: Vec::new(),
            rings,
        }
    }

    /// The cached token ids, position 0 first.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// Positions held (the next token's position).
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Records that `ids` were run at the next positions.
    pub fn extend(&mut self, ids: &[u32]) {
        self.tokens.extend_from_slice(ids);
    }

    /// Forgets everything (after a reset, or when a failed call left the cache in doubt).
    pub fn clear(&mut self) {
        self.tokens.clear();
    }

    /// The longest prefix of at most `n` tokens the cache can go back to: `n` itself unless a
    /// chunked-attention ring has overwritten keys that position `n`'s chunk still needs.
    pub fn keepable(&self, n: usize) -> usize {
        let len = self.tokens.len();
        let mut keep = n.min(len);
        // Going back for one ring can break another's condition; `keep` only shrinks, so this ends.
        loop {
            let before = keep;
            for &(chunk, slots) in &self.rings {
                let start = keep - keep % chunk;
                // Positions below `len - slots` were overwritten in this layer's ring.
                if start != keep && start + slots < len {
                    keep = start;
                }
            }
            if keep == before {
                return keep;
            }
        }
    }

    /// Keeps the first [`CachedTokens::keepable`]`(n)` tokens and returns how many that is.
    pub fn rewind(&mut self, n: usize) -> usize {
        let keep = self.keepable(n);
        self.tokens.truncate(keep);
        keep
    }

    /// Tokens `prompt` shares with the cache from the start, at most `prompt.len() - 1` (the last
    /// prompt token always runs, for its logits), as far as the cache can go back.
    pub fn reusable(&self, prompt: &[u32]) -> usize {
        let common = self
            .tokens
            .iter()
            .zip(prompt)
            .take_while(|(a, b)| a == b)
            .count();
        self.keepable(common.min(prompt.len().saturating_sub(1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(rings: Vec<(usize, usize)>, len: usize) -> CachedTokens {
        CachedTokens {
            tokens: (0..len as u32).collect(),
            rings,
        }
    }

    #[test]
    fn full_attention_goes_back_anywhere() {
        let r = record(vec![], 100);
        assert_eq!(r.keepable(37), 37);
        assert_eq!(r.keepable(500), 100);
        assert_eq!(r.reusable(&[0, 1, 2, 9]), 3);
        assert_eq!(
            r.reusable(&[0, 1, 2]),
            2,
            "the last prompt token always runs"
        );
        assert_eq!(r.reusable(&[5]), 0);
    }

    #[test]
    fn a_ring_falls_back_to_the_chunk_start_once_overwritten() {
        // Chunk 8, ring of 8 + 4 slots: after 30 positions, 18..29 are intact.
        let r = record(vec![(8, 12)], 30);
        assert_eq!(r.keepable(27), 27, "needs 24..26: intact");
        assert_eq!(
            r.keepable(20),
            16,
            "needs 16..19, 16 and 17 were overwritten"
        );
        assert_eq!(r.keepable(16), 16, "a chunk start needs nothing before it");
        // Shortly after the ring wrapped, everything it needs is still there.
        let r = record(vec![(8, 12)], 13);
        assert_eq!(r.keepable(10), 10);
    }
}
