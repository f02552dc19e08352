//! Fuzz target: see `shmkit_fuzz::objects::stamped`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| shmkit_fuzz::objects::stamped::run(data));
