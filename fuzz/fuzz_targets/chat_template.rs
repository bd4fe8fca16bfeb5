#![no_main]
// See crates/webmoe-fuzz: webmoe_fuzz::chat_template.
libfuzzer_sys::fuzz_target!(|data: &[u8]| webmoe_fuzz::chat_template(data));
