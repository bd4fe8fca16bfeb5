#![no_main]
// See crates/webmoe-fuzz: webmoe_fuzz::gguf_header.
libfuzzer_sys::fuzz_target!(|data: &[u8]| webmoe_fuzz::gguf_header(data));
