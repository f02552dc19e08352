//! Fuzz target: the `from_fd` path, see `shmkit_fuzz::paths`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    shmkit_fuzz::paths::run(shmkit_fuzz::open::Path::FromFd, data);
});
