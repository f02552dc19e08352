//! Issue 8, item 1, as a matrix: for every kind × every open path
//! (`open`, `open_read_only` where the kind has it, `open_or_create`,
//! `from_fd`), forge each header field — parameters, payload length, total
//! length, kind, fingerprint, version, state, payload offset — alone and in
//! consistent combinations; the opener must get the error that forgery
//! calls for (asserted: [`expected`]), or a handle whose every operation
//! stays in bounds. Never a signal: each attack runs in a forked child,
//! which reports what it got as its exit code; a child that dies by a
//! signal (or hangs) fails the test.

mod common;

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::time::Duration;

use common::shm_path;
use shmkit_core::header::HEADER_LEN;
use shmkit_posix::array::SharedSliceExt;
use shmkit_posix::msg_queue::{JoinableQueue, MessageQueue};
use shmkit_posix::pipe::{End, OneWayPipe, Pipe};
use shmkit_posix::queue::Queue;
use shmkit_posix::ring::{Ring, StampedRing};
use shmkit_posix::sync::{
    Barrier, Condition, Event, Lock, LockedArray, Mutex, RLock, RwLock, Semaphore,
};
use shmkit_posix::{Array, OpenError, OpenOrCreateError, SharedByteMap, SharedMap, Value};
use shmkit_testkit::{fork, unique_name, Exit};

// Header field offsets (see `shmkit_core::header`).
const MAGIC: u64 = 0;
const VERSION: u64 = 8;
const STATE: u64 = 12;
const KIND: u64 = 16;
const CREATOR_PID: u64 = 20;
const PAYLOAD_OFFSET: u64 = 24;
const FLAGS: u64 = 28;
const TOTAL_LEN: u64 = 32;
const PAYLOAD_LEN: u64 = 40;
const TYPE_HASH: u64 = 48;
const SIZE: u64 = 56;
const ALIGN: u64 = 64;
const PARAM0: u64 = 72;
const PARAM1: u64 = 80;
const TYPE_NAME_LEN: u64 = 88;
const TYPE_NAME: u64 = 96;
const CREATOR_START: u64 = 160;
const RESERVED: u64 = 168;

const TINY: Duration = Duration::from_millis(2);

/// How an attacker gets at the object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Path {
    Open,
    OpenReadOnly,
    OpenOrCreate,
    FromFd,
}

/// What an attack ended with, reported as the child's exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
enum Outcome {
    /// The open succeeded and every operation was called (in bounds: the
    /// child is still alive to say so).
    Used = 0,
    VersionMismatch = 10,
    KindMismatch,
    TypeMismatch,
    Truncated,
    ParamsMismatch,
    Corrupt,
    InitTimedOut,
    CreatorDied,
    NotShmkit,
    /// Any other open error (or `open_or_create`'s create or contention
    /// errors): never expected here.
    Other,
}

impl Outcome {
    const ALL: [Outcome; 11] = [
        Outcome::Used,
        Outcome::VersionMismatch,
        Outcome::KindMismatch,
        Outcome::TypeMismatch,
        Outcome::Truncated,
        Outcome::ParamsMismatch,
        Outcome::Corrupt,
        Outcome::InitTimedOut,
        Outcome::CreatorDied,
        Outcome::NotShmkit,
        Outcome::Other,
    ];

    fn from_code(code: i32) -> Option<Outcome> {
        Outcome::ALL.into_iter().find(|o| *o as i32 == code)
    }
}

impl From<OpenError> for Outcome {
    fn from(e: OpenError) -> Outcome {
        match e {
            OpenError::VersionMismatch { .. } => Outcome::VersionMismatch,
            OpenError::KindMismatch { .. } => Outcome::KindMismatch,
            OpenError::TypeMismatch(_) => Outcome::TypeMismatch,
            OpenError::Truncated { .. } => Outcome::Truncated,
            OpenError::ParamsMismatch { .. } => Outcome::ParamsMismatch,
            OpenError::Corrupt { .. } => Outcome::Corrupt,
            OpenError::InitTimedOut { .. } => Outcome::InitTimedOut,
            OpenError::CreatorDied { .. } => Outcome::CreatorDied,
            OpenError::NotShmkit { .. } => Outcome::NotShmkit,
            other => {
                eprintln!("unexpected open error: {other}");
                Outcome::Other
            }
        }
    }
}

