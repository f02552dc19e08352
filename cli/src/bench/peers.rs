//! The peers: what a user would reach for instead of shmkit.
//!
//! | case | impl | what it is |
//! |---|---|---|
//! | `blocking_rtt` | `pipe` | two pipes, one 8-byte `write`/`read` per direction |
//! | `blocking_rtt` | `unix_socket` | a `socketpair(AF_UNIX, SOCK_STREAM)`, 8 bytes each way |
//! | `blocking_rtt` | `eventfd` | two eventfds, `write(1)`/`read` each way |
//! | `blocking_rtt` | `raw_sync_event` | two auto-reset `raw_sync` 0.1 Events (untimed wait: its timed wait is buggy) |
//! | `lock_uncontended` | `pthread_robust` | `PTHREAD_PROCESS_SHARED` + `PTHREAD_MUTEX_ROBUST` mutex in shared memory |
//! | `lock_uncontended` | `raw_sync` | `raw_sync` 0.1 `Mutex` in shared memory |
//! | `spsc_throughput` | `pipe` | one 8-byte `write` and one 8-byte `read` per message |

use std::os::fd::RawFd;
use std::time::Instant;

use raw_sync::events::{Event, EventInit, EventState};
use raw_sync::locks::{LockInit, Mutex as RawMutex};
use raw_sync::Timeout;

use super::floors::{io, u32_pingpong, PthreadMutex, LOCK_BATCH};
use super::proc::{pin_index, spawn_peer, Scratch};
use super::timing::{os_err, peer_guard, time_batched};
use super::{Impl, Measurement, Params, RunResult};

/// The peers this module provides, as `(case, impl)`.
#[must_use]
pub fn impls() -> Vec<(&'static str, Impl)> {
    vec![
        (
            "blocking_rtt",
            Impl {
                name: "pipe",
                run: rtt_pipe,
            },
        ),
        (
            "blocking_rtt",
            Impl {
                name: "unix_socket",
                run: rtt_socket,
            },
        ),
        (
            "blocking_rtt",
            Impl {
                name: "eventfd",
                run: rtt_eventfd,
            },
        ),
        (
            "blocking_rtt",
            Impl {
                name: "raw_sync_event",
                run: rtt_raw_sync,
            },
        ),
        (
            "lock_uncontended",
            Impl {
                name: "pthread_robust",
                run: lock_pthread_robust,
            },
        ),
        (
            "lock_uncontended",
            Impl {
                name: "raw_sync",
                run: lock_raw_sync,
            },
        ),
        (
            "spsc_throughput",
            Impl {
                name: "pipe",
                run: spsc_pipe,
            },
        ),
    ]
}

/// Closes the fds in `fds` (ignoring errors).
fn close_all(fds: &[RawFd]) {
    for &fd in fds {
        // SAFETY: closing fds this module opened and no longer uses.
        unsafe { libc::close(fd) };
    }
}

fn write8(fd: RawFd, v: u64) -> Result<(), String> {
    let b = v.to_ne_bytes();
    loop {
        // SAFETY: `b` is 8 readable bytes.
        let n = unsafe { libc::write(fd, b.as_ptr().cast(), 8) };
        if n == 8 {
            return Ok(());
        }
        if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        return Err(os_err("write"));
    }
}

fn read8(fd: RawFd) -> Result<u64, String> {
    let mut b = [0u8; 8];
    let mut got = 0;
    while got < 8 {
        // SAFETY: `b[got..]` is writable.
        let n = unsafe { libc::read(fd, b.as_mut_ptr().add(got).cast(), 8 - got) };
        if n > 0 {
            got += n as usize;
        } else if n == 0 {
            return Err("read: peer closed (it died?)".into());
        } else if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return Err(os_err("read"));
        }
    }
    Ok(u64::from_ne_bytes(b))
}

/// Ping-pong over file descriptors: `tx[d]`/`rx[d]` for direction `d`
/// (0 = parent to peer). `close_parent`/`close_peer` are the ends each
/// side closes so a dead peer shows up as EOF.
fn fd_pingpong(
    p: &Params,
    tx: [RawFd; 2],
    rx: [RawFd; 2],
    close_parent: &[RawFd],
    close_peer: &[RawFd],
    all: &[RawFd],
) -> RunResult {
    let total = p.warmup + p.ops;
    let peer = spawn_peer(p.cpus.get(1).copied(), || {
        peer_guard();
        close_all(close_peer);
        for _ in 0..total {
            let ok = read8(rx[0]).and_then(|v| write8(tx[1], v));
            if ok.is_err() {
                return 1;
            }
        }
        0
    });
    let peer = match peer {
        Ok(peer) => peer,
        Err(e) => {
            close_all(all);
            return Err(format!("fork: {e}"));
        }
    };
    close_all(close_parent);
    let parent_fds: Vec<RawFd> = all
        .iter()
        .copied()
        .filter(|fd| !close_parent.contains(fd))
        .collect();
    let r = pin_index(&p.cpus, 0).map_err(io("pin")).and_then(|()| {
        super::timing::time_each(p, |_| {
            write8(tx[0], 1)?;
            read8(rx[1]).map(|_| ())
        })
    });
    close_all(&parent_fds);
    let samples = r?;
    peer.join()?;
    Ok(Measurement::Latencies(samples))
}

