//! Issue 8, item 1, as a matrix: for every kind × every open path
//! (`open`, `open_read_only` where the kind has it, `open_or_create`,
//! `from_fd`), forge each header field — parameters, payload length, total
//! length, kind, fingerprint, version, state, payload offset — alone and in
//! consistent combinations; the opener must get an error, or a handle whose
//! every operation stays in bounds. Never a signal: each attack runs in a
//! forked child, and a child that dies by a signal fails the test.

mod common;

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::time::Duration;

use common::shm_path;
use shmkit_core::header::HEADER_LEN;
use shmkit_posix::array::SharedSliceExt;
use shmkit_posix::sync::{
    Barrier, Condition, Event, Lock, LockedArray, Mutex, RLock, RwLock, Semaphore,
};
use shmkit_posix::{Array, Value};
use shmkit_testkit::{fork, unique_name, Exit};

// Header field offsets (see `shmkit_core::header`).
const VERSION: u64 = 8;
const STATE: u64 = 12;
const KIND: u64 = 16;
const PAYLOAD_OFFSET: u64 = 24;
const TOTAL_LEN: u64 = 32;
const PAYLOAD_LEN: u64 = 40;
const TYPE_HASH: u64 = 48;
const SIZE: u64 = 56;
const ALIGN: u64 = 64;
const PARAM0: u64 = 72;
const PARAM1: u64 = 80;

const TINY: Duration = Duration::from_millis(2);

/// How an attacker gets at the object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Path {
    Open,
    OpenReadOnly,
    OpenOrCreate,
    FromFd,
}

/// One object kind: how to make an honest one, and how to open it by each
/// path and use whatever opens.
struct Case {
    name: &'static str,
    create: fn(&str),
    memfd: fn() -> OwnedFd,
    attack: fn(Path, &str, Option<OwnedFd>),
    read_only: bool,
}

