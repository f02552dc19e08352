//! `inspect::describe` in-process, on every kind: the lines for known
//! states, and garbage payloads and header parameters, which must come out
//! as `corrupt: …` lines, never as a panic or an out-of-bounds read.
//! (The `shmkit inspect` tests in the root package cover the same against
//! real processes holding and dying with the objects.)

use std::sync::atomic::{AtomicU8, Ordering};

use shmkit_core::sync::{Condvar, Event, Mutex, ReentrantMutex, RwLock, Semaphore};
use shmkit_posix::inspect::{describe, Lines, PayloadView};
use shmkit_posix::pipe::{OneWayPipe, Pipe};
use shmkit_posix::queue::{Queue, QueueParams};
use shmkit_posix::ring::Ring;
use shmkit_posix::sync as psync;
use shmkit_posix::{Array, LockedArray, LockedValue, Segment, SharedByteMap, SharedMap, Value};

fn view(seg: &Segment) -> PayloadView<'_> {
    // SAFETY: the payload stays mapped while `seg` lives; it is written
    // only atomically (by the objects, and by `scribble`).
    unsafe { PayloadView::new(seg.payload(), seg.payload_len()) }
}

fn lines(seg: &Segment) -> Lines {
    describe(seg.header(), &view(seg)).expect("a known kind")
}

/// The value of the first line labelled `label`.
fn value<'a>(lines: &'a Lines, label: &str) -> &'a str {
    lines
        .iter()
        .find(|(l, _)| *l == label)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {label:?} line in {lines:#?}"))
}

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Mostly small numbers, sometimes huge or extreme ones: what breaks
    /// layout arithmetic.
    fn param(&mut self) -> u64 {
        match self.next() % 6 {
            0 => 0,
            1 => self.next() % 64,
            2 => 1 << (self.next() % 64),
            3 => u64::MAX - self.next() % 4,
            4 => self.next() % 100_000,
            _ => self.next(),
        }
    }
}

/// Overwrites the whole payload with bytes from `rng` (atomically, so the
/// object's own atomics are never raced non-atomically).
fn scribble(seg: &Segment, rng: &mut Rng) {
    let p = seg.payload().as_ptr();
    for i in 0..seg.payload_len() {
        // SAFETY: `i` < payload_len, inside the writable mapping of `seg`.
        unsafe { AtomicU8::from_ptr(p.add(i)) }.store(rng.next() as u8, Ordering::Relaxed);
    }
}

/// One segment of every kind (anonymous), fresh.
fn every_kind() -> Vec<(&'static str, Box<dyn AsSegment>)> {
    vec![
        (
            "array",
            Box::new(Array::<u32>::anonymous([1, 2, 3]).unwrap()),
        ),
        ("value", Box::new(Value::<f64>::anonymous(2.5).unwrap())),
        (
            "locked array",
            Box::new(LockedArray::<u16>::anonymous([4, 5]).unwrap()),
        ),
        (
            "locked value",
            Box::new(LockedValue::<i64>::anonymous(-7).unwrap()),
        ),
        ("raw mutex", Box::new(psync::Lock::anonymous(()).unwrap())),
        (
            "mutex",
            Box::new(psync::Mutex::anonymous(Mutex::new(41u64)).unwrap()),
        ),
        (
            "rlock",
            Box::new(psync::ReentrantMutex::anonymous(ReentrantMutex::new(9u32)).unwrap()),
        ),
        (
            "rwlock",
            Box::new(psync::RwLock::anonymous(RwLock::new([1u8; 3])).unwrap()),
        ),
        (
            "semaphore",
            Box::new(psync::Semaphore::anonymous(Semaphore::bounded(3)).unwrap()),
        ),
        (
            "event",
            Box::new(psync::Event::anonymous(Event::new()).unwrap()),
        ),
        (
            "condvar",
            Box::new(psync::Condvar::anonymous(Condvar::new()).unwrap()),
        ),
        ("barrier", Box::new(psync::Barrier::anonymous(3).unwrap())),
        ("ring", Box::new(Ring::<u64>::anonymous(8).unwrap())),
        (
            "queue",
            Box::new(Queue::<u32>::anonymous(QueueParams::new(16).with_registry(3, 2)).unwrap()),
        ),
        ("pipe", Box::new(OneWayPipe::anonymous(64).unwrap())),
        ("duplex", Box::new(Pipe::anonymous(64).unwrap())),
        (
            "map",
            Box::new(SharedMap::<u64, u32>::anonymous(100).unwrap()),
        ),
        (
            "byte map",
            Box::new(SharedByteMap::anonymous((10, 16, 64)).unwrap()),
        ),
        ("stamped ring", Box::new(StampedSegment::anonymous(8))),
    ]
}

