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
    Condvar, Event, LockError, Mutex, RawMutex, ReentrantMutex, RwLock, Semaphore,
};
use shmkit::posix::pipe::{End, OneWayPipe, Pipe};
use shmkit::posix::queue::{Queue, QueueParams};
use shmkit::posix::ring::Ring;
use shmkit::posix::sync as psync;
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
    shmkit_testkit::require_exec!("mutex_owner_alive_waiters_then_dead_after_kill9");
    let _serial = serial();
    let name = unique_name("insp-mutex");
    let m = psync::Mutex::create(&name, Mutex::new(41u64)).unwrap();
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
    // Held, with the WAITERS bit (bit 30) and no corruption reported.
    let lock = value(&out, "lock");
    let word = u32::from_str_radix(
        lock.trim_start_matches("held (word 0x")
            .trim_end_matches(')'),
        16,
    )
    .unwrap_or_else(|e| panic!("{lock}: {e}"));
    assert_ne!(word & (1 << 30), 0, "{out}");
    assert!(!out.contains("corrupt"), "{out}");
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
    // Inspecting took nothing over: the next locker is the one told, and
    // the lock stays poisoned until a recoverer repairs it.
    assert_eq!(m.lock().unwrap_err(), LockError::OwnerDied);
    let out = inspect_ok(&name);
    assert!(value(&out, "poisoned").starts_with("yes"), "{out}");
    let mut g = m.recover().unwrap();
    assert!(g.owner_died());
    assert_eq!(g.get(), 42);
    g.mark_consistent();
    drop(g);
    let out = inspect_ok(&name);
    assert!(values(&out, "poisoned").is_empty(), "{out}");
    assert!(value(&out, "lock").starts_with("unlocked"), "{out}");
    assert_eq!(value(&out, "owner"), "none");
}

#[test]
fn raw_mutex_and_a_locked_value_whose_holder_exited() {
    shmkit_testkit::require_exec!("raw_mutex_and_a_locked_value_whose_holder_exited");
    let _serial = serial();
    let raw_name = unique_name("insp-raw");
    let raw = psync::Lock::create(&raw_name, RawMutex::new()).unwrap();
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
    // Python's Value(lock=True) is a shmkit Mutex.
    assert_eq!(value(&out, "kind"), "mutex (5)");
    assert!(value(&out, "lock").starts_with("held"), "{out}");
    assert!(
        value(&out, "owner").starts_with(&format!("tid {pid}, dead")),
        "{out}"
    );
    assert!(value(&out, "data").starts_with('8'), "{out}");
    drop(raw);
}

