//! Mixture-of-Experts routing semantics (`docs/models.md` §2–3) and its CPU reference: which experts a
//! token goes to and with what weight.
//!
//! - Mixtral, Qwen2-MoE, Qwen3-MoE, OLMoE: softmax over all experts in f32, the top k, optionally
//!   renormalized over the k; the weights scale the experts' **outputs**.
//! - Llama 4: the top k of the raw logits, weight `sigmoid(logit)`, never renormalized; the weights
//!   scale the experts' **input**.
//!
//! Ties in the logits go to the lower expert id.

pub use crate::model::Routing;

/// Routes each token: `logits` is `[tokens, n_experts]`; returns `(ids, weights)`, each `[tokens, k]`,
/// experts in order of decreasing logit (ties: lower id first).
///
/// # Panics
/// If `k` is 0 or greater than `n_experts`, or `logits` is not a multiple of `n_experts` long.
pub fn route(logits: &[f32], n_experts: usize, k: usize, routing: Routing) -> (Vec<u32>, Vec<f32>) {
    assert!(k >= 1 && k <= n_experts && logits.len().is_multiple_of(n_experts));
    let mut ids = Vec::new();
    let mut weights = Vec::new();
    for row in logits.chunks(n_experts) {
        let mut order: Vec<usize> = (0..n_experts).collect();
        // Stable sort: equal logits keep the lower id first.
        order.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
        let top = &order[..k];
        let w: Vec<f32> = match routing {
            Routing::Softmax { renorm } => {
                let m = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
                let denom: f32 = row.iter().map(|&v| libm::expf(v - m)).sum();
                let mut w: Vec<f32> = top
                    .iter()
                    .map(|&e| libm::expf(row[e] - m) / denom)
                    .collect();
                if renorm {
                    let s: f32 = w.iter().sum();
                    w.iter_mut().for_each(|v| *v /= s);
                }
                w
            }
            Routing::SigmoidInput => top
                .iter()
                .map(|&e| 1.0 / (1.0 + libm::expf(-row[e])))
                .collect(),
        };
        ids.extend(top.iter().map(|&e| e as u32));
        weights.extend(w);
    }
    (ids, weights)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_routing_picks_the_largest_and_breaks_ties_by_lower_id() {
        let logits = [0.5, 2.0, 2.0, -1.0];
        let (ids, w) = route(&logits, 4, 2, Routing::Softmax { renorm: false });
        assert_eq!(ids, [1, 2]);
        let denom: f32 = logits.iter().map(|v| (v - 2.0f32).exp()).sum();
        assert!((w[0] - 1.0 / denom).abs() < 1e-7 && w[0] == w[1]);
        let (_, w) = route(&logits, 4, 2, Routing::Softmax { renorm: true });
        assert!((w[0] - 0.5).abs() < 1e-7 && (w[1] - 0.5).abs() < 1e-7);
    }

    #[test]
    fn sigmoid_routing_weights_are_not_renormalized() {
        let (ids, w) = route(&[0.0, 3.0, 1.0], 3, 2, Routing::SigmoidInput);
        assert_eq!(ids, [1, 2]);
        assert!((w[0] - 1.0 / (1.0 + (-3.0f32).exp())).abs() < 1e-7);
        assert!((w[1] - 1.0 / (1.0 + (-1.0f32).exp())).abs() < 1e-7);
    }
}