fn rtt_pipe(p: &Params) -> RunResult {
    let (mut a, mut b) = ([0; 2], [0; 2]);
    // SAFETY: valid out-arrays of two fds.
    if unsafe { libc::pipe2(a.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(os_err("pipe"));
    }
    // SAFETY: as above.
    if unsafe { libc::pipe2(b.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        close_all(&a);
        return Err(os_err("pipe"));
    }
    // a: parent -> peer, b: peer -> parent; [0] read end, [1] write end.
    fd_pingpong(
        p,
        [a[1], b[1]],
        [a[0], b[0]],
        &[a[0], b[1]],
        &[a[1], b[0]],
        &[a[0], a[1], b[0], b[1]],
    )
}

fn rtt_socket(p: &Params) -> RunResult {
    let mut sv = [0; 2];
    // SAFETY: valid out-array of two fds.
    if unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
            sv.as_mut_ptr(),
        )
    } != 0
    {
        return Err(os_err("socketpair"));
    }
    // The parent uses sv[0], the peer sv[1].
    fd_pingpong(p, [sv[0], sv[1]], [sv[1], sv[0]], &[sv[1]], &[sv[0]], &sv)
}

fn rtt_eventfd(p: &Params) -> RunResult {
    // SAFETY: plain syscalls creating new fds.
    let (a, b) = unsafe {
        (
            libc::eventfd(0, libc::EFD_CLOEXEC),
            libc::eventfd(0, libc::EFD_CLOEXEC),
        )
    };
    if a < 0 || b < 0 {
        close_all(&[a, b].into_iter().filter(|&f| f >= 0).collect::<Vec<_>>());
        return Err(os_err("eventfd"));
    }
    // Both sides keep both fds (an eventfd has no ends to close).
    fd_pingpong(p, [a, b], [a, b], &[], &[], &[a, b])
}

fn rtt_raw_sync(p: &Params) -> RunResult {
    let s = Scratch::new(4096).map_err(io("mmap"))?;
    let base = s.ptr().as_ptr();
    let size = Event::size_of(None);
    let second = size.div_ceil(128) * 128;
    if second + size > s.len() {
        return Err("raw_sync Event larger than expected".into());
    }
    // SAFETY: two non-overlapping regions of the shared mapping, each at
    // least `size_of` bytes, kept alive by `s` for the events' lifetime.
    let (e0, e1) = unsafe {
        (
            Event::new(base, true)
                .map_err(|e| format!("raw_sync Event::new: {e}"))?
                .0,
            Event::new(base.add(second), true)
                .map_err(|e| format!("raw_sync Event::new: {e}"))?
                .0,
        )
    };
    let ev = [&e0, &e1];
    u32_pingpong(
        p,
        |d, _| {
            ev[d]
                .set(EventState::Signaled)
                .map_err(|e| format!("raw_sync set: {e}"))
        },
        |d, _| {
            ev[d]
                .wait(Timeout::Infinite)
                .map_err(|e| format!("raw_sync wait: {e}"))
        },
    )
}

fn lock_pthread_robust(p: &Params) -> RunResult {
    pin_index(&p.cpus, 0).map_err(io("pin"))?;
    let s = Scratch::new(4096).map_err(io("mmap"))?;
    let m = PthreadMutex::new(&s, true)?;
    let counter = s.atomic_u64(1024);
    let samples = time_batched(p, LOCK_BATCH, |_| {
        m.lock()?;
        counter.store(
            counter.load(std::sync::atomic::Ordering::Relaxed) + 1,
            std::sync::atomic::Ordering::Relaxed,
        );
        m.unlock()
    })?;
    Ok(Measurement::Latencies(samples))
}

fn lock_raw_sync(p: &Params) -> RunResult {
    pin_index(&p.cpus, 0).map_err(io("pin"))?;
    let s = Scratch::new(4096).map_err(io("mmap"))?;
    let base = s.ptr().as_ptr();
    // SAFETY: the lock takes the start of the shared mapping, its data the
    // u64 at 1024; both stay mapped while `m` lives.
    let (m, _) = unsafe { RawMutex::new(base, base.add(1024)) }
        .map_err(|e| format!("raw_sync Mutex::new: {e}"))?;
    let samples = time_batched(p, LOCK_BATCH, |_| {
        let g = m.lock().map_err(|e| format!("raw_sync lock: {e}"))?;
        let data: *mut u8 = *g;
        // SAFETY: the guarded data is the u64 at offset 1024, 8-aligned.
        unsafe { *data.cast::<u64>() += 1 };
        Ok(())
    })?;
    Ok(Measurement::Latencies(samples))
}

/// The peer writes `ops + warmup` 8-byte messages, one `write` each; the
/// parent reads them one `read` each and times from message `warmup`.
fn spsc_pipe(p: &Params) -> RunResult {
    let mut fds = [0; 2];
    // SAFETY: valid out-array of two fds.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(os_err("pipe"));
    }
    let total = p.warmup + p.ops;
    let peer = spawn_peer(p.cpus.get(1).copied(), || {
        peer_guard();
        close_all(&fds[..1]);
        for i in 0..total {
            if write8(fds[1], i).is_err() {
                return 1;
            }
        }
        0
    });
    close_all(&fds[1..]);
    let peer = match peer {
        Ok(peer) => peer,
        Err(e) => {
            close_all(&fds[..1]);
            return Err(format!("fork: {e}"));
        }
    };
    let r = (|| {
        pin_index(&p.cpus, 0).map_err(io("pin"))?;
        let mut start = Instant::now();
        for i in 0..total {
            if i == p.warmup {
                start = Instant::now();
            }
            let v = read8(fds[0])?;
            if v != i {
                return Err(format!("pipe: read {v}, expected {i}"));
            }
        }
        Ok(start.elapsed())
    })();
    close_all(&fds[..1]);
    let elapsed = r?;
    peer.join()?;
    Ok(Measurement::Rate {
        ops: p.ops,
        bytes_per_op: 8,
        elapsed,
    })
}