#[test]
fn reentrant_and_rwlock_held_in_a_child() {
    shmkit_testkit::require_exec!("reentrant_and_rwlock_held_in_a_child");
    let _serial = serial();
    let rname = unique_name("insp-rlock");
    let r = psync::ReentrantMutex::create(&rname, ReentrantMutex::new(5u32)).unwrap();
    let wname = unique_name("insp-rw");
    let w = psync::RwLock::create(&wname, RwLock::new(6u16)).unwrap();
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
    shmkit_testkit::require_exec!("semaphore_event_and_condvar_with_sleepers_in_other_processes");
    let _serial = serial();
    let sname = unique_name("insp-sem");
    let s = psync::Semaphore::create(&sname, Semaphore::new(0)).unwrap();
    let ename = unique_name("insp-event");
    let e = psync::Event::create(&ename, Event::new()).unwrap();
    let cname = unique_name("insp-cv");
    let cv = psync::Condvar::create(&cname, Condvar::new()).unwrap();
    let m = psync::Mutex::anonymous(Mutex::new(0u8)).unwrap();

    let acquirer = fork(|| {
        s.acquire().forget();
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
    shmkit_testkit::require_exec!("barrier_parties_generation_and_a_waiting_child");
    let _serial = serial();
    let name = unique_name("insp-barrier");
    let b = psync::Barrier::create(&name, 2).unwrap();
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
    shmkit_testkit::require_exec!("ring_and_queue_with_messages_and_attached_producers");
    let _serial = serial();
    let me = std::process::id();
    let rname = unique_name("insp-ring");
    let ring = Ring::<u64>::create(&rname, 8).unwrap();
    let qname = unique_name("insp-queue");
    let q = Queue::<u32>::create(&qname, QueueParams::new(16).with_registry(4, 2)).unwrap();
    let ready = Ready::new();
    let child = fork(|| {
        let mut tx = ring.view().producer().unwrap();
        tx.push_slice(&[1, 2, 3]).unwrap();
        let mut qtx = q.view().producer().unwrap();
        for i in 0..5 {
            qtx.try_push(i).unwrap();
        }
        ready.signal();
        park_forever()
    });
    ready.wait();
    let pid = child.pid();
    let mut rx = q.view().consumer().unwrap();
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
    shmkit_testkit::require_exec!("pipes_count_pending_messages_per_direction");
    let _serial = serial();
    let me = std::process::id();
    let pname = unique_name("insp-pipe");
    let pipe = OneWayPipe::create(&pname, 64).unwrap();
    let mut tx = pipe.view().sender().unwrap();
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
    let duplex = Pipe::create(&dname, 64).unwrap();
    let _end0 = duplex.end(End::A).unwrap();
    let ready = Ready::new();
    let child = fork(|| {
        let end1 = duplex.end(End::B).unwrap();
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
    // Owned ends record a presence token: the role lives while any
    // `fork` copy of the handle does, and inspect says so.
    let shared = |who: &str, pid: u32| {
        let v = value(&out, who);
        assert!(
            v.starts_with(&format!(
                "pid {pid}, alive; handle shared across fork (presence token 0x"
            )),
            "{who}: {v}"
        );
    };
    shared("0→1 sender", me);
    shared("0→1 receiver", pid);
    assert_eq!(
        value(&out, "1→0 pending"),
        "1 message(s), 8 byte(s) (head 0, tail 8)"
    );
    shared("1→0 sender", pid);
    kill(child);
}

#[test]
fn map_capacity_length_and_a_writer_lock_held_then_dead() {
    shmkit_testkit::require_exec!("map_capacity_length_and_a_writer_lock_held_then_dead");
    let _serial = serial();
    let name = unique_name("insp-map");
    let map = SharedMap::<u64, u64>::create(&name, 100).unwrap();
    for k in 0..5 {
        map.insert(k, k * 10).unwrap();
    }
    let out = inspect_ok(&name);
    assert_eq!(value(&out, "kind"), "map (17)");
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
    assert_eq!(value(&out, "kind"), "byte-map (18)");
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

/// The 4 bytes at `off` of `/dev/shm/NAME`.
fn peek(name: &str, off: u64) -> [u8; 4] {
    let f = std::fs::File::open(format!("/dev/shm/{}", name.trim_start_matches('/'))).unwrap();
    let mut b = [0u8; 4];
    f.read_exact_at(&mut b, off).unwrap();
    b
}

/// The payload's byte `off` as a file offset.
fn payload(off: u64) -> u64 {
    HEADER_LEN as u64 + off
}

#[test]
fn corrupt_ring_and_mutex_payloads_are_reported() {
    shmkit_testkit::require_exec!("corrupt_ring_and_mutex_payloads_are_reported");
    let _serial = serial();
    // A ring whose tail (the control block's first word) ran 1000 ahead.
    let rname = unique_name("insp-bad-ring");
    let ring = Ring::<u64>::create(&rname, 8).unwrap();
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

    // A mutex word with every bit set: not recoverable, with flag bits
    // no locker sets on a not-recoverable word.
    let mname = unique_name("insp-bad-mutex");
    let m = psync::Mutex::create(&mname, Mutex::new(1u32)).unwrap();
    scribble(&mname, payload(0), &u32::MAX.to_ne_bytes());
    let (code, out) = inspect(&mname);
    assert_eq!(code, 2, "{out}");
    assert!(value(&out, "lock").starts_with("NOT RECOVERABLE"), "{out}");
    assert!(
        value(&out, "lock word")
            .starts_with("corrupt: flag bits are set on a not-recoverable lock"),
        "{out}"
    );
    // WAITERS on a free word: nobody sleeps on a free lock.
    scribble(&mname, payload(0), &(1u32 << 30).to_ne_bytes());
    let (code, out) = inspect(&mname);
    assert_eq!(code, 2, "{out}");
    assert!(
        value(&out, "lock word").starts_with("corrupt: the WAITERS bit is set on a free lock"),
        "{out}"
    );
    // A token nobody holds, that recorded no thread: dead, not corrupt.
    scribble(&mname, payload(0), &(1u32 << 23).to_ne_bytes());
    let out = inspect_ok(&mname);
    assert!(
        value(&out, "owner").starts_with("token 0x800000, dead"),
        "{out}"
    );
    drop((ring, m));
}

/// Every kind through the binary with its whole payload overwritten by
/// garbage: the report comes out, exit 0 or 2, no crash. (The posix crate's
/// `inspect` tests run many more garbage rounds in-process.)
#[test]
fn garbage_payloads_of_every_kind_never_crash_the_binary() {
    shmkit_testkit::require_exec!("garbage_payloads_of_every_kind_never_crash_the_binary");
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
            let h = psync::Mutex::create(&n, Mutex::new(0u64)).unwrap();
            (n, Box::new(h))
        },
        {
            let n = unique_name("insp-g-rlock");
            let h = psync::ReentrantMutex::create(&n, ReentrantMutex::new(0u8)).unwrap();
            (n, Box::new(h))
        },
        {
            let n = unique_name("insp-g-rw");
            let h = psync::RwLock::create(&n, RwLock::new(0u32)).unwrap();
            (n, Box::new(h))
        },
        {
            let n = unique_name("insp-g-sem");
            let h = psync::Semaphore::create(&n, Semaphore::new(1)).unwrap();
            (n, Box::new(h))
        },
        {
            let n = unique_name("insp-g-event");
            let h = psync::Event::create(&n, Event::new()).unwrap();
            (n, Box::new(h))
        },
        {
            let n = unique_name("insp-g-cv");
            let h = psync::Condvar::create(&n, Condvar::new()).unwrap();
            (n, Box::new(h))
        },
        {
            let n = unique_name("insp-g-barrier");
            let h = psync::Barrier::create(&n, 4).unwrap();
            (n, Box::new(h))
        },
        {
            let n = unique_name("insp-g-ring");
            let h = Ring::<u16>::create(&n, 16).unwrap();
            (n, Box::new(h))
        },
        {
            let n = unique_name("insp-g-queue");
            let h = Queue::<u64>::create(&n, QueueParams::new(8).with_registry(2, 2)).unwrap();
            (n, Box::new(h))
        },
        {
            let n = unique_name("insp-g-pipe");
            let h = OneWayPipe::create(&n, 32).unwrap();
            (n, Box::new(h))
        },
        {
            let n = unique_name("insp-g-duplex");
            let h = Pipe::create(&n, 32).unwrap();
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
    shmkit_testkit::require_exec!("mapped_by_names_the_creator_and_not_the_inspector");
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
    shmkit_testkit::require_exec!("gc_keeps_a_segment_mapped_by_a_dead_creators_child");
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

// ------------------------------------------- issue 8, item 4: honest states

/// `inspect` that must report a sound object: exit 0 and no `corrupt`
/// anywhere (a healthy object in any state honest processes leave it in).
fn honest(name: &str, what: &str) -> String {
    let (code, out) = inspect(name);
    assert_eq!(code, 0, "{what}: exit {code}\n{out}");
    assert!(!out.contains("corrupt"), "{what}: reported corrupt\n{out}");
    out
}

/// SIGSTOPs a child and waits until it is stopped.
fn freeze(child: &Child) {
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.pid() as i32, libc::SIGSTOP) };
    let pid = child.pid();
    eventually("the child to stop", || {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            s.rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('T'))
        })
    });
}

fn thaw(child: &Child) {
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.pid() as i32, libc::SIGCONT) };
}