impl From<OpenOrCreateError> for Outcome {
    fn from(e: OpenOrCreateError) -> Outcome {
        match e {
            OpenOrCreateError::Open(e) => e.into(),
            other => {
                eprintln!("unexpected open_or_create error: {other}");
                Outcome::Other
            }
        }
    }
}

/// One object kind: how to make an honest one, and how to open it by each
/// path and use whatever opens.
struct Case {
    name: &'static str,
    create: fn(&str),
    memfd: fn() -> OwnedFd,
    attack: fn(Path, &str, Option<OwnedFd>) -> Outcome,
    read_only: bool,
    /// Parameter forgeries this kind opens despite, as an honest object:
    /// forged parameters that are possible and need the payload length
    /// the header records.
    opens_despite: &'static [&'static str],
}

/// Opens by `path` (a kind without a read-only form: `open`).
fn open_by<H, E1, E2, E3>(
    path: Path,
    name: &str,
    fd: Option<OwnedFd>,
    open: impl FnOnce(&str) -> Result<H, E1>,
    open_or_create: impl FnOnce(&str) -> Result<H, E2>,
    from_fd: impl FnOnce(OwnedFd) -> Result<H, E3>,
) -> Result<H, Outcome>
where
    Outcome: From<E1> + From<E2> + From<E3>,
{
    match path {
        Path::Open | Path::OpenReadOnly => open(name).map_err(Outcome::from),
        Path::OpenOrCreate => open_or_create(name).map_err(Outcome::from),
        Path::FromFd => from_fd(fd.expect("from_fd has a descriptor")).map_err(Outcome::from),
    }
}

