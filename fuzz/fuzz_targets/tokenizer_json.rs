#![no_main]
// See crates/webmoe-fuzz: webmoe_fuzz::tokenizer_json.
libfuzzer_sys::fuzz_target!(|data: &[u8]| webmoe_fuzz::tokenizer_json(data));
