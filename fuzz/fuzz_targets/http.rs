#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| atacama_core::testing::fuzz::http(data));