/// Uses what opened (every operation), or passes the error on.
fn used<H>(opened: Result<H, Outcome>, use_it: impl FnOnce(H)) -> Outcome {
    match opened {
        Ok(h) => {
            use_it(h);
            Outcome::Used
        }
        Err(o) => o,
    }
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

/// `open_by` for a `Shared` kind whose `open_or_create` takes `$init`.
macro_rules! open_kind {
    ($t:ty, $p:expr, $n:expr, $fd:expr, $init:expr) => {
        open_by(
            $p,
            $n,
            $fd,
            <$t>::open,
            |n| <$t>::open_or_create(n, $init),
            <$t>::from_fd,
        )
    };
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "array",
            create: |n| Array::<u64>::create(n, 4).unwrap().persist(),
            memfd: || fd_of(Array::<u64>::memfd(4).unwrap().fd()),
            attack: |p, n, fd| {
                if p == Path::OpenReadOnly {
                    return used(
                        Array::<u64>::open_read_only(n).map_err(Outcome::from),
                        |a| {
                            use_slice!(&a);
                        },
                    );
                }
                used(open_kind!(Array::<u64>, p, n, fd, 4), |a| {
                    use_slice!(&a);
                    let _ = a.set(a.len() - 1, 1);
                })
            },
            read_only: true,
            opens_despite: &[],
        },
        Case {
            name: "value",
            create: |n| Value::<u64>::create(n, 4).unwrap().persist(),
            memfd: || fd_of(Value::<u64>::memfd(4).unwrap().fd()),
            attack: |p, n, fd| {
                if p == Path::OpenReadOnly {
                    return used(
                        Value::<u64>::open_read_only(n).map_err(Outcome::from),
                        |v| {
                            let _ = v.get();
                        },
                    );
                }
                used(open_kind!(Value::<u64>, p, n, fd, 4), |v| {
                    v.set(v.get().wrapping_add(1));
                })
            },
            read_only: true,
            opens_despite: &[],
        },
        Case {
            name: "locked array",
            create: |n| LockedArray::<u32>::create(n, 4).unwrap().persist(),
            memfd: || fd_of(LockedArray::<u32>::memfd(4).unwrap().fd()),
            attack: |p, n, fd| {
                used(open_kind!(LockedArray::<u32>, p, n, fd, 4), |a| {
                    if let Ok(g) = a.lock_timeout(TINY) {
                        use_slice!(*g);
                        let _ = g.set(g.len() - 1, 1);
                    }
                    let _ = a.try_recover();
                })
            },
            read_only: false,
            opens_despite: &[],
        },
        Case {
            name: "mutex",
            create: |n| Mutex::<u64>::create(n, 1).unwrap().persist(),
            memfd: || fd_of(Mutex::<u64>::memfd(1).unwrap().fd()),
            attack: |p, n, fd| {
                used(open_kind!(Mutex::<u64>, p, n, fd, 1), |m| {
                    if let Ok(g) = m.lock_timeout(TINY) {
                        g.update(|v| *v += 1);
                    }
                    let _ = m.try_recover();
                })
            },
            read_only: false,
            opens_despite: &[],
        },
        Case {
            name: "lock",
            create: |n| Lock::create(n, ()).unwrap().persist(),
            memfd: || fd_of(Lock::memfd(()).unwrap().fd()),
            attack: |p, n, fd| {
                used(open_kind!(Lock, p, n, fd, ()), |l| {
                    let _ = l.lock_timeout(TINY);
                    let _ = l.try_lock();
                })
            },
            read_only: false,
            opens_despite: &[],
        },
        Case {
            name: "rlock",
            create: |n| RLock::create(n, ()).unwrap().persist(),
            memfd: || fd_of(RLock::memfd(()).unwrap().fd()),
            attack: |p, n, fd| {
                used(open_kind!(RLock, p, n, fd, ()), |l| {
                    if let Ok(a) = l.lock_timeout(TINY) {
                        let _ = l.try_lock();
                        drop(a);
                    }
                })
            },
            read_only: false,
            opens_despite: &[],
        },
        Case {
            name: "rwlock",
            create: |n| RwLock::<u64>::create(n, 1).unwrap().persist(),
            memfd: || fd_of(RwLock::<u64>::memfd(1).unwrap().fd()),
            attack: |p, n, fd| {
                used(open_kind!(RwLock::<u64>, p, n, fd, 1), |l| {
                    let _ = l.read_timeout(TINY).map(|g| g.get());
                    let _ = l.write_timeout(TINY).map(|g| g.set(2));
                })
            },
            read_only: false,
            opens_despite: &[],
        },
        Case {
            name: "semaphore",
            create: |n| Semaphore::create(n, 2).unwrap().persist(),
            memfd: || fd_of(Semaphore::memfd(2).unwrap().fd()),
            attack: |p, n, fd| {
                used(open_kind!(Semaphore, p, n, fd, 2), |s| {
                    let _ = s.acquire_timeout(TINY);
                    let _ = s.try_acquire();
                    let _ = s.release();
                })
            },
            read_only: false,
            opens_despite: &[],
        },
        Case {
            name: "event",
            create: |n| Event::create(n, ()).unwrap().persist(),
            memfd: || fd_of(Event::memfd(()).unwrap().fd()),
            attack: |p, n, fd| {
                used(open_kind!(Event, p, n, fd, ()), |e| {
                    let _ = e.wait_timeout(TINY);
                    e.set();
                    e.clear();
                })
            },
            read_only: false,
            opens_despite: &[],
        },
        Case {
            name: "condition",
            create: |n| Condition::<u64>::create(n, 0).unwrap().persist(),
            memfd: || fd_of(Condition::<u64>::memfd(0).unwrap().fd()),
            attack: |p, n, fd| {
                used(open_kind!(Condition::<u64>, p, n, fd, 0), |c| {
                    if let Ok(g) = c.lock_timeout(TINY) {
                        let _ = c.wait_timeout(g, TINY);
                    }
                    c.notify_all();
                })
            },
            read_only: false,
            opens_despite: &[],
        },
        Case {
            name: "barrier",
            create: |n| Barrier::create(n, 2).unwrap().persist(),
            memfd: || fd_of(Barrier::memfd(2).unwrap().fd()),
            attack: |p, n, fd| {
                used(open_kind!(Barrier, p, n, fd, 2), |b| {
                    let _ = b.wait_timeout(TINY);
                    b.reset();
                })
            },
            read_only: false,
            // One party is a possible barrier, in the same payload.
            opens_despite: &["param0=1"],
        },
        Case {
            name: "ring",
            create: |n| Ring::<u64>::create(n, 4).unwrap().persist(),
            memfd: || fd_of(Ring::<u64>::memfd(4).unwrap().fd()),
            attack: |p, n, fd| {
                used(open_kind!(Ring::<u64>, p, n, fd, 4), |r| {
                    let _ = r.capacity();
                    if let Ok(tx) = r.producer() {
                        for i in 0..8 {
                            let _ = tx.push(i);
                        }
                        let _ = tx.push_timeout(9, TINY);
                        let _ = tx.push_slice(&[1; 9]);
                        let _ = tx.slots();
                    }
                    if let Ok(rx) = r.consumer() {
                        let _ = rx.pop();
                        let _ = rx.pop_into(&mut [0; 9]);
                        let _ = rx.pop_timeout(TINY);
                        let _ = rx.slots();
                    }
                })
            },
            read_only: false,
            opens_despite: &[],
        },
        Case {
            name: "stamped ring",
            create: |n| StampedRing::<u64>::create(n, 4).unwrap().persist(),
            memfd: || fd_of(StampedRing::<u64>::memfd(4).unwrap().fd()),
            attack: |p, n, fd| {
                used(open_kind!(StampedRing::<u64>, p, n, fd, 4), |r| {
                    let _ = r.capacity();
                    if let Ok(tx) = r.producer() {
                        for i in 0..8 {
                            let _ = tx.push(i);
                        }
                        let _ = tx.push_timeout(9, TINY);
                    }
                    if let Ok(rx) = r.consumer() {
                        for _ in 0..8 {
                            let _ = rx.pop();
                        }
                        let _ = rx.pop_timeout(TINY);
                    }
                })
            },
            read_only: false,
            opens_despite: &[],
        },
        Case {
            name: "mpmc queue",
            create: |n| Queue::<u64>::create(n, 4).unwrap().persist(),
            memfd: || fd_of(Queue::<u64>::memfd(4).unwrap().fd()),
            attack: |p, n, fd| {
                used(open_kind!(Queue::<u64>, p, n, fd, 4), |q| {
                    let _ = q.capacity();
                    if let Ok(tx) = q.sender() {
                        let _ = (tx.len(), tx.is_empty(), tx.is_full());
                        for i in 0..8 {
                            let _ = tx.try_send(i);
                        }
                        let _ = tx.send_timeout(9, TINY);
                    }
                    if let Ok(rx) = q.receiver() {
                        for _ in 0..8 {
                            let _ = rx.try_recv();
                        }
                        let _ = rx.recv_timeout(TINY);
                    }
                })
            },
            read_only: false,
            opens_despite: &[],
        },
        Case {
            name: "pipe",
            create: |n| OneWayPipe::create(n, 64).unwrap().persist(),
            memfd: || fd_of(OneWayPipe::memfd(64).unwrap().fd()),
            attack: |p, n, fd| {
                used(open_kind!(OneWayPipe, p, n, fd, 64), |pipe| {
                    let max = pipe.max_message_len();
                    if let Ok(tx) = pipe.sender() {
                        for len in [0, 1, max / 2, max, max + 1] {
                            let _ = tx.try_send_bytes(&vec![7u8; len.min(1 << 16)]);
                        }
                        let _ = tx.send_bytes_timeout(b"x", TINY);
                    }
                    if let Ok(rx) = pipe.receiver() {
                        let _ = rx.poll(Duration::ZERO);
                        for _ in 0..6 {
                            let _ = rx.try_recv_bytes_into(&mut [0u8; 16]);
                        }
                        let _ = rx.recv_bytes_timeout(TINY);
                    }
                })
            },
            read_only: false,
            opens_despite: &[],
        },
        Case {
            name: "duplex pipe",
            create: |n| Pipe::create(n, 64).unwrap().persist(),
            memfd: || fd_of(Pipe::memfd(64).unwrap().fd()),
            attack: |p, n, fd| {
                used(open_kind!(Pipe, p, n, fd, 64), |pipe| {
                    let max = pipe.max_message_len();
                    let a = pipe.end(End::A).ok();
                    let b = pipe.end(End::B).ok();
                    if let Some(a) = &a {
                        for len in [0, 1, max / 2, max, max + 1] {
                            let _ = a.try_send_bytes(&vec![7u8; len.min(1 << 16)]);
                        }
                        let _ = a.send_bytes_timeout(b"x", TINY);
                        let _ = a.poll(Duration::ZERO);
                    }
                    if let Some(b) = &b {
                        for _ in 0..6 {
                            let _ = b.try_recv_bytes();
                        }
                        let _ = b.recv_bytes_timeout(TINY);
                        let _ = b.send_bytes_timeout(b"y", TINY);
                    }
                })
            },
            read_only: false,
            opens_despite: &[],
        },
        Case {
            name: "map",
            create: |n| SharedMap::<u32, u64>::create(n, 8).unwrap().persist(),
            memfd: || fd_of(SharedMap::<u32, u64>::memfd(8).unwrap().fd()),
            attack: |p, n, fd| {
                used(open_kind!(SharedMap::<u32, u64>, p, n, fd, 8), |m| {
                    let v = m.with_timeout(TINY);
                    let _ = (v.capacity(), v.len(), v.is_empty(), v.repairs());
                    for k in 0..12 {
                        let _ = v.insert(k, u64::from(k));
                    }
                    let _ = v.get(&3);
                    let _ = v.update(&3, |x| *x += 1);
                    let _ = v.for_each(|_, _| {});
                    let _ = v.check();
                    let _ = v.remove(&3);
                })
            },
            read_only: false,
            opens_despite: &[],
        },
        Case {
            name: "byte map",
            create: |n| SharedByteMap::create(n, (8, 8, 16)).unwrap().persist(),
            memfd: || fd_of(SharedByteMap::memfd((8, 8, 16)).unwrap().fd()),
            attack: |p, n, fd| {
                used(open_kind!(SharedByteMap, p, n, fd, (8, 8, 16)), |m| {
                    let v = m.with_timeout(TINY);
                    let (kmax, vmax) = (v.max_key_len(), v.max_value_len());
                    let _ = (v.capacity(), v.len(), v.is_empty(), v.repairs());
                    for i in 0..12u8 {
                        let key = vec![i; (usize::from(i) % 10).min(kmax + 1)];
                        let _ = v.insert(&key, &vec![i; vmax.min(1 << 16)], None);
                    }
                    let mut out = [0u8; 64];
                    let _ = v.get_into(&[3; 3], &mut out);
                    let _ = v.insert_if_absent(b"k", b"v");
                    let _ = v.for_each(|e| {
                        let mut k = vec![0u8; e.key_len().min(1 << 16)];
                        e.read_key(&mut k);
                        let _ = e.value_len();
                    });
                    let _ = v.check();
                    let _ = v.remove(&[3; 3], Some(&mut out));
                })
            },
            read_only: false,
            // A longest value of 17 bytes instead of 16 rounds to the
            // same slot size: a consistent map.
            opens_despite: &["param1 bit"],
        },
        Case {
            name: "message queue",
            create: |n| {
                MessageQueue::<[u8; 8]>::create(n, (4, 8))
                    .unwrap()
                    .persist()
            },
            memfd: || fd_of(MessageQueue::<[u8; 8]>::memfd((4, 8)).unwrap().fd()),
            attack: |p, n, fd| {
                used(open_kind!(MessageQueue::<[u8; 8]>, p, n, fd, (4, 8)), |q| {
                    let _ = (q.len(), q.is_empty());
                    if let Ok(mut tx) = q.sender() {
                        for i in 0..8 {
                            let _ = tx.try_send(&[i; 8]);
                        }
                        let _ = tx.send_timeout(&[9; 8], TINY);
                    }
                    if let Ok(mut rx) = q.receiver() {
                        for _ in 0..8 {
                            let _ = rx.try_recv();
                        }
                        let _ = rx.recv_timeout(TINY);
                    }
                })
            },
            read_only: false,
            opens_despite: &[],
        },
        Case {
            name: "joinable queue",
            create: |n| JoinableQueue::<u64>::create(n, (4, 8)).unwrap().persist(),
            memfd: || fd_of(JoinableQueue::<u64>::memfd((4, 8)).unwrap().fd()),
            attack: |p, n, fd| {
                used(open_kind!(JoinableQueue::<u64>, p, n, fd, (4, 8)), |q| {
                    let _ = (q.unfinished(), q.join_timeout(TINY));
                    if let Ok(mut tx) = q.sender() {
                        for i in 0..8 {
                            let _ = tx.try_send(&i);
                        }
                        let _ = tx.send_timeout(&9, TINY);
                    }
                    if let Ok(mut rx) = q.receiver() {
                        for _ in 0..8 {
                            if rx.try_recv().is_ok() {
                                let _ = q.task_done();
                            }
                        }
                        let _ = rx.recv_timeout(TINY);
                    }
                    let _ = q.task_done();
                    let _ = q.join_timeout(TINY);
                })
            },
            read_only: false,
            opens_despite: &[],
        },
    ]
}

