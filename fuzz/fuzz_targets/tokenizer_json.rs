#![no_main]
// See crates/webmoe-fuzz: webmoe_fuzz::tokenizer_json. The tokenizers crate panics on some malformed
// files; webmoe catches that panic and reports an invalid file, so libFuzzer's abort-on-panic hook is
// replaced by a silent one here: a panic that webmoe does not catch still unwinds out of the target,
// which libfuzzer-sys reports as a crash.
libfuzzer_sys::fuzz_target!(
    init: { std::panic::set_hook(Box::new(|_| {})); },
    |data: &[u8]| webmoe_fuzz::tokenizer_json(data)
);
