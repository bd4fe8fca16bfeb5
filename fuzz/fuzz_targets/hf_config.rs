#![no_main]
// See crates/webmoe-fuzz: webmoe_fuzz::hf_config.
libfuzzer_sys::fuzz_target!(|data: &[u8]| webmoe_fuzz::hf_config(data));
