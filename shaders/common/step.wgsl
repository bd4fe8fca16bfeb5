// Per-call values shared by every kernel of a forward pass (written once per prefill chunk / decode step).
struct Step {
    n_tokens: u32, // tokens in this call
    pos0: u32,     // absolute position of the first token
    n_splits: u32, // key-range splits of the attention kernel
    pad: u32,
}