/// A mutex through every state honest lockers leave its word in — free,
/// held, held with a spinner (bit 31, the bit the decoder used to call
/// reserved), free but reserved for a spinner, held with sleepers, held
/// by a dead owner with sleepers, not recoverable — each reported without
/// corruption.
#[test]
fn a_mutex_in_every_honest_state_is_not_reported_corrupt() {
    shmkit_testkit::require_exec!("a_mutex_in_every_honest_state_is_not_reported_corrupt");
    let _serial = serial();
    let name = unique_name("honest-mutex");
    let m = psync::Mutex::create(&name, Mutex::new(0u64)).unwrap();
    honest(&name, "free");

    let (ready, go) = (Ready::new(), Ready::new());
    let holder = fork(|| {
        let g = m.lock().unwrap();
        ready.signal();
        go.wait();
        drop(g);
        ready.signal();
        park_forever()
    });
    ready.wait();
    honest(&name, "held");

    // A spinner with an endless budget, frozen while its bit is set.
    let spinner = fork(|| {
        if let Ok(g) = m.lock_spin(
            shmkit::core::wait::Spin {
                iterations: u32::MAX,
            },
            None,
        ) {
            std::mem::forget(g);
        }
        park_forever()
    });
    eventually("the SPINNER bit", || m.raw().snapshot().spinner);
    freeze(&spinner);
    let out = honest(&name, "held with a spinner");
    assert!(value(&out, "spinner").starts_with("yes"), "{out}");

    // The holder unlocks: the free word stays reserved for the spinner.
    go.signal();
    ready.wait();
    let out = honest(&name, "free, reserved for a spinner");
    assert!(value(&out, "lock").starts_with("unlocked"), "{out}");
    assert!(value(&out, "spinner").starts_with("yes"), "{out}");
    thaw(&spinner);
    eventually("the spinner to take the lock", || {
        m.raw().snapshot().word & shmkit::core::owner::ID_MASK != 0
    });

    // A sleeper, frozen once asleep.
    let sleeper = fork(|| match m.lock() {
        Err(LockError::OwnerDied) => match m.recover() {
            Ok(g) if g.owner_died() => {
                drop(g); // unmarked: not recoverable
                0
            }
            _ => 2,
        },
        _ => 1,
    });
    eventually("the WAITERS bit", || m.raw().snapshot().waiters);
    let out = honest(&name, "held with sleepers");
    assert!(value(&out, "waiters").starts_with("yes"), "{out}");
    freeze(&sleeper);

    kill(spinner);
    let out = honest(&name, "dead owner, sleepers");
    assert!(value(&out, "owner").contains("dead"), "{out}");
    assert!(value(&out, "waiters").starts_with("yes"), "{out}");

    thaw(&sleeper);
    assert!(sleeper
        .wait_timeout(Duration::from_secs(10))
        .is_some_and(|e| e.success()));
    let out = honest(&name, "not recoverable");
    assert!(value(&out, "lock").starts_with("NOT RECOVERABLE"), "{out}");
    kill(holder);
}

