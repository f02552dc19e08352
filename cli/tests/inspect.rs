//! `shmkit inspect NAME` on every kind of object, put into known states by
//! real processes: locks held by forked children that sleep or exit or are
//! SIGKILLed, sleepers blocked in other processes, queues with messages
//! and attached producers; and payloads corrupted on disk.
//!
//! The binary maps segments read-only: a write anywhere in the inspection
//! would crash it, and every test checks it exits normally.

use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::time::{Duration, Instant};

use shmkit::core::header::HEADER_LEN;
use shmkit::core::sync::{
    Barrier, Condvar, Event, LockError, Mutex, RawMutex, ReentrantMutex, RwLock, Semaphore,
};
use shmkit::posix::queue::{SharedDuplexPipe, SharedPipe, SharedQueue, SharedRing};
use shmkit::posix::sync::{
    SharedBarrier, SharedCondvar, SharedEvent, SharedMutex, SharedRawMutex, SharedReentrantMutex,
    SharedRwLock, SharedSemaphore,
};
use shmkit::{Array, LockedValue, SharedByteMap, SharedMap};
use shmkit_testkit::{fork, unique_name, Child};

/// Runs the tests of this file one at a time. A child forked by one test
/// thread inherits the pipes of a `Command` another thread is spawning
/// (close-on-exec only acts on exec) and, if it then sleeps, keeps that
/// command's output open: two such tests could wait on each other forever.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// `shmkit inspect NAME`: exit code and stdout. Fails the test if the
/// binary crashed (a signal, e.g. SIGSEGV from a write to the read-only
/// mapping) or panicked.
fn inspect(name: &str) -> (i32, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_shmkit"))
        .args(["inspect", name])
        .output()
        .expect("run the shmkit binary");
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    let code = o
        .status
        .code()
        .unwrap_or_else(|| panic!("shmkit inspect crashed: {:?}\n{out}{err}", o.status));
    assert!(!err.contains("panicked"), "{err}");
    (code, out)
}

/// `inspect` that must succeed (valid header, sound payload).
fn inspect_ok(name: &str) -> String {
    let (code, out) = inspect(name);
    assert_eq!(code, 0, "{out}");
    out
}

/// The values of every line labelled `label`.
fn values(out: &str, label: &str) -> Vec<String> {
    let key = format!("{label}:");
    out.lines()
        .filter_map(|l| l.strip_prefix(&key))
        .map(|v| v.trim().to_string())
        .collect()
}

/// The value of the line labelled `label`.
fn value(out: &str, label: &str) -> String {
    values(out, label)
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no {label:?} line in\n{out}"))
}