/// A stamped ring in an anonymous segment (it has no posix handle): the
/// spec and the initialisation come from its core `Object`.
struct StampedSegment(Segment);

impl StampedSegment {
    fn anonymous(capacity: usize) -> StampedSegment {
        use shmkit_core::object::Object;
        use shmkit_core::queue::stamped::StampedSpsc;
        type O = StampedSpsc<u64>;
        let spec = shmkit_posix::ObjectSpec {
            kind: O::KIND,
            fingerprint: O::fingerprint(&capacity),
            type_name: O::type_name(),
            payload_len: O::payload_len(&capacity).unwrap() as u64,
        };
        StampedSegment(
            Segment::anonymous(&spec, &mut |payload, _| {
                // SAFETY: the fresh zero-filled payload of `payload_len`
                // bytes, aligned to PAYLOAD_ALIGN, nobody else's yet.
                unsafe { O::init(payload, &capacity) }
            })
            .unwrap(),
        )
    }

    /// The ring, to push into it.
    fn view(&self) -> shmkit_core::queue::stamped::StampedRing<'_, u64> {
        use shmkit_core::object::Object;
        // SAFETY: made by `anonymous` with this capacity, read-write,
        // initialised, mapped while `self` lives, accessed atomically.
        unsafe { shmkit_core::queue::stamped::StampedSpsc::<u64>::attach(self.0.payload(), &8) }
    }
}

impl AsSegment for StampedSegment {
    fn seg(&self) -> &Segment {
        &self.0
    }
}

trait AsSegment {
    fn seg(&self) -> &Segment;
}

macro_rules! as_segment {
    ($($t:ty),+ $(,)?) => {$(
        impl AsSegment for $t {
            fn seg(&self) -> &Segment {
                self.segment()
            }
        }
    )+};
}

as_segment!(
    Array<u32>,
    Value<f64>,
    LockedArray<u16>,
    LockedValue<i64>,
    psync::Lock,
    psync::Mutex<u64>,
    psync::ReentrantMutex<u32>,
    psync::RwLock<[u8; 3]>,
    psync::Semaphore,
    psync::Event,
    psync::Condvar,
    psync::Barrier,
    Ring<u64>,
    Queue<u32>,
    OneWayPipe,
    Pipe,
    SharedMap<u64, u32>,
    SharedByteMap,
);