/// Reentrant locks, rwlocks, locked values, semaphores, events, condvars
/// and barriers in their honest states: held at depth 2, owner dead;
/// readers inside, a writer waiting for them, a dead writer; full and
/// empty with sleepers; set, cleared after a set, with waiters; a round
/// in progress, broken, reset.
#[test]
fn other_locks_and_signals_in_every_honest_state_are_not_reported_corrupt() {
    shmkit_testkit::require_exec!(
        "other_locks_and_signals_in_every_honest_state_are_not_reported_corrupt"
    );
    let _serial = serial();
    // Reentrant: held twice, then its owner killed.
    let rname = unique_name("honest-rlock");
    let r = psync::ReentrantMutex::create(&rname, ReentrantMutex::new(1u32)).unwrap();
    let ready = Ready::new();
    let child = fork(|| {
        std::mem::forget(r.lock().unwrap());
        std::mem::forget(r.lock().unwrap());
        ready.signal();
        park_forever()
    });
    ready.wait();
    honest(&rname, "reentrant held at depth 2");
    kill(child);
    honest(&rname, "reentrant, owner dead");

    // RwLock: two readers, then a writer waiting for them, then killed.
    let wname = unique_name("honest-rw");
    let w = psync::RwLock::create(&wname, RwLock::new(0u32)).unwrap();
    let readers = fork(|| {
        let (a, b) = (w.read().unwrap(), w.read().unwrap());
        std::mem::forget((a, b));
        ready.signal();
        park_forever()
    });
    ready.wait();
    honest(&wname, "rwlock with readers");
    let writer = fork(|| {
        std::mem::forget(w.write());
        park_forever()
    });
    eventually("the writer to wait for readers", || {
        w.snapshot().writer.word != 0
    });
    honest(&wname, "rwlock: a writer waiting for readers");
    kill(writer);
    kill(readers);
    let out = honest(&wname, "rwlock: dead writer");
    assert!(value(&out, "owner").contains("dead"), "{out}");

    // A locked value whose holder died.
    let lname = unique_name("honest-locked");
    let v = LockedValue::<u64>::create(&lname, 3).unwrap();
    let child = fork(|| {
        std::mem::forget(v.lock().unwrap());
        0
    });
    assert!(child.wait().success());
    honest(&lname, "locked value, holder exited");

    // Semaphore: full, then empty with a sleeper.
    let sname = unique_name("honest-sem");
    let s = psync::Semaphore::create(&sname, Semaphore::bounded(2)).unwrap();
    honest(&sname, "semaphore full");
    s.try_acquire().unwrap().forget();
    s.try_acquire().unwrap().forget();
    let acquirer = fork(|| {
        s.acquire().forget();
        0
    });
    eventually("a sleeping acquirer", || s.sleepers() == 1);
    honest(&sname, "semaphore empty with a sleeper");
    s.release().unwrap();
    assert!(acquirer
        .wait_timeout(Duration::from_secs(10))
        .is_some_and(|e| e.success()));

    // Event: waiters, set, cleared after sets (a generation in the word).
    let ename = unique_name("honest-event");
    let e = psync::Event::create(&ename, Event::new()).unwrap();
    let waiter = fork(|| i32::from(!e.wait_timeout(Duration::from_secs(10))));
    eventually("a sleeping event waiter", || e.has_waiters());
    honest(&ename, "event with a waiter");
    e.set();
    e.clear();
    assert!(waiter
        .wait_timeout(Duration::from_secs(10))
        .is_some_and(|x| x.success()));
    for _ in 0..5 {
        e.set();
    }
    let out = honest(&ename, "event set");
    assert_eq!(value(&out, "event"), "set");
    e.clear();
    let out = honest(&ename, "event cleared after sets");
    assert_eq!(value(&out, "event"), "clear");
    assert!(value(&out, "generation").starts_with("2 "), "{out}");

    // Condvar with a sleeper.
    let cname = unique_name("honest-cv");
    let cv = psync::Condvar::create(&cname, Condvar::new()).unwrap();
    let cm = psync::Mutex::anonymous(Mutex::new(0u8)).unwrap();
    let cw = fork(|| {
        let g = cm.lock().unwrap();
        i32::from(cv.wait(g).is_err())
    });
    eventually("a condvar sleeper", || cv.sleepers() == 1);
    honest(&cname, "condvar with a sleeper");
    cv.notify_all();
    assert!(cw
        .wait_timeout(Duration::from_secs(10))
        .is_some_and(|x| x.success()));

    // Barrier: a party waiting, then broken by a timeout, then reset.
    let bname = unique_name("honest-barrier");
    let b = psync::Barrier::create(&bname, 3).unwrap();
    let party = fork(|| i32::from(b.wait().is_ok()));
    eventually("a waiting party", || b.n_waiting() == 1);
    honest(&bname, "barrier, one of three arrived");
    assert!(b.wait_timeout(Duration::from_millis(1)).is_err());
    let out = honest(&bname, "barrier broken");
    assert!(value(&out, "broken").starts_with("yes"), "{out}");
    let _ = party.wait_timeout(Duration::from_secs(10));
    b.reset();
    honest(&bname, "barrier reset");
}