/// Uses an array's every element, and one past the end.
macro_rules! use_slice {
    ($a:expr) => {{
        let a = $a;
        let n = a.len();
        for i in [0, n / 2, n.saturating_sub(1), n, usize::MAX] {
            let _ = a.get(i);
        }
        let _ = a.to_vec();
    }};
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "array",
            create: |n| Array::<u64>::create(n, 4).unwrap().persist(),
            memfd: || fd_of(Array::<u64>::memfd(4).unwrap().fd()),
            attack: |p, n, fd| match p {
                Path::Open => {
                    if let Ok(a) = Array::<u64>::open(n) {
                        use_slice!(&a);
                        let _ = a.set(a.len() - 1, 1);
                    }
                }
                Path::OpenReadOnly => {
                    if let Ok(a) = Array::<u64>::open_read_only(n) {
                        use_slice!(&a);
                    }
                }
                Path::OpenOrCreate => {
                    for len in [4, 0x10_0000] {
                        if let Ok(a) = Array::<u64>::open_or_create(n, len) {
                            use_slice!(&a);
                            let _ = a.set(a.len() - 1, 1);
                        }
                    }
                }
                Path::FromFd => {
                    if let Ok(a) = Array::<u64>::from_fd(fd.unwrap()) {
                        use_slice!(&a);
                        let _ = a.set(a.len() - 1, 1);
                    }
                }
            },
            read_only: true,
        },
        Case {
            name: "value",
            create: |n| Value::<u64>::create(n, 4).unwrap().persist(),
            memfd: || fd_of(Value::<u64>::memfd(4).unwrap().fd()),
            attack: |p, n, fd| {
                let v = match p {
                    Path::Open => Value::<u64>::open(n).ok(),
                    Path::OpenReadOnly => {
                        let _ = Value::<u64>::open_read_only(n).map(|v| v.get());
                        None
                    }
                    Path::OpenOrCreate => Value::<u64>::open_or_create(n, 4).ok(),
                    Path::FromFd => Value::<u64>::from_fd(fd.unwrap()).ok(),
                };
                if let Some(v) = v {
                    v.set(v.get().wrapping_add(1));
                }
            },
            read_only: true,
        },
        Case {
            name: "locked array",
            create: |n| LockedArray::<u32>::create(n, 4).unwrap().persist(),
            memfd: || fd_of(LockedArray::<u32>::memfd(4).unwrap().fd()),
            attack: |p, n, fd| {
                let a = match p {
                    Path::Open | Path::OpenReadOnly => LockedArray::<u32>::open(n).ok(),
                    Path::OpenOrCreate => LockedArray::<u32>::open_or_create(n, 0x10_0000)
                        .ok()
                        .or_else(|| LockedArray::<u32>::open_or_create(n, 4).ok()),
                    Path::FromFd => LockedArray::<u32>::from_fd(fd.unwrap()).ok(),
                };
                if let Some(a) = a {
                    if let Ok(g) = a.lock_timeout(TINY) {
                        use_slice!(*g);
                        let _ = g.set(g.len() - 1, 1);
                    }
                    let _ = a.try_recover();
                }
            },
            read_only: false,
        },
        Case {
            name: "mutex",
            create: |n| Mutex::<u64>::create(n, 1).unwrap().persist(),
            memfd: || fd_of(Mutex::<u64>::memfd(1).unwrap().fd()),
            attack: |p, n, fd| {
                let m = open_sync(
                    p,
                    n,
                    fd,
                    Mutex::<u64>::open,
                    |n| Mutex::<u64>::open_or_create(n, 1),
                    Mutex::<u64>::from_fd,
                );
                if let Some(m) = m {
                    if let Ok(g) = m.lock_timeout(TINY) {
                        g.update(|v| *v += 1);
                    }
                    let _ = m.try_recover();
                }
            },
            read_only: false,
        },
        Case {
            name: "lock",
            create: |n| Lock::create(n, ()).unwrap().persist(),
            memfd: || fd_of(Lock::memfd(()).unwrap().fd()),
            attack: |p, n, fd| {
                if let Some(l) = open_sync(
                    p,
                    n,
                    fd,
                    Lock::open,
                    |n| Lock::open_or_create(n, ()),
                    Lock::from_fd,
                ) {
                    let _ = l.lock_timeout(TINY);
                    let _ = l.try_lock();
                }
            },
            read_only: false,
        },
        Case {
            name: "rlock",
            create: |n| RLock::create(n, ()).unwrap().persist(),
            memfd: || fd_of(RLock::memfd(()).unwrap().fd()),
            attack: |p, n, fd| {
                if let Some(l) = open_sync(
                    p,
                    n,
                    fd,
                    RLock::open,
                    |n| RLock::open_or_create(n, ()),
                    RLock::from_fd,
                ) {
                    if let Ok(a) = l.lock_timeout(TINY) {
                        let _ = l.try_lock();
                        drop(a);
                    }
                }
            },
            read_only: false,
        },
        Case {
            name: "rwlock",
            create: |n| RwLock::<u64>::create(n, 1).unwrap().persist(),
            memfd: || fd_of(RwLock::<u64>::memfd(1).unwrap().fd()),
            attack: |p, n, fd| {
                if let Some(l) = open_sync(
                    p,
                    n,
                    fd,
                    RwLock::<u64>::open,
                    |n| RwLock::<u64>::open_or_create(n, 1),
                    RwLock::<u64>::from_fd,
                ) {
                    let _ = l.read_timeout(TINY).map(|g| g.get());
                    let _ = l.write_timeout(TINY).map(|g| g.set(2));
                }
            },
            read_only: false,
        },
        Case {
            name: "semaphore",
            create: |n| Semaphore::create(n, 2).unwrap().persist(),
            memfd: || fd_of(Semaphore::memfd(2).unwrap().fd()),
            attack: |p, n, fd| {
                if let Some(s) = open_sync(
                    p,
                    n,
                    fd,
                    Semaphore::open,
                    |n| Semaphore::open_or_create(n, 2),
                    Semaphore::from_fd,
                ) {
                    let _ = s.acquire_timeout(TINY);
                    let _ = s.try_acquire();
                    let _ = s.release();
                }
            },
            read_only: false,
        },
        Case {
            name: "event",
            create: |n| Event::create(n, ()).unwrap().persist(),
            memfd: || fd_of(Event::memfd(()).unwrap().fd()),
            attack: |p, n, fd| {
                if let Some(e) = open_sync(
                    p,
                    n,
                    fd,
                    Event::open,
                    |n| Event::open_or_create(n, ()),
                    Event::from_fd,
                ) {
                    let _ = e.wait_timeout(TINY);
                    e.set();
                    e.clear();
                }
            },
            read_only: false,
        },
        Case {
            name: "condition",
            create: |n| Condition::<u64>::create(n, 0).unwrap().persist(),
            memfd: || fd_of(Condition::<u64>::memfd(0).unwrap().fd()),
            attack: |p, n, fd| {
                if let Some(c) = open_sync(
                    p,
                    n,
                    fd,
                    Condition::<u64>::open,
                    |n| Condition::<u64>::open_or_create(n, 0),
                    Condition::<u64>::from_fd,
                ) {
                    if let Ok(g) = c.lock_timeout(TINY) {
                        let _ = c.wait_timeout(g, TINY);
                    }
                    c.notify_all();
                }
            },
            read_only: false,
        },
        Case {
            name: "barrier",
            create: |n| Barrier::create(n, 2).unwrap().persist(),
            memfd: || fd_of(Barrier::memfd(2).unwrap().fd()),
            attack: |p, n, fd| {
                if let Some(b) = open_sync(
                    p,
                    n,
                    fd,
                    Barrier::open,
                    |n| Barrier::open_or_create(n, 2),
                    Barrier::from_fd,
                ) {
                    let _ = b.wait_timeout(TINY);
                    b.reset();
                }
            },
            read_only: false,
        },
    ]
}

