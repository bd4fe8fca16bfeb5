#![no_main]
// See crates/webmoe-fuzz: webmoe_fuzz::safetensors_header.
libfuzzer_sys::fuzz_target!(|data: &[u8]| webmoe_fuzz::safetensors_header(data));