/// Polls `cond` (a state another process sets) until it holds; fails the
/// test after 10 s.
fn eventually(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A child's "I am ready" signal.
struct Ready(UnixStream, UnixStream);

impl Ready {
    fn new() -> Ready {
        let (a, b) = UnixStream::pair().unwrap();
        Ready(a, b)
    }

    /// In the child: say so.
    fn signal(&self) {
        (&self.1).write_all(b"r").unwrap();
    }

    /// In the parent: wait for the child to say so.
    fn wait(&self) {
        let mut b = [0u8; 1];
        (&self.0).read_exact(&mut b).unwrap();
    }
}

/// Sleeps until killed (a child holding something).
fn park_forever() -> ! {
    loop {
        std::thread::park();
    }
}

fn kill(child: Child) {
    child.kill9();
    child.wait();
}

/// `pid N` for this test's thread, or `tid N of pid P` (tests run on
/// threads of their own).
fn this_task() -> String {
    let (tid, pid) = (shmkit::core::owner::current_thread_id(), std::process::id());
    if tid == pid {
        format!("pid {pid}")
    } else {
        format!("tid {tid} of pid {pid}")
    }
}

#[test]
fn mutex_owner_alive_waiters_then_dead_after_kill9() {
    let _serial = serial();
    let name = unique_name("insp-mutex");
    let m = SharedMutex::create(&name, Mutex::new(41u64)).unwrap();
    let ready = Ready::new();
    let holder = fork(|| {
        let g = m.lock().unwrap();
        g.set(42);
        std::mem::forget(g);
        ready.signal();
        park_forever()
    });
    ready.wait();
    let holder_pid = holder.pid();
    // A second process blocks in lock(): it sets the WAITERS bit.
    let waiter = fork(|| i32::from(m.lock().is_err()));
    eventually("the waiter to sleep", || m.raw().snapshot().waiters);

    let out = inspect_ok(&name);
    assert_eq!(value(&out, "kind"), "mutex (5)");
    assert!(value(&out, "lock").starts_with("held (word 0x4"), "{out}");
    assert_eq!(value(&out, "owner"), format!("pid {holder_pid}, alive"));
    assert!(value(&out, "waiters").starts_with("yes"), "{out}");
    assert_eq!(value(&out, "data"), "42 (u64), read without the lock");

    kill(waiter);
    kill(holder);
    let out = inspect_ok(&name);
    let owner = value(&out, "owner");
    assert!(
        owner.starts_with(&format!(
            "tid {holder_pid}, dead: the owner died holding the lock"
        )),
        "{out}"
    );
    assert!(owner.contains("OwnerDied"), "{owner}");
    // Inspecting took nothing over: the next locker is the one told.
    match m.lock() {
        Err(LockError::OwnerDied(mut g)) => {
            assert_eq!(g.get(), 42);
            g.mark_consistent();
        }
        other => panic!("expected OwnerDied, got {other:?}"),
    }
    let out = inspect_ok(&name);
    assert!(value(&out, "lock").starts_with("unlocked"), "{out}");
    assert_eq!(value(&out, "owner"), "none");
}

#[test]
fn raw_mutex_and_a_locked_value_whose_holder_exited() {
    let _serial = serial();
    let raw_name = unique_name("insp-raw");
    let raw = SharedRawMutex::create(&raw_name, RawMutex::new()).unwrap();
    let out = inspect_ok(&raw_name);
    assert!(value(&out, "lock").starts_with("unlocked"), "{out}");
    assert!(
        values(&out, "data").is_empty(),
        "a RawMutex has no data: {out}"
    );

    let name = unique_name("insp-locked");
    let v = LockedValue::<u64>::create(&name, 7).unwrap();
    // The child locks, writes, and exits without unlocking.
    let child = fork(|| {
        let g = v.lock().unwrap();
        g.set(8);
        std::mem::forget(g);
        0
    });
    let pid = child.pid();
    assert!(child.wait().success());
    let out = inspect_ok(&name);
    assert_eq!(value(&out, "kind"), "locked-value (4)");
    assert!(value(&out, "lock").starts_with("held"), "{out}");
    assert!(
        value(&out, "owner").starts_with(&format!("tid {pid}, dead")),
        "{out}"
    );
    assert_eq!(value(&out, "elements"), "[8]");
    drop(raw);
}

#[test]
fn reentrant_and_rwlock_held_in_a_child() {
    let _serial = serial();
    let rname = unique_name("insp-rlock");
    let r = SharedReentrantMutex::create(&rname, ReentrantMutex::new(5u32)).unwrap();
    let wname = unique_name("insp-rw");
    let w = SharedRwLock::create(&wname, RwLock::new(6u16)).unwrap();
    let ready = Ready::new();
    let child = fork(|| {
        std::mem::forget(r.lock().unwrap());
        std::mem::forget(r.lock().unwrap());
        std::mem::forget(w.read().unwrap());
        ready.signal();
        park_forever()
    });
    ready.wait();
    let pid = child.pid();

    let out = inspect_ok(&rname);
    assert_eq!(value(&out, "kind"), "reentrant-mutex (6)");
    assert_eq!(value(&out, "owner"), format!("pid {pid}, alive"));
    assert!(value(&out, "depth").starts_with("2 "), "{out}");
    assert!(value(&out, "data").starts_with("5 (u32)"), "{out}");

    let out = inspect_ok(&wname);
    assert_eq!(value(&out, "kind"), "rwlock (7)");
    assert!(value(&out, "writer lock").starts_with("unlocked"), "{out}");
    assert!(value(&out, "readers").starts_with("1 inside"), "{out}");
    assert_eq!(value(&out, "consistent"), "yes");
    assert!(value(&out, "data").starts_with("6 (u16)"), "{out}");
    kill(child);
}

#[test]
fn semaphore_event_and_condvar_with_sleepers_in_other_processes() {
    let _serial = serial();
    let sname = unique_name("insp-sem");
    let s = SharedSemaphore::create(&sname, Semaphore::new(0)).unwrap();
    let ename = unique_name("insp-event");
    let e = SharedEvent::create(&ename, Event::new()).unwrap();
    let cname = unique_name("insp-cv");
    let cv = SharedCondvar::create(&cname, Condvar::new()).unwrap();
    let m = SharedMutex::anonymous(Mutex::new(0u8)).unwrap();

    let acquirer = fork(|| {
        s.acquire();
        0
    });
    let waiter = fork(|| {
        e.wait();
        0
    });
    let cv_waiter = fork(|| {
        let g = m.lock().unwrap();
        i32::from(cv.wait(g).is_err())
    });
    eventually("a sleeping acquirer", || s.sleepers() == 1);
    eventually("a sleeping event waiter", || e.has_waiters());
    eventually("a sleeping condvar waiter", || cv.sleepers() == 1);

    let out = inspect_ok(&sname);
    assert_eq!(value(&out, "kind"), "semaphore (8)");
    assert_eq!(value(&out, "permits"), "0 available, unbounded");
    assert!(value(&out, "sleepers").starts_with("1 "), "{out}");

    let out = inspect_ok(&ename);
    assert_eq!(value(&out, "event"), "clear");
    assert!(value(&out, "waiters").starts_with("yes"), "{out}");

    let out = inspect_ok(&cname);
    assert_eq!(value(&out, "kind"), "condvar (10)");
    assert!(value(&out, "sleepers").starts_with("1 "), "{out}");

    // Wake them the ordinary way and check the state followed.
    s.release().unwrap();
    e.set();
    cv.notify_all();
    for c in [acquirer, waiter, cv_waiter] {
        assert!(c
            .wait_timeout(Duration::from_secs(10))
            .is_some_and(|x| x.success()));
    }
    assert_eq!(value(&inspect_ok(&ename), "event"), "set");
    assert!(value(&inspect_ok(&sname), "sleepers").starts_with("0 "));
}

#[test]
fn barrier_parties_generation_and_a_waiting_child() {
    let _serial = serial();
    let name = unique_name("insp-barrier");
    let b = SharedBarrier::create(&name, Barrier::new(2)).unwrap();
    let child = fork(|| {
        // Round one with the parent, then wait alone in round two.
        let ok = b.wait().is_ok() && b.wait().is_ok();
        i32::from(!ok)
    });
    b.wait().unwrap();
    eventually("the child to wait in round two", || b.n_waiting() == 1);
    let pid = child.pid();

    let out = inspect_ok(&name);
    assert_eq!(value(&out, "kind"), "barrier (11)");
    assert_eq!(value(&out, "parties"), "2");
    assert!(value(&out, "generation").starts_with("1 "), "{out}");
    assert_eq!(value(&out, "waiting"), "1 of 2 arrived this round");
    assert_eq!(value(&out, "broken"), "no");
    let parties = values(&out, "party");
    assert!(
        parties.contains(&format!("pid {pid}, alive, arrived")),
        "{out}"
    );
    assert!(
        parties.contains(&format!("{}, alive, not arrived", this_task())),
        "{out}"
    );

    kill(child);
    let out = inspect_ok(&name);
    assert!(
        values(&out, "party").contains(&format!("tid {pid}, dead, arrived")),
        "{out}"
    );
    b.unregister();
}

#[test]
fn ring_and_queue_with_messages_and_attached_producers() {
    let _serial = serial();
    let me = std::process::id();
    let rname = unique_name("insp-ring");
    let ring = SharedRing::<u64>::create(&rname, 8).unwrap();
    let qname = unique_name("insp-queue");
    let q = SharedQueue::<u32>::create_with(&qname, 16, 4, 2).unwrap();
    let ready = Ready::new();
    let child = fork(|| {
        let mut tx = ring.ring().producer().unwrap();
        tx.push_slice(&[1, 2, 3]).unwrap();
        let mut qtx = q.queue().producer().unwrap();
        for i in 0..5 {
            qtx.try_push(i).unwrap();
        }
        ready.signal();
        park_forever()
    });
    ready.wait();
    let pid = child.pid();
    let mut rx = q.queue().consumer().unwrap();
    assert_eq!((rx.try_pop(), rx.try_pop()), (Ok(0), Ok(1)));

    let out = inspect_ok(&rname);
    assert_eq!(value(&out, "kind"), "ring (12)");
    assert_eq!(value(&out, "capacity"), "8 slot(s) of 8 byte(s)");
    assert_eq!(value(&out, "occupancy"), "3 of 8 (head 0, tail 3)");
    assert_eq!(value(&out, "producer"), format!("pid {pid}, alive"));
    assert_eq!(value(&out, "consumer"), "none (never attached)");

    let out = inspect_ok(&qname);
    assert_eq!(value(&out, "kind"), "queue (13)");
    assert_eq!(value(&out, "capacity"), "16 slot(s) of 4 byte(s)");
    assert_eq!(
        value(&out, "occupancy"),
        "3 of 16 (3 committed, head 2, tail 5)"
    );
    assert_eq!(
        value(&out, "producers"),
        format!("1 attached, of 4 slot(s): pid {pid} (alive)")
    );
    assert_eq!(
        value(&out, "consumers"),
        format!("1 attached, of 2 slot(s): pid {me} (alive)")
    );

    kill(child);
    let out = inspect_ok(&rname);
    assert!(
        value(&out, "producer").starts_with(&format!("pid {pid}, dead")),
        "{out}"
    );
    let out = inspect_ok(&qname);
    assert_eq!(
        value(&out, "producers"),
        format!("0 attached, 1 dead, of 4 slot(s): pid {pid} (dead)")
    );
}

#[test]
fn pipes_count_pending_messages_per_direction() {
    let _serial = serial();
    let me = std::process::id();
    let pname = unique_name("insp-pipe");
    let pipe = SharedPipe::create(&pname, 64).unwrap();
    let mut tx = pipe.pipe().sender().unwrap();
    tx.try_send_bytes(b"hello").unwrap();
    tx.try_send_bytes(b"").unwrap();
    let out = inspect_ok(&pname);
    assert_eq!(value(&out, "kind"), "pipe (14)");
    assert_eq!(
        value(&out, "pending"),
        "2 message(s), 13 byte(s) (head 0, tail 13)"
    );
    assert_eq!(value(&out, "sender"), format!("pid {me}, alive"));

    let dname = unique_name("insp-duplex");
    let duplex = SharedDuplexPipe::create(&dname, 64).unwrap();
    let _end0 = duplex.end(0).unwrap();
    let ready = Ready::new();
    let child = fork(|| {
        let mut end1 = duplex.end(1).unwrap();
        end1.send_bytes(b"pong").unwrap();
        ready.signal();
        park_forever()
    });
    ready.wait();
    let pid = child.pid();
    let out = inspect_ok(&dname);
    assert_eq!(
        value(&out, "0→1 pending"),
        "0 message(s), 0 byte(s) (head 0, tail 0)"
    );
    assert_eq!(value(&out, "0→1 sender"), format!("pid {me}, alive"));
    assert_eq!(value(&out, "0→1 receiver"), format!("pid {pid}, alive"));
    assert_eq!(
        value(&out, "1→0 pending"),
        "1 message(s), 8 byte(s) (head 0, tail 8)"
    );
    assert_eq!(value(&out, "1→0 sender"), format!("pid {pid}, alive"));
    kill(child);
}

#[test]
fn map_capacity_length_and_a_writer_lock_held_then_dead() {
    let _serial = serial();
    let name = unique_name("insp-map");
    let map = SharedMap::<u64, u64>::create(&name, 100).unwrap();
    for k in 0..5 {
        map.insert(k, k * 10).unwrap();
    }
    let out = inspect_ok(&name);
    assert_eq!(value(&out, "kind"), "map (16)");
    assert_eq!(
        value(&out, "capacity"),
        "100 entries (256 buckets of 32 bytes, 4 writer lock(s))"
    );
    assert_eq!(value(&out, "length"), "5 of 100 (read without the locks)");
    assert_eq!(value(&out, "locks"), "none of 4 writer lock(s) held");
    // A child holds the writer lock of key 3's stripe, inside an update.
    let ready = Ready::new();
    let holder = fork(|| {
        let _ = map.update(&3, |_| {
            ready.signal();
            park_forever()
        });
        1
    });
    ready.wait();
    let pid = holder.pid();
    let out = inspect_ok(&name);
    assert_eq!(value(&out, "locks"), "1 of 4 writer lock(s) held");
    let held = value(&out, "writer lock");
    assert!(
        held.starts_with("stripe ") && held.ends_with(&format!("pid {pid}, alive")),
        "{out}"
    );
    kill(holder);
    let out = inspect_ok(&name);
    assert!(value(&out, "writer lock").contains("dead"), "{out}");
    assert!(value(&out, "repairs").starts_with("0 "), "{out}");
    // Inspecting repaired nothing: the next writer does.
    assert_eq!(map.insert(3, 31), Ok(Some(30)));
    let out = inspect_ok(&name);
    assert_eq!(value(&out, "locks"), "none of 4 writer lock(s) held");
    assert!(value(&out, "repairs").starts_with("1 "), "{out}");

    let bname = unique_name("insp-bytemap");
    let bytes = SharedByteMap::create(&bname, (10, 16, 64)).unwrap();
    bytes.insert("image", b"pixels").unwrap();
    let out = inspect_ok(&bname);
    assert_eq!(value(&out, "kind"), "byte-map (17)");
    assert_eq!(
        value(&out, "entries"),
        "keys up to 16 bytes, values up to 64 bytes"
    );
    assert_eq!(value(&out, "length"), "1 of 10 (read without the locks)");
}

/// Writes `bytes` at `off` of `/dev/shm/NAME` (outside the mapping code:
/// what a corrupt peer or a stray writer does).
fn scribble(name: &str, off: u64, bytes: &[u8]) {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/dev/shm/{}", name.trim_start_matches('/')))
        .unwrap();
    f.write_all_at(bytes, off).unwrap();
}

/// The payload's byte `off` as a file offset.
fn payload(off: u64) -> u64 {
    HEADER_LEN as u64 + off
}

#[test]
fn corrupt_ring_and_mutex_payloads_are_reported() {
    let _serial = serial();
    // A ring whose tail (the control block's first word) ran 1000 ahead.
    let rname = unique_name("insp-bad-ring");
    let ring = SharedRing::<u64>::create(&rname, 8).unwrap();
    scribble(&rname, payload(0), &1000u32.to_ne_bytes());
    let (code, out) = inspect(&rname);
    assert_eq!(code, 2, "a corrupt payload is a corrupt segment: {out}");
    assert!(
        value(&out, "occupancy")
            .starts_with("corrupt: tail - head = 1000 exceeds the capacity 8 (head 0, tail 1000)"),
        "{out}"
    );
    // A capacity in the header that is no power of two (params[0] of the
    // fingerprint at header offset 48 + 24).
    scribble(&rname, 72, &3u64.to_ne_bytes());
    let (code, out) = inspect(&rname);
    assert_eq!(code, 2, "{out}");
    assert!(
        value(&out, "capacity").starts_with("corrupt: 3 is impossible"),
        "{out}"
    );

    // A mutex word with every bit set: not recoverable, reserved bit set.
    let mname = unique_name("insp-bad-mutex");
    let m = SharedMutex::create(&mname, Mutex::new(1u32)).unwrap();
    scribble(&mname, payload(0), &u32::MAX.to_ne_bytes());
    let (code, out) = inspect(&mname);
    assert_eq!(code, 2, "{out}");
    assert!(value(&out, "lock").starts_with("NOT RECOVERABLE"), "{out}");
    assert!(
        value(&out, "lock word").starts_with("corrupt: reserved bit 31"),
        "{out}"
    );
    // An owner id no task has (pid_max <= 2^22): dead, not corrupt.
    scribble(&mname, payload(0), &(1u32 << 23).to_ne_bytes());
    let out = inspect_ok(&mname);
    assert!(
        value(&out, "owner").starts_with("tid 8388608, dead"),
        "{out}"
    );
    drop((ring, m));
}

/// Every kind through the binary with its whole payload overwritten by
/// garbage: the report comes out, exit 0 or 2, no crash. (The posix crate's
/// `inspect` tests run many more garbage rounds in-process.)
#[test]
fn garbage_payloads_of_every_kind_never_crash_the_binary() {
    let _serial = serial();
    let names: Vec<(String, Box<dyn std::any::Any>)> = vec![
        {
            let n = unique_name("insp-g-array");
            let h = Array::<u32>::create(&n, 5).unwrap();
            (n, Box::new(h))
        },
        {
            let n = unique_name("insp-g-locked");
            let h = LockedValue::<u64>::create(&n, 1).unwrap();
            (n, Box::new(h))
        },
        {
            let n = unique_name("insp-g-mutex");
            let h = SharedMutex::create(&n, Mutex::new(0u64)).unwrap();
            (n, Box::new(h))
        },
        {
            let n = unique_name("insp-g-rlock");
            let h = SharedReentrantMutex::create(&n, ReentrantMutex::new(0u8)).unwrap();
            (n, Box::new(h))
        },
        {
            let n = unique_name("insp-g-rw");
            let h = SharedRwLock::create(&n, RwLock::new(0u32)).unwrap();
            (n, Box::new(h))
        },
        {
            let n = unique_name("insp-g-sem");
            let h = SharedSemaphore::create(&n, Semaphore::new(1)).unwrap();
            (n, Box::new(h))
        },
        {
            let n = unique_name("insp-g-event");
            let h = SharedEvent::create(&n, Event::new()).unwrap();
            (n, Box::new(h))
        },
        {
            let n = unique_name("insp-g-cv");
            let h = SharedCondvar::create(&n, Condvar::new()).unwrap();
            (n, Box::new(h))
        },
        {
            let n = unique_name("insp-g-barrier");
            let h = SharedBarrier::create(&n, Barrier::new(4)).unwrap();
            (n, Box::new(h))
        },
        {
            let n = unique_name("insp-g-ring");
            let h = SharedRing::<u16>::create(&n, 16).unwrap();
            (n, Box::new(h))
        },
        {
            let n = unique_name("insp-g-queue");
            let h = SharedQueue::<u64>::create_with(&n, 8, 2, 2).unwrap();
            (n, Box::new(h))
        },
        {
            let n = unique_name("insp-g-pipe");
            let h = SharedPipe::create(&n, 32).unwrap();
            (n, Box::new(h))
        },
        {
            let n = unique_name("insp-g-duplex");
            let h = SharedDuplexPipe::create(&n, 32).unwrap();
            (n, Box::new(h))
        },
        {
            let n = unique_name("insp-g-map");
            let h = SharedMap::<u64, u64>::create(&n, 100).unwrap();
            (n, Box::new(h))
        },
        {
            let n = unique_name("insp-g-bytemap");
            let h = SharedByteMap::create(&n, (8, 16, 32)).unwrap();
            (n, Box::new(h))
        },
    ];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for (name, _handle) in &names {
        let len = std::fs::metadata(format!("/dev/shm/{}", name.trim_start_matches('/')))
            .unwrap()
            .len()
            - HEADER_LEN as u64;
        let garbage: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        scribble(name, payload(0), &garbage);
        let (code, out) = inspect(name);
        assert!(code == 0 || code == 2, "{name}: exit {code}\n{out}");
        assert!(out.contains("header:      valid"), "{name}: {out}");
    }
}

#[test]
fn mapped_by_names_the_creator_and_not_the_inspector() {
    let _serial = serial();
    let name = unique_name("insp-mapped");
    let arr = Array::<u8>::create(&name, 8).unwrap();
    let out = inspect_ok(&name);
    let me = std::process::id().to_string();
    let mapped = value(&out, "mapped by");
    assert!(
        mapped.split(", ").any(|p| p == me),
        "the creator maps it: {out}"
    );
    assert_eq!(mapped.split(", ").count(), 1, "only the creator: {out}");
    drop(arr);
}

/// The creator died, but a child it forked after creating the segment
/// still maps it (under the creator's temporary name, deleted): in use,
/// so `gc` must leave it alone, and `inspect` names the child.
#[test]
fn gc_keeps_a_segment_mapped_by_a_dead_creators_child() {
    let _serial = serial();
    let name = unique_name("insp-gc-child");
    let (mut rx, tx) = UnixStream::pair().unwrap();
    let creator = {
        let name = name.clone();
        fork(move || {
            let arr = Array::<u8>::create(&name, 8).unwrap();
            arr.persist();
            let heir = fork(|| {
                let _keep = &arr;
                // The only message on the socket: the heir's pid, once
                // it runs.
                (&tx).write_all(&std::process::id().to_ne_bytes()).unwrap();
                park_forever()
            });
            // Exit without reaping or killing the heir (`_exit` runs no
            // destructors): it lives on, mapping the segment.
            std::mem::forget(heir);
            0
        })
    };
    let mut buf = [0u8; 4];
    rx.read_exact(&mut buf).unwrap();
    let heir = u32::from_ne_bytes(buf);
    assert!(creator.wait().success());
    /// Kills the orphaned heir and removes the name, even on failure.
    struct Heir(u32, String);
    impl Drop for Heir {
        fn drop(&mut self) {
            // SAFETY: signalling a process this test started.
            unsafe { libc::kill(self.0 as i32, libc::SIGKILL) };
            let _ = std::fs::remove_file(format!("/dev/shm/{}", self.1.trim_start_matches('/')));
        }
    }
    let _heir = Heir(heir, name.clone());

    let out = inspect_ok(&name);
    assert_eq!(value(&out, "mapped by"), heir.to_string(), "{out}");
    let o = Command::new(env!("CARGO_BIN_EXE_shmkit"))
        .args(["gc", "--prefix", &name])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("no garbage"), "{out}");
}