/// Opens a kind without a read-only form by `path` (read-only: `open`).
fn open_sync<H, E1, E2, E3>(
    path: Path,
    name: &str,
    fd: Option<OwnedFd>,
    open: fn(&str) -> Result<H, E1>,
    open_or_create: fn(&str) -> Result<H, E2>,
    from_fd: fn(OwnedFd) -> Result<H, E3>,
) -> Option<H> {
    match path {
        Path::Open | Path::OpenReadOnly => open(name).ok(),
        Path::OpenOrCreate => open_or_create(name).ok(),
        Path::FromFd => fd.and_then(|fd| from_fd(fd).ok()),
    }
}

fn fd_of(fd: Option<std::os::fd::BorrowedFd<'_>>) -> OwnedFd {
    fd.expect("a memfd segment has a descriptor")
        .as_fd()
        .try_clone_to_owned()
        .unwrap()
}

/// One forgery: `(offset, bytes)` pokes applied together.
type Forgery = (&'static str, Vec<(u64, Vec<u8>)>);

fn u64s(v: u64) -> Vec<u8> {
    v.to_le_bytes().to_vec()
}

fn u32s(v: u32) -> Vec<u8> {
    v.to_le_bytes().to_vec()
}

/// Every forgery, given the honest header's payload length.
fn forgeries(payload: u64) -> Vec<Forgery> {
    let huge = 0x10_0000u64;
    let mut out: Vec<Forgery> = vec![
        ("param0=0", vec![(PARAM0, u64s(0))]),
        ("param0=1", vec![(PARAM0, u64s(1))]),
        ("param0 huge", vec![(PARAM0, u64s(huge))]),
        ("param0 max", vec![(PARAM0, u64s(u64::MAX))]),
        ("param1 odd", vec![(PARAM1, u64s(7))]),
        ("param1 max", vec![(PARAM1, u64s(u64::MAX))]),
        ("payload smaller", vec![(PAYLOAD_LEN, u64s(payload / 2))]),
        ("payload larger", vec![(PAYLOAD_LEN, u64s(payload * 4))]),
        ("payload max", vec![(PAYLOAD_LEN, u64s(u64::MAX))]),
        ("total inconsistent", vec![(TOTAL_LEN, u64s(1))]),
        ("payload offset", vec![(PAYLOAD_OFFSET, u32s(0))]),
        ("kind other", vec![(KIND, u32s(1))]),
        ("kind unknown", vec![(KIND, u32s(0xdead))]),
        ("type hash", vec![(TYPE_HASH, u64s(0x1234_5678))]),
        ("element size", vec![(SIZE, u64s(1))]),
        ("element align huge", vec![(ALIGN, u64s(1 << 20))]),
        ("element align odd", vec![(ALIGN, u64s(3))]),
        ("version", vec![(VERSION, u32s(99))]),
        ("state uninit", vec![(STATE, u32s(0))]),
        ("state abandoned", vec![(STATE, u32s(3))]),
        ("state garbage", vec![(STATE, u32s(0xffff_ffff))]),
    ];
    // Consistent combinations: lengths that agree with each other (and
    // with forged parameters) but not with the file.
    for (what, p0, len) in [
        ("params+lengths grown", huge, payload * 1024),
        ("params+lengths shrunk", 1, payload / 2),
        ("params+lengths zero", 0, 0),
    ] {
        out.push((
            what,
            vec![
                (PARAM0, u64s(p0)),
                (PAYLOAD_LEN, u64s(len)),
                (TOTAL_LEN, u64s(len + HEADER_LEN as u64)),
            ],
        ));
    }
    out.push((
        "lengths grown, params kept",
        vec![
            (PAYLOAD_LEN, u64s(payload * 2)),
            (TOTAL_LEN, u64s(payload * 2 + HEADER_LEN as u64)),
        ],
    ));
    out.push((
        "type and params",
        vec![
            (TYPE_HASH, u64s(1)),
            (SIZE, u64s(1)),
            (ALIGN, u64s(1)),
            (PARAM0, u64s(huge)),
        ],
    ));
    out
}

fn header_u64(file: &File, at: u64) -> u64 {
    let mut b = [0u8; 8];
    file.read_exact_at(&mut b, at).unwrap();
    u64::from_le_bytes(b)
}

/// Runs `attack` in a child; a signal (or a hang past 60 s) is a failure.
fn survives(what: &str, attack: impl FnOnce()) {
    let child = fork(|| {
        attack();
        0
    });
    match child.wait_timeout(Duration::from_secs(60)) {
        Some(Exit::Code(0)) => {}
        other => panic!("{what}: the opener ended with {other:?}"),
    }
}

#[test]
fn every_kind_every_path_every_forged_field() {
    let mut runs = 0;
    for case in cases() {
        // The honest payload length, read from an honest object.
        let probe = unique_name("forge-probe");
        (case.create)(&probe);
        let payload = header_u64(&File::open(shm_path(&probe)).unwrap(), PAYLOAD_LEN);
        std::fs::remove_file(shm_path(&probe)).unwrap();

        for (forgery, pokes) in forgeries(payload) {
            let paths: &[Path] = if case.read_only {
                &[
                    Path::Open,
                    Path::OpenReadOnly,
                    Path::OpenOrCreate,
                    Path::FromFd,
                ]
            } else {
                &[Path::Open, Path::OpenOrCreate, Path::FromFd]
            };
            for &path in paths {
                let what = format!("{} / {path:?} / {forgery}", case.name);
                if path == Path::FromFd {
                    let fd = (case.memfd)();
                    let f = File::from(fd.try_clone().unwrap());
                    for (at, bytes) in &pokes {
                        f.write_all_at(bytes, *at).unwrap();
                    }
                    let attack = case.attack;
                    survives(&what, || attack(path, "", Some(fd)));
                } else {
                    let name = unique_name("forge");
                    (case.create)(&name);
                    let f = std::fs::OpenOptions::new()
                        .write(true)
                        .open(shm_path(&name))
                        .unwrap();
                    for (at, bytes) in &pokes {
                        f.write_all_at(bytes, *at).unwrap();
                    }
                    let attack = case.attack;
                    let n = name.clone();
                    survives(&what, move || attack(path, &n, None));
                    let _ = std::fs::remove_file(shm_path(&name));
                }
                runs += 1;
            }
        }
    }
    eprintln!("{runs} forged opens survived");
    assert!(runs > 500, "the matrix shrank to {runs} runs");
}