#[test]
fn fresh_objects_of_every_kind() {
    let all = every_kind();
    let get = |name: &str| {
        lines(
            all.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, s)| s.seg())
                .unwrap(),
        )
    };
    let l = get("array");
    assert_eq!(value(&l, "elements"), "[1, 2, 3]");
    assert_eq!(value(&get("value"), "elements"), "[2.5]");
    let l = get("locked array");
    assert!(value(&l, "lock").starts_with("unlocked"), "{l:?}");
    assert_eq!(value(&l, "elements"), "[4, 5]");
    assert!(value(&get("locked value"), "data").starts_with("-7"));
    let l = get("raw mutex");
    assert_eq!(value(&l, "owner"), "none");
    assert_eq!(value(&l, "waiters"), "none");
    assert!(
        !l.iter().any(|(k, _)| *k == "data"),
        "a RawMutex has no data: {l:?}"
    );
    assert_eq!(
        value(&get("mutex"), "data"),
        "41 (u64), read without the lock"
    );
    let l = get("rlock");
    assert!(value(&l, "data").starts_with("9 (u32)"), "{l:?}");
    let l = get("rwlock");
    assert!(value(&l, "readers").starts_with("0 inside"), "{l:?}");
    assert_eq!(value(&l, "consistent"), "yes");
    // Not a primitive: shown as bytes.
    assert!(value(&l, "data").contains("010101"), "{l:?}");
    let l = get("semaphore");
    assert_eq!(value(&l, "permits"), "3 available, bound 3");
    assert!(value(&l, "sleepers").starts_with('0'));
    assert_eq!(value(&get("event"), "event"), "clear");
    assert!(value(&get("condvar"), "sleepers").starts_with('0'));
    let l = get("barrier");
    assert_eq!(value(&l, "parties"), "3");
    assert!(value(&l, "generation").starts_with("0 "), "{l:?}");
    assert_eq!(value(&l, "waiting"), "0 of 3 arrived this round");
    assert_eq!(value(&l, "party"), "none registered yet");
    let l = get("ring");
    assert_eq!(value(&l, "capacity"), "8 slot(s) of 8 byte(s)");
    assert_eq!(value(&l, "occupancy"), "0 of 8 (head 0, tail 0)");
    assert_eq!(value(&l, "producer"), "none (never attached)");
    let l = get("queue");
    assert_eq!(
        value(&l, "occupancy"),
        "0 of 16 (0 committed, head 0, tail 0)"
    );
    assert_eq!(value(&l, "producers"), "0 attached, of 3 slot(s)");
    assert_eq!(value(&l, "consumers"), "0 attached, of 2 slot(s)");
    let l = get("pipe");
    assert_eq!(value(&l, "capacity"), "64 bytes per direction");
    assert_eq!(
        value(&l, "pending"),
        "0 message(s), 0 byte(s) (head 0, tail 0)"
    );
    let l = get("stamped ring");
    assert_eq!(value(&l, "capacity"), "8 slot(s) of 8 byte(s)");
    assert_eq!(value(&l, "occupancy"), "0 of 8 committed");
    assert_eq!(value(&l, "producer"), "none (never attached)");
    let l = get("duplex");
    assert!(
        value(&l, "1→0 pending").starts_with("0 message(s)"),
        "{l:?}"
    );
    let l = get("map");
    assert_eq!(
        value(&l, "capacity"),
        "100 entries (256 buckets of 32 bytes, 4 writer lock(s))"
    );
    assert_eq!(value(&l, "entries"), "8-byte keys, 4-byte values");
    assert_eq!(value(&l, "length"), "0 of 100 (read without the locks)");
    assert_eq!(value(&l, "locks"), "none of 4 writer lock(s) held");
    assert!(value(&l, "repairs").starts_with("0 "), "{l:?}");
    assert!(!l.iter().any(|(k, _)| *k == "clear"), "{l:?}");
    let l = get("byte map");
    assert_eq!(
        value(&l, "capacity"),
        "10 entries (32 buckets of 128 bytes, 1 writer lock(s))"
    );
    assert_eq!(
        value(&l, "entries"),
        "keys up to 16 bytes, values up to 64 bytes"
    );
}