fn fd_of(fd: Option<std::os::fd::BorrowedFd<'_>>) -> OwnedFd {
    fd.expect("a memfd segment has a descriptor")
        .as_fd()
        .try_clone_to_owned()
        .unwrap()
}

/// Which field a forgery attacks: decides the error it calls for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    /// Recorded parameters (and lengths agreeing with them).
    Params,
    /// Payload, total or type name length, or payload offset.
    Lengths,
    Kind,
    Type,
    Version,
    /// The state word, forged to "not initialised" or "abandoned".
    StateDead,
    /// The state word, forged to no state at all.
    StateGarbage,
    /// The magic bytes.
    Magic,
    /// Fields only reported, never trusted for layout (creator, type
    /// name, flags, reserved bytes).
    Diagnostic,
}

/// One forgery: what it attacks and its `(offset, bytes)` pokes.
struct Forgery {
    what: &'static str,
    field: Field,
    pokes: Vec<(u64, Vec<u8>)>,
    /// Every poke writes the bytes already there.
    no_op: bool,
}

fn u64s(v: u64) -> Vec<u8> {
    v.to_le_bytes().to_vec()
}

fn u32s(v: u32) -> Vec<u8> {
    v.to_le_bytes().to_vec()
}

/// Every forgery of the honest `header`.
fn forgeries(header: &[u8]) -> Vec<Forgery> {
    use Field::*;
    let word = |at: u64| u64::from_le_bytes(header[at as usize..][..8].try_into().unwrap());
    let (payload, params) = (word(PAYLOAD_LEN), [word(PARAM0), word(PARAM1)]);
    let kind = word(KIND) as u32;
    let huge = 0x10_0000u64;
    let f = |what, field, pokes: Vec<(u64, Vec<u8>)>| Forgery {
        what,
        field,
        no_op: pokes
            .iter()
            .all(|(at, b)| header[*at as usize..][..b.len()] == b[..]),
        pokes,
    };
    let mut out = vec![
        f("param0=0", Params, vec![(PARAM0, u64s(0))]),
        f("param0=1", Params, vec![(PARAM0, u64s(1))]),
        f("param0 huge", Params, vec![(PARAM0, u64s(huge))]),
        f("param0 max", Params, vec![(PARAM0, u64s(u64::MAX))]),
        // The high halves (a message queue's longest message) and single
        // bits of the honest words (a queue's registry sizes).
        f(
            "param0 high half",
            Params,
            vec![(PARAM0, u64s(params[0] | 0xffff << 32))],
        ),
        f("param0 bit", Params, vec![(PARAM0, u64s(params[0] ^ 2))]),
        f("param1 odd", Params, vec![(PARAM1, u64s(7))]),
        f("param1 max", Params, vec![(PARAM1, u64s(u64::MAX))]),
        f("param1 bit", Params, vec![(PARAM1, u64s(params[1] ^ 1))]),
        f(
            "param1 high bit",
            Params,
            vec![(PARAM1, u64s(params[1] ^ 1 << 40))],
        ),
        f(
            "payload smaller",
            Lengths,
            vec![(PAYLOAD_LEN, u64s(payload / 2))],
        ),
        f(
            "payload larger",
            Lengths,
            vec![(PAYLOAD_LEN, u64s(payload * 4))],
        ),
        f("payload max", Lengths, vec![(PAYLOAD_LEN, u64s(u64::MAX))]),
        f("total inconsistent", Lengths, vec![(TOTAL_LEN, u64s(1))]),
        f("payload offset", Lengths, vec![(PAYLOAD_OFFSET, u32s(0))]),
        f(
            "kind other",
            Kind,
            vec![(KIND, u32s(if kind == 1 { 2 } else { 1 }))],
        ),
        f("kind unknown", Kind, vec![(KIND, u32s(0xdead))]),
        f("type hash", Type, vec![(TYPE_HASH, u64s(0x1234_5678))]),
        f("element size", Type, vec![(SIZE, u64s(1))]),
        f("element align huge", Type, vec![(ALIGN, u64s(1 << 20))]),
        f("element align odd", Type, vec![(ALIGN, u64s(3))]),
        f("version", Version, vec![(VERSION, u32s(99))]),
        f("state uninit", StateDead, vec![(STATE, u32s(0))]),
        f("state abandoned", StateDead, vec![(STATE, u32s(3))]),
        f(
            "state garbage",
            StateGarbage,
            vec![(STATE, u32s(0xffff_ffff))],
        ),
        f("magic", Magic, vec![(MAGIC, b"\x7fSHMKIX\0".to_vec())]),
        f(
            "creator pid",
            Diagnostic,
            vec![(CREATOR_PID, u32s(u32::MAX))],
        ),
        f(
            "creator start",
            Diagnostic,
            vec![(CREATOR_START, u64s(u64::MAX))],
        ),
        f("flags", Diagnostic, vec![(FLAGS, u32s(0xffff_fffe))]),
        // A length past the name's 64 bytes: checked like the others.
        f(
            "type name len max",
            Lengths,
            vec![(TYPE_NAME_LEN, u32s(u32::MAX))],
        ),
        f(
            "type name not UTF-8",
            Diagnostic,
            vec![(TYPE_NAME, vec![0xff; 64])],
        ),
        f("reserved", Diagnostic, vec![(RESERVED, vec![0xa5; 88])]),
    ];
    // Consistent combinations: lengths that agree with each other (and
    // with forged parameters) but not with the file.
    for (what, p0, len) in [
        ("params+lengths grown", huge, payload * 1024),
        ("params+lengths shrunk", 1, payload / 2),
        ("params+lengths zero", 0, 0),
    ] {
        out.push(f(
            what,
            Params,
            vec![
                (PARAM0, u64s(p0)),
                (PAYLOAD_LEN, u64s(len)),
                (TOTAL_LEN, u64s(len + HEADER_LEN as u64)),
            ],
        ));
    }
    out.push(f(
        "lengths grown, params kept",
        Lengths,
        vec![
            (PAYLOAD_LEN, u64s(payload * 2)),
            (TOTAL_LEN, u64s(payload * 2 + HEADER_LEN as u64)),
        ],
    ));
    out.push(f(
        "type and params",
        Type,
        vec![
            (TYPE_HASH, u64s(1)),
            (SIZE, u64s(1)),
            (ALIGN, u64s(1)),
            (PARAM0, u64s(huge)),
        ],
    ));
    out
}

