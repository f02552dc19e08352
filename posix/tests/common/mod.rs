//! Helpers shared by the segment test files.

#![allow(dead_code)] // each test binary uses a different subset

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::time::Duration;

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