/// Rings, queues and pipes: empty, full, and with their producer (or
/// sender) killed, or their receiver gone.
#[test]
fn queues_and_pipes_in_every_honest_state_are_not_reported_corrupt() {
    shmkit_testkit::require_exec!(
        "queues_and_pipes_in_every_honest_state_are_not_reported_corrupt"
    );
    let _serial = serial();
    let ready = Ready::new();

    let rname = unique_name("honest-ring");
    let ring = Ring::<u32>::create(&rname, 4).unwrap();
    honest(&rname, "ring empty");
    let producer = fork(|| {
        let mut tx = ring.view().producer().unwrap();
        for i in 0..4 {
            tx.try_push(i).unwrap();
        }
        ready.signal();
        park_forever()
    });
    ready.wait();
    let out = honest(&rname, "ring full");
    assert!(value(&out, "occupancy").starts_with("4 of 4"), "{out}");
    kill(producer);
    honest(&rname, "ring full, producer dead");

    let qname = unique_name("honest-queue");
    let q = Queue::<u64>::create(&qname, QueueParams::new(4).with_registry(2, 2)).unwrap();
    honest(&qname, "queue empty");
    let producer = fork(|| {
        let mut tx = q.view().producer().unwrap();
        for i in 0..4 {
            tx.try_push(i).unwrap();
        }
        ready.signal();
        park_forever()
    });
    ready.wait();
    honest(&qname, "queue full");
    kill(producer);
    let mut rx = q.view().consumer().unwrap();
    honest(&qname, "queue full, producer dead, a consumer attached");
    while rx.try_pop().is_ok() {}
    honest(&qname, "queue drained");

    let pname = unique_name("honest-pipe");
    let pipe = OneWayPipe::create(&pname, 64).unwrap();
    honest(&pname, "pipe empty");
    let sender = fork(|| {
        let mut tx = pipe.view().sender().unwrap();
        while tx.try_send_bytes(b"0123456789").is_ok() {}
        ready.signal();
        park_forever()
    });
    ready.wait();
    honest(&pname, "pipe full");
    kill(sender);
    honest(&pname, "pipe full, sender dead");
    let rx = pipe.view().receiver().unwrap();
    drop(rx);
    honest(&pname, "pipe full, receiver gone");

    let dname = unique_name("honest-duplex");
    let duplex = Pipe::create(&dname, 64).unwrap();
    let end0 = duplex.end(End::A).unwrap();
    end0.send_bytes(b"ping").unwrap();
    honest(&dname, "duplex, one message pending");
}