#[test]
fn states_set_in_process_are_read_back() {
    let me = std::process::id();
    let q = Queue::<u32>::anonymous(QueueParams::new(4).with_registry(2, 2)).unwrap();
    let mut tx = q.view().producer().unwrap();
    let mut rx = q.view().consumer().unwrap();
    for i in 0..3 {
        tx.try_push(i).unwrap();
    }
    assert_eq!(rx.try_pop(), Ok(0));
    let l = lines(q.segment());
    assert_eq!(
        value(&l, "occupancy"),
        "2 of 4 (2 committed, head 1, tail 3)"
    );
    assert_eq!(
        value(&l, "producers"),
        format!("1 attached, of 2 slot(s): pid {me} (alive)")
    );
    assert!(value(&l, "in flight").starts_with("0 "), "{l:?}");
    drop(tx);
    let l = lines(q.segment());
    assert_eq!(value(&l, "producers"), "0 attached, of 2 slot(s)");

    let stamped = StampedSegment::anonymous(8);
    {
        let ring = stamped.view();
        let (mut tx, mut rx) = (ring.producer().unwrap(), ring.consumer().unwrap());
        for i in 0..3 {
            tx.try_push(i).unwrap();
        }
        assert_eq!(rx.try_pop(), Ok(0));
        let l = lines(stamped.seg());
        assert_eq!(value(&l, "occupancy"), "2 of 8 committed");
        assert_eq!(value(&l, "producer"), format!("pid {me}, alive"));
        assert_eq!(value(&l, "consumer"), format!("pid {me}, alive"));
    }

    let pipe = OneWayPipe::anonymous(32).unwrap();
    let mut tx = pipe.view().sender().unwrap();
    for m in [&b"hello"[..], b"", b"abc"] {
        tx.try_send_bytes(m).unwrap();
    }
    let l = lines(pipe.segment());
    assert_eq!(
        value(&l, "pending"),
        "3 message(s), 20 byte(s) (head 0, tail 20)"
    );
    assert_eq!(value(&l, "sender"), format!("pid {me}, alive"));
    assert_eq!(value(&l, "receiver"), "none (never attached)");

    let sem = psync::Semaphore::anonymous(Semaphore::new(5)).unwrap();
    sem.try_acquire().unwrap().forget();
    assert_eq!(
        value(&lines(sem.segment()), "permits"),
        "4 available, unbounded"
    );

    let e = psync::Event::anonymous(Event::new()).unwrap();
    e.set();
    assert_eq!(value(&lines(e.segment()), "event"), "set");

    let m = psync::ReentrantMutex::anonymous(ReentrantMutex::new(0u8)).unwrap();
    let (_a, _b) = (m.lock().unwrap(), m.lock().unwrap());
    // Lock words and barrier tables name threads; tests run on threads of
    // their own, so this one is not the process's leader.
    let tid = shmkit_core::owner::current_thread_id();
    let task = if tid == me {
        format!("pid {me}")
    } else {
        format!("tid {tid} of pid {me}")
    };
    let l = lines(m.segment());
    assert!(value(&l, "lock").starts_with("held"), "{l:?}");
    assert_eq!(value(&l, "owner"), format!("{task}, alive"));
    assert!(value(&l, "depth").starts_with("2 "), "{l:?}");

    let b = psync::Barrier::anonymous(1).unwrap();
    b.wait().unwrap();
    b.wait().unwrap();
    let l = lines(b.segment());
    assert!(value(&l, "generation").starts_with("2 "), "{l:?}");
    assert_eq!(value(&l, "party"), format!("{task}, alive, not arrived"));

    // A map with two entries, seen from inside an update: one writer lock
    // held, by this thread.
    let map = SharedMap::<u64, u32>::anonymous(100).unwrap();
    map.insert(1, 2).unwrap();
    map.insert(3, 4).unwrap();
    let l = map.update(&1, |_| lines(map.segment())).unwrap().unwrap();
    assert_eq!(value(&l, "length"), "2 of 100 (read without the locks)");
    assert_eq!(value(&l, "locks"), "1 of 4 writer lock(s) held");
    let held = value(&l, "writer lock");
    assert!(
        held.starts_with("stripe ") && held.ends_with(&format!("{task}, alive")),
        "{l:?}"
    );
    assert_eq!(
        value(&lines(map.segment()), "locks"),
        "none of 4 writer lock(s) held"
    );
}

/// The payload of `seg` at byte `off`, as a u32, overwritten.
fn poke_u32(seg: &Segment, off: usize, v: u32) {
    assert!(off + 4 <= seg.payload_len());
    // SAFETY: in range, 4-aligned by the callers' offsets, atomic store.
    unsafe { shmkit_core::primitive::AtomicU32::from_ptr(seg.payload().as_ptr().add(off).cast()) }
        .store(v, Ordering::Relaxed);
}

