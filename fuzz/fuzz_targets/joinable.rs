//! Fuzz target: see `shmkit_fuzz::objects::joinable`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| shmkit_fuzz::objects::joinable::run(data));