/// Forged words in byte-message queues, joinable queues and maps (a
/// peer's writes, made on disk while the creator holds the segment): the
/// binary reports each as `corrupt: …` and exits 2, never crashes or
/// panics; an unfinished count at its limit is no corruption (only a
/// number).
#[test]
fn forged_message_queues_and_maps_are_reported_corrupt() {
    use shmkit::core::map::{Format, Shape};
    use shmkit::core::queue::joinable::{join_layout, JoinableQueue};
    use shmkit::core::queue::mpmc;
    use shmkit::core::queue::msg::{MsgParams, MsgQueue};
    use shmkit::Shared;

    shmkit_testkit::require_exec!("forged_message_queues_and_maps_are_reported_corrupt");
    let _serial = serial();
    // `label`'s line reports corruption, saying `detail`; exit 2.
    let corrupt = |name: &str, label: &str, detail: &str| {
        let (code, out) = inspect(name);
        assert_eq!(code, 2, "{label}: {out}");
        let v = value(&out, label);
        assert!(
            v.starts_with("corrupt: ") && v.contains(detail),
            "{label}: {v}\n{out}"
        );
    };
    let params = MsgParams::new(4, 16).with_registry(2, 2);
    let layout = params.layout().unwrap();
    let stamp = |i: usize| payload(layout.stamp_at(i) as u64);
    for joinable in [false, true] {
        let name = unique_name(if joinable {
            "insp-f-join"
        } else {
            "insp-f-msg"
        });
        let (_m, _j);
        // Ok: the joinable queue's producer; Err: the byte queue's.
        let (mut tx, mut rx) = if joinable {
            _j = Shared::<JoinableQueue>::create(&name, params).unwrap();
            let (tx, rx) = (_j.view().producer().unwrap(), _j.view().consumer().unwrap());
            (Ok(tx), rx)
        } else {
            _m = Shared::<MsgQueue>::create(&name, params).unwrap();
            let (tx, rx) = (_m.view().producer().unwrap(), _m.view().consumer().unwrap());
            (Err(tx), rx)
        };
        let mut send = |m: &[u8]| match &mut tx {
            Ok(j) => j.try_send(m).unwrap(),
            Err(p) => p.try_send(m).unwrap(),
        };
        send(b"hello");
        let out = inspect_ok(&name);
        assert!(
            value(&out, "occupancy").starts_with("1 of 4 (1 committed"),
            "{out}"
        );

        // A committed message whose length word says more than max_len.
        scribble(&name, stamp(0) + 8, &17u64.to_ne_bytes());
        corrupt(
            &name,
            "lengths",
            "1 committed message(s) longer than max_len 16",
        );
        scribble(&name, stamp(0) + 8, &u64::MAX.to_ne_bytes());
        corrupt(
            &name,
            "lengths",
            "1 committed message(s) longer than max_len 16",
        );
        let mut buf = [0u8; 16];
        assert!(rx.try_recv_into(&mut buf).is_err(), "the forged message");
        send(b"again");
        inspect_ok(&name);

        // A stamp in no possible state, then a claim naming a producer
        // entry the registry does not have (2 entries; ORPHAN is 4095).
        scribble(&name, stamp(2), &3u64.to_ne_bytes());
        corrupt(&name, "stamps", "1 slot stamp(s) hold no possible state");
        scribble(
            &name,
            stamp(2),
            &mpmc::stamp(0, 2, mpmc::CLAIMED).to_ne_bytes(),
        );
        corrupt(&name, "stamps", "1 slot stamp(s) hold no possible state");
        // A claim of an orphaned producer is a possible state.
        scribble(
            &name,
            stamp(2),
            &mpmc::stamp(0, mpmc::ORPHAN, mpmc::CLAIMED).to_ne_bytes(),
        );
        let out = inspect_ok(&name);
        assert!(value(&out, "in flight").starts_with("1 push(es)"), "{out}");
        scribble(&name, stamp(2), &0u64.to_ne_bytes());

        if joinable {
            // Any count is possible: the line shows it.
            let (count_at, _) = join_layout(&params).unwrap();
            scribble(&name, payload(count_at as u64), &u32::MAX.to_ne_bytes());
            let out = inspect_ok(&name);
            assert_eq!(
                value(&out, "unfinished"),
                format!("{} task(s) sent and not yet marked done", u32::MAX),
                "{out}"
            );
        }
        // Impossible parameter words in the header: the layout line.
        scribble(&name, 72, &3u64.to_ne_bytes());
        corrupt(&name, "layout", "parameter words");
        drop((tx, rx));
    }

    // Maps: a stripe count past the capacity, a stripe lock word no
    // locker writes, impossible parameters.
    for (bytes, shape) in [
        (
            false,
            Shape::new(16, Format::Fixed(8), Format::Fixed(8)).unwrap(),
        ),
        (
            true,
            Shape::new(16, Format::Bytes(8), Format::Bytes(16)).unwrap(),
        ),
    ] {
        let name = unique_name("insp-f-map");
        let (_m, _b);
        if bytes {
            _b = SharedByteMap::create(&name, (16, 8, 16)).unwrap();
            _b.insert(b"k", b"v").unwrap();
        } else {
            _m = SharedMap::<u64, u64>::create(&name, 16).unwrap();
            _m.insert(1, 2).unwrap();
        }
        let out = inspect_ok(&name);
        assert!(value(&out, "length").starts_with("1 of 16"), "{out}");
        let count = payload(shape.count_offset(0) as u64);
        let honest = peek(&name, count);
        scribble(&name, count, &u32::MAX.to_ne_bytes());
        corrupt(
            &name,
            "length",
            "entries counted, more than the capacity 16",
        );
        scribble(&name, count, &honest);
        let lock = payload(shape.stripe_offset(0) as u64);
        scribble(&name, lock, &u32::MAX.to_ne_bytes());
        corrupt(&name, "writer lock", "stripe 0's lock is not recoverable");
        scribble(&name, lock, &0u32.to_ne_bytes());
        inspect_ok(&name);
        scribble(&name, 72, &u64::MAX.to_ne_bytes());
        corrupt(&name, "layout", "capacity");
    }
}