/// The outcomes `forgery` may end with, opened by `path`.
fn expected(case: &Case, forgery: &Forgery, path: Path) -> &'static [Outcome] {
    use Outcome::*;
    match forgery.field {
        // The pokes rewrote what was there (a `Value` has one element, a
        // pipe's element is a byte): an honest segment.
        _ if forgery.no_op => &[Used],
        Field::Version => &[VersionMismatch],
        Field::Kind => &[KindMismatch],
        Field::Type => &[TypeMismatch],
        // Lengths that disagree with the file, each other or the
        // parameters; an offset that is not the header's length.
        Field::Lengths => &[Corrupt, Truncated],
        // No creator holds the segment (it persisted and left): an
        // uninitialised or abandoned state means it died initialising.
        Field::StateDead => &[CreatorDied],
        Field::StateGarbage => &[Corrupt],
        Field::Magic => &[NotShmkit],
        Field::Diagnostic => &[Used],
        // Possible parameters the recorded payload length fits: an honest
        // object; `open_or_create` asks for the honest ones and is told
        // they differ.
        Field::Params if case.opens_despite.contains(&forgery.what) => match path {
            Path::OpenOrCreate => &[TypeMismatch, ParamsMismatch],
            _ => &[Used],
        },
        // Impossible parameters, or ones needing another payload length
        // than the header's (or than the file's), are corrupt;
        // `open_or_create` may be told first that they differ from what
        // it asked for.
        Field::Params => match path {
            Path::OpenOrCreate => &[Corrupt, Truncated, TypeMismatch, ParamsMismatch],
            _ => &[Corrupt, Truncated],
        },
    }
}

