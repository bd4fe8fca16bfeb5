//! Building and using many tokenizers in one thread does not grow memory: the tokenizers library's
//! BPE word cache lives in a per-thread map that never drops an instance's entry, so with it on,
//! each tokenizer built left its words behind (the `chat_template` fuzz target ran out of memory
//! after 86,000 executions). Its own test binary, so no other test allocates meanwhile.

use webmoe_core::tokenizer::{SpecialTokens, Tokenizer};

/// Resident memory of this process in bytes (Linux).
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("Linux /proc");
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[test]
fn building_many_tokenizers_does_not_keep_their_words() {
    let json = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/tiny_tokenizer.json"
    ))
    .unwrap();
    let special = || SpecialTokens {
        bos: None,
        add_bos: false,
        eog: vec![],
        bos_text: String::new(),
        eos_text: String::new(),
    };
    // 300 distinct words per tokenizer, each new to it.
    let text: String = (0..300).map(|i| format!("w{i}x{} ", i * 7919)).collect();
    let round = |n: usize| {
        for _ in 0..n {
            let t = Tokenizer::from_json(&json, special(), None).unwrap();
            t.encode(&text, false, false).unwrap();
        }
    };
    round(50); // warm up allocator pools
    let before = rss();
    round(1500);
    let grown = rss().saturating_sub(before);
    // With the cache on this grew by about 1500 × 300 words (> 50 MB).
    assert!(
        grown < 16 << 20,
        "memory grew by {} MB over 1500 tokenizers",
        grown >> 20
    );
}
