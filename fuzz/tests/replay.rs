//! Replays every committed input (`corpus/<target>/`) through its target
//! under a plain `cargo test`: a quick check, without nightly or the
//! sanitizer, that no seed or kept regression input fails.

use std::fs;
use std::path::Path;

use shmkit_fuzz::open::Path as OpenPath;
use shmkit_fuzz::{objects, paths};

/// The target named `name`: it runs an input and says whether it opened
/// a segment (object targets: always true).
fn target(name: &str) -> Option<fn(&[u8]) -> bool> {
    fn object(run: fn(&[u8]), data: &[u8]) -> bool {
        run(data);
        true
    }
    Some(match name {
        "mutex" => |d| object(objects::mutex::run, d),
        "reentrant" => |d| object(objects::reentrant::run, d),
        "rwlock" => |d| object(objects::rwlock::run, d),
        "semaphore" => |d| object(objects::semaphore::run, d),
        "event" => |d| object(objects::event::run, d),
        "barrier" => |d| object(objects::barrier::run, d),
        "condvar" => |d| object(objects::condvar::run, d),
        "ring" => |d| object(objects::ring::run, d),
        "mpmc" => |d| object(objects::mpmc::run, d),
        "msg" => |d| object(objects::msg::run, d),
        "joinable" => |d| object(objects::joinable::run, d),
        "pipe" => |d| object(objects::pipe::run, d),
        "stamped" => |d| object(objects::stamped::run, d),
        "map" => |d| object(objects::map::run, d),
        "bytemap" => |d| object(objects::bytemap::run, d),
        "condition" => |d| object(objects::condition::run, d),
        "open" => |d| paths::run(OpenPath::Open, d),
        "open_read_only" => |d| paths::run(OpenPath::OpenReadOnly, d),
        "open_or_create" => |d| paths::run(OpenPath::OpenOrCreate, d),
        "from_fd" => |d| paths::run(OpenPath::FromFd, d),
        _ => return None,
    })
}

#[test]
fn every_committed_input_runs_clean() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let mut replayed = 0;
    for dir in fs::read_dir(&root).expect("fuzz/corpus") {
        let dir = dir.expect("corpus entry").path();
        let name = dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        let run = target(&name).unwrap_or_else(|| panic!("corpus/{name}: no such target"));
        for file in fs::read_dir(&dir).expect("target corpus") {
            let file = file.expect("corpus file").path();
            let data = fs::read(&file).expect("read input");
            println!("{}", file.display());
            let opened = run(&data);
            // A seed is an honest segment verbatim: if it no longer opens,
            // the segment format or the handles changed and the seeds lead
            // the fuzzer nowhere: regenerate them (examples/seeds.rs).
            let is_seed = file
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("seed-"));
            assert!(
                opened || !is_seed,
                "{} no longer opens: regenerate the seeds",
                file.display()
            );
            replayed += 1;
        }
    }
    assert!(
        replayed >= 16,
        "only {replayed} inputs found under {}",
        root.display()
    );
}

/// Every open-path input starts from an honest segment of its handle for
/// its parameter byte: each must be makeable, or the target panics on
/// inputs that forge nothing (as it did when the MPMC queue began to
/// require power-of-two capacities).
#[test]
fn every_handle_makes_an_honest_segment_for_every_parameter() {
    for h in 0..shmkit_fuzz::open::HANDLES.len() {
        for param in 0..=u8::MAX {
            let segment = shmkit_fuzz::open::honest_segment(h, param);
            assert!(segment.len() > 256, "handle {h}, parameter {param}");
        }
    }
}