/// Runs `attack` in a child; returns what it reported. A signal (or a
/// hang past 60 s) is a failure.
fn outcome_of(what: &str, attack: impl FnOnce() -> Outcome) -> Outcome {
    let child = fork(|| attack() as i32);
    match child.wait_timeout(Duration::from_secs(60)) {
        Some(Exit::Code(code)) => Outcome::from_code(code)
            .unwrap_or_else(|| panic!("{what}: the opener exited with code {code}")),
        other => panic!("{what}: the opener ended with {other:?}"),
    }
}

#[test]
fn every_kind_every_path_every_forged_field() {
    let mut runs = 0;
    let mut wrong = Vec::new();
    for case in cases() {
        // The honest header, read from an honest object.
        let probe = unique_name("forge-probe");
        (case.create)(&probe);
        let mut header = vec![0u8; HEADER_LEN];
        File::open(shm_path(&probe))
            .unwrap()
            .read_exact_at(&mut header, 0)
            .unwrap();
        std::fs::remove_file(shm_path(&probe)).unwrap();

        for forgery in forgeries(&header) {
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
                let what = format!("{} / {path:?} / {}", case.name, forgery.what);
                let attack = case.attack;
                let got = if path == Path::FromFd {
                    let fd = (case.memfd)();
                    let f = File::from(fd.try_clone().unwrap());
                    for (at, bytes) in &forgery.pokes {
                        f.write_all_at(bytes, *at).unwrap();
                    }
                    outcome_of(&what, || attack(path, "", Some(fd)))
                } else {
                    let name = unique_name("forge");
                    (case.create)(&name);
                    let f = std::fs::OpenOptions::new()
                        .write(true)
                        .open(shm_path(&name))
                        .unwrap();
                    for (at, bytes) in &forgery.pokes {
                        f.write_all_at(bytes, *at).unwrap();
                    }
                    let n = name.clone();
                    let got = outcome_of(&what, move || attack(path, &n, None));
                    let _ = std::fs::remove_file(shm_path(&name));
                    got
                };
                let allowed = expected(&case, &forgery, path);
                if !allowed.contains(&got) {
                    wrong.push(format!("{what}: got {got:?}, expected one of {allowed:?}"));
                }
                runs += 1;
            }
        }
    }
    eprintln!("{runs} forged opens survived");
    assert!(
        wrong.is_empty(),
        "{} wrong outcomes:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    assert!(runs > 1500, "the matrix shrank to {runs} runs");
}
