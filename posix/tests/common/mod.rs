//! Helpers shared by the posix integration tests (segments and queues).

#![allow(dead_code)] // each test binary uses a different subset

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use shmkit_testkit::{leftover_segments, own_prefix};

/// A pipe used to release processes together (the parent writes one byte
/// per waiter in a single `write`) or to hear from a child.
pub struct Pipe {
    read: std::fs::File,
    write: std::fs::File,
}

impl Pipe {
    pub fn new() -> Pipe {
        let mut fds = [0; 2];
        // SAFETY: `fds` is a valid out-array of two ints.
        let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
        assert_eq!(rc, 0, "pipe2: {}", std::io::Error::last_os_error());
        // SAFETY: two fresh descriptors we own.
        unsafe {
            Pipe {
                read: std::fs::File::from(OwnedFd::from_raw_fd(fds[0])),
                write: std::fs::File::from(OwnedFd::from_raw_fd(fds[1])),
            }
        }
    }

    /// Writes `n` bytes at once: releases `n` processes blocked in
    /// [`Pipe::take`].
    pub fn release(&self, n: usize) {
        (&self.write).write_all(&vec![1u8; n]).expect("pipe write");
    }

    /// Blocks until one byte can be taken.
    pub fn take(&self) -> bool {
        let mut b = [0u8; 1];
        matches!((&self.read).read(&mut b), Ok(1))
    }

    /// Waits up to `timeout` for one byte; false on time-out.
    pub fn take_within(&self, timeout: Duration) -> bool {
        let mut pfd = libc::pollfd {
            fd: self.read.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
        // SAFETY: one valid pollfd.
        let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
        rc == 1 && self.take()
    }
}

/// The file behind the named segment `name` (`/dev/shm/<body>`).
pub fn shm_path(name: &str) -> String {
    format!("/dev/shm/{}", name.trim_start_matches('/'))
}

/// Overwrites bytes of the named segment's object at `offset`, as a
/// corrupt or hostile peer would.
pub fn poke(name: &str, offset: u64, bytes: &[u8]) {
    let f = OpenOptions::new()
        .write(true)
        .open(shm_path(name))
        .expect("open segment file");
    f.write_all_at(bytes, offset).expect("write segment file");
}

/// Resizes the named segment's object (`ftruncate`).
pub fn truncate(name: &str, len: u64) {
    let f = OpenOptions::new()
        .write(true)
        .open(shm_path(name))
        .expect("open segment file");
    f.set_len(len).expect("ftruncate");
}

/// Fails if a segment made by this process under `tag` is left in /dev/shm.
pub fn assert_no_leftovers(tag: &str) {
    let left = leftover_segments(&own_prefix(tag));
    assert!(left.is_empty(), "segments left in /dev/shm: {left:?}");
}

/// A small xorshift generator for garbage bytes (deterministic per seed).
pub struct Junk(pub u64);

impl Junk {
    /// The generator of seed `seed` (odd-ified; 0 is no xorshift seed).
    pub fn from_seed(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

// ---- queue tests: message tags, randomness, a start line ----

/// A message tag: producer in the high 16 bits, sequence number below.
pub fn tag(producer: u64, seq: u64) -> u64 {
    (producer << 48) | seq
}

pub fn untag(v: u64) -> (u64, u64) {
    (v >> 48, v & ((1 << 48) - 1))
}

/// Whether the heavier runs were asked for.
pub fn long() -> bool {
    std::env::var("SHMKIT_LONG_TESTS").is_ok_and(|v| v == "1")
}

/// A small xorshift generator seeded from the clock (the seed is printed so
/// a failure can be replayed with SHMKIT_SEED).
pub struct Rng(u64);

impl Rng {
    pub fn new() -> Rng {
        let seed = std::env::var("SHMKIT_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
                    | 1
            });
        eprintln!("rng seed {seed}");
        Rng(seed)
    }

    /// The generator of seed `seed` (odd-ified; 0 is no xorshift seed).
    pub fn from_seed(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    pub fn micros(&mut self, max: u64) -> Duration {
        Duration::from_micros(self.below(max))
    }
}

/// Generous bound for a child that should finish.
pub const CHILD_TIMEOUT: Duration = Duration::from_secs(60);

/// A start line for forked children: each calls [`StartLine::arrive`] after
/// attaching to the queue; the parent's [`StartLine::release`] waits for
/// all of them, then lets them go. Without it a fast producer may finish
/// and detach before a slow one attached, which (correctly) looks like
/// "every producer is gone" to the consumers.
pub struct StartLine {
    flags: shmkit_posix::Array<u64>,
    n: usize,
}

impl StartLine {
    pub fn new(n: usize) -> StartLine {
        StartLine {
            flags: shmkit_posix::Array::anonymous(n + 1).unwrap(),
            n,
        }
    }

    /// Child `i` is attached; waits for the go.
    pub fn arrive(&self, i: usize) {
        let _ = self.flags.set(i, 1);
        while self.flags.get(self.n) != Some(1) {
            std::thread::yield_now();
        }
    }

    /// Waits until every child arrived, then lets them all go.
    pub fn release(&self) {
        while (0..self.n).any(|i| self.flags.get(i) != Some(1)) {
            std::thread::yield_now();
        }
        let _ = self.flags.set(self.n, 1);
    }
}

/// An anonymous segment holding the core object `O` (for structures with
/// no posix handle, such as the stamped ring): the spec, `init` and the
/// view all come from the object.
pub struct ObjectSegment<O: shmkit_core::object::Object> {
    segment: shmkit_posix::Segment,
    params: O::Params,
}

impl<O: shmkit_core::object::Object> ObjectSegment<O> {
    pub fn anonymous(params: O::Params) -> ObjectSegment<O> {
        let spec = shmkit_posix::ObjectSpec {
            kind: O::KIND,
            fingerprint: O::fingerprint(&params),
            type_name: O::type_name(),
            payload_len: O::payload_len(&params).unwrap() as u64,
        };
        let segment = shmkit_posix::Segment::anonymous(&spec, &mut |payload, _| {
            // SAFETY: the fresh zero-filled payload of `payload_len` bytes,
            // aligned to PAYLOAD_ALIGN, nobody else's yet.
            unsafe { O::init(payload, &params) }
        })
        .unwrap();
        ObjectSegment { segment, params }
    }

    pub fn view(&self) -> O::View<'_> {
        // SAFETY: made by `anonymous` with these params (read-write, its
        // length checked by `payload_len`), initialised, mapped while
        // `self` lives, accessed only atomically.
        unsafe { O::attach(self.segment.payload(), &self.params) }
    }
}

/// Holds the lock that makes the tests of one binary run one at a time:
/// those that fork from libtest's threads, because a child forked while
/// another test thread panics would inherit the panic machinery's lock
/// and hang in its own panic.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A process builder that may fork from libtest's threads (allowed
/// explicitly: the children touch only shmkit objects and their own
/// stack; see [`serial`]).
pub fn fork() -> shmkit_posix::process::Builder {
    shmkit_posix::process::Builder::new().allow_threads(true)
}
