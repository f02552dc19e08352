//! Replays every committed input (`corpus/<target>/`) through its target
//! under a plain `cargo test`: a quick check, without nightly or the
//! sanitizer, that no seed or kept regression input fails.

use std::fs;
use std::path::Path;

use shmkit_fuzz::open::Path as OpenPath;
use shmkit_fuzz::{objects, paths};

fn target(name: &str) -> Option<fn(&[u8])> {
    Some(match name {
        "mutex" => objects::mutex::run,
        "reentrant" => objects::reentrant::run,
        "rwlock" => objects::rwlock::run,
        "semaphore" => objects::semaphore::run,
        "event" => objects::event::run,
        "barrier" => objects::barrier::run,
        "condvar" => objects::condvar::run,
        "ring" => objects::ring::run,
        "mpmc" => objects::mpmc::run,
        "pipe" => objects::pipe::run,
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
            run(&data);
            replayed += 1;
        }
    }
    assert!(
        replayed >= 14,
        "only {replayed} inputs found under {}",
        root.display()
    );
}
