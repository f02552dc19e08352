//! Fuzz target: see `shmkit_fuzz::objects::msg`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| shmkit_fuzz::objects::msg::run(data));