#[test]
fn known_corruptions_are_named() {
    // A ring whose tail ran 1000 ahead of its head (the tail is the
    // RingControl's first word).
    let ring = Ring::<u64>::anonymous(8).unwrap();
    poke_u32(ring.segment(), 0, 1000);
    let l = lines(ring.segment());
    assert!(
        value(&l, "occupancy").starts_with("corrupt: tail - head = 1000 exceeds the capacity 8"),
        "{l:?}"
    );

    // A mutex word with an owner nobody holds, a spinner and sleepers:
    // honest (dead owner). WAITERS on a free word: corrupt.
    let m = psync::Mutex::anonymous(Mutex::new(0u32)).unwrap();
    poke_u32(m.segment(), 0, (1 << 31) | (1 << 30) | (1 << 23));
    let l = lines(m.segment());
    assert!(value(&l, "owner").contains("dead"), "{l:?}");
    assert!(!l.iter().any(|(k, _)| *k == "lock word"), "{l:?}");
    poke_u32(m.segment(), 0, 1 << 30);
    let l = lines(m.segment());
    assert!(
        value(&l, "lock word").starts_with("corrupt: the WAITERS bit is set on a free lock"),
        "{l:?}"
    );

    // A pipe frame claiming more than the pipe can carry.
    let pipe = OneWayPipe::anonymous(64).unwrap();
    let mut tx = pipe.view().sender().unwrap();
    tx.try_send_bytes(b"hi").unwrap();
    // The frame's length word is the first data byte, after the control.
    let data = std::mem::size_of::<shmkit_core::queue::ring::RingControl>();
    poke_u32(pipe.segment(), data, 1000);
    let l = lines(pipe.segment());
    assert!(
        value(&l, "pending").starts_with("corrupt: a 1000-byte message at 0 exceeds"),
        "{l:?}"
    );

    // A barrier with no parties, and a semaphore past its bound.
    let b = psync::Barrier::anonymous(2).unwrap();
    poke_u32(b.segment(), 4, 0);
    assert!(value(&lines(b.segment()), "parties").starts_with("corrupt: 0"));
    // Every party arrived, the last one running its action: not corrupt;
    // one more than that is. (The state word's count is its low 16 bits.)
    let b = psync::Barrier::anonymous(2).unwrap();
    b.set_default_timeout(Some(std::time::Duration::from_millis(1500)));
    poke_u32(b.segment(), 0, 2);
    let l = lines(b.segment());
    assert!(value(&l, "waiting").starts_with("all 2 arrived"), "{l:?}");
    assert_eq!(value(&l, "timeout"), "1.5s (of wait() and wait_with())");
    poke_u32(b.segment(), 0, 3);
    assert!(value(&lines(b.segment()), "waiting").starts_with("corrupt: 3"));
    let s = psync::Semaphore::anonymous(Semaphore::bounded(2)).unwrap();
    poke_u32(s.segment(), 0, 3);
    assert!(value(&lines(s.segment()), "permits").starts_with("corrupt: 3 available exceed"));

    // Header parameters that do not fit the payload.
    let q = Queue::<u32>::anonymous(QueueParams::new(16).with_registry(3, 2)).unwrap();
    let mut h = *q.segment().header();
    h.fingerprint.params[0] = 1 << 40;
    let l = describe(&h, &view(q.segment())).unwrap();
    assert!(value(&l, "layout").starts_with("corrupt: "), "{l:?}");
    let mut h = *ring.segment().header();
    h.fingerprint.params[0] = 3;
    let l = describe(&h, &view(ring.segment())).unwrap();
    assert!(
        value(&l, "capacity").starts_with("corrupt: 3 is impossible"),
        "{l:?}"
    );
    // A map whose clearer died mid-clear (odd epoch, the first word), and
    // whose counts add up to more than it can hold.
    let map = SharedMap::<u64, u64>::anonymous(8).unwrap();
    let shape = map.params().shape().unwrap();
    poke_u32(map.segment(), shape.epoch_offset(), 7);
    poke_u32(map.segment(), shape.count_offset(0), 1000);
    let l = lines(map.segment());
    assert!(value(&l, "clear").starts_with("under way"), "{l:?}");
    assert!(
        value(&l, "length").starts_with("corrupt: 1000 entries counted"),
        "{l:?}"
    );
    let mut h = *map.segment().header();
    h.fingerprint.params[0] = 1 << 40;
    let l = describe(&h, &view(map.segment())).unwrap();
    assert!(value(&l, "layout").starts_with("corrupt: "), "{l:?}");
    let mut h = *m.segment().header();
    h.fingerprint.align = 3;
    let l = describe(&h, &view(m.segment())).unwrap();
    assert!(
        value(&l, "layout").starts_with("corrupt: element alignment 3"),
        "{l:?}"
    );
}

/// Every kind, its payload overwritten with garbage and its header
/// parameters replaced by nonsense, many times: `describe` must answer
/// (lines, some of them `corrupt: …`) and never panic. Reads outside the
/// payload would show up as a crash or, under the bounds checks, never
/// happen.
#[test]
fn garbage_never_panics() {
    let rounds = if std::env::var_os("SHMKIT_LONG_TESTS").is_some() {
        2000
    } else {
        100
    };
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let all = every_kind();
    let mut corrupt_seen = 0;
    for (name, obj) in &all {
        let seg = obj.seg();
        for round in 0..rounds {
            scribble(seg, &mut rng);
            let mut h = *seg.header();
            if round % 2 == 1 {
                h.fingerprint.params = [rng.param(), rng.param()];
                h.fingerprint.size = rng.param();
                h.fingerprint.align = rng.param();
                h.fingerprint.type_hash = rng.next();
                h.payload_len = rng.param();
            }
            let l = describe(&h, &view(seg)).unwrap_or_else(|| panic!("{name}: no lines"));
            assert!(!l.is_empty(), "{name}");
            corrupt_seen += l.iter().filter(|(_, v)| v.starts_with("corrupt: ")).count();
        }
    }
    assert!(corrupt_seen > rounds, "garbage was reported as corrupt");
}
