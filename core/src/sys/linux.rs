//! Linux back end: shared futexes, the monotonic clock, thread ids, liveness.

use core::time::Duration;

use crate::owner::Liveness;
use crate::primitive::AtomicU32;

/// Blocks while `*word == expected`, until woken, interrupted, spuriously, or
/// until the absolute `CLOCK_MONOTONIC` time `deadline` passes.
///
/// `FUTEX_WAIT_BITSET` takes an absolute deadline, so retrying after `EINTR`
/// never stretches a timeout. Never the private-futex flag: the word may be in a
/// segment mapped at different addresses in different processes, and only a
/// shared futex is keyed by the backing page rather than the address.
pub(crate) fn wait(word: &AtomicU32, expected: u32, deadline: Option<Duration>) {
    let ts = deadline.map(|d| libc::timespec {
        // Saturate instead of wrapping: a deadline centuries away is "never".
        tv_sec: libc::time_t::try_from(d.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_nsec: libc::c_long::from(d.subsec_nanos() as i32),
    });
    let ts_ptr = ts
        .as_ref()
        .map_or(core::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `word` is a live, 4-byte aligned atomic for the duration of the
    // call; the kernel only reads it. `ts_ptr` is null or points at `ts`,
    // which outlives the call. FUTEX_WAIT_BITSET with FUTEX_BITSET_MATCH_ANY
    // behaves as FUTEX_WAIT with an absolute CLOCK_MONOTONIC timeout.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT_BITSET,
            expected,
            ts_ptr,
            core::ptr::null::<u32>(),
            libc::FUTEX_BITSET_MATCH_ANY,
        );
    }
    // Every outcome (woken, EAGAIN because the value changed, EINTR,
    // ETIMEDOUT) means the same to callers: re-check the word and the clock.
}

/// Wakes at most `count` waiters on `word`; returns how many were woken.
pub(crate) fn wake(word: &AtomicU32, count: u32) -> u32 {
    let count = i32::try_from(count).unwrap_or(i32::MAX);
    // SAFETY: `word` is a live, aligned atomic; FUTEX_WAKE does not access
    // user memory beyond looking up the futex key of that address.
    let woken = unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, count) };
    u32::try_from(woken).unwrap_or(0)
}

/// `CLOCK_MONOTONIC` now, as time since an arbitrary fixed origin.
pub(crate) fn now() -> Option<Duration> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    if rc != 0 {
        return None;
    }
    let secs = u64::try_from(ts.tv_sec).ok()?;
    let nanos = u32::try_from(ts.tv_nsec).ok()?;
    Some(Duration::new(secs, nanos))
}

/// The kernel thread id of the caller (not cached).
pub(crate) fn gettid() -> u32 {
    // SAFETY: gettid has no preconditions and cannot fail.
    let tid = unsafe { libc::syscall(libc::SYS_gettid) };
    u32::try_from(tid).unwrap_or(0)
}

/// The process id of the caller (not cached).
pub(crate) fn getpid() -> u32 {
    // SAFETY: getpid has no preconditions and cannot fail.
    let pid = unsafe { libc::getpid() };
    u32::try_from(pid).unwrap_or(0)
}

/// Whether a thread or process id names a live task.
///
/// `kill(id, 0)` sends nothing; it succeeds for any live task id (thread ids
/// included), fails with `ESRCH` once the task is gone, and with `EPERM` for
/// a live task we may not signal. Zombies count as dead: a zombie runs no
/// more code and will never release anything. Pid reuse is handled by the
/// callers that also know a start time, see [`start_time`].
pub(crate) fn liveness(id: u32) -> Liveness {
    let Ok(pid) = libc::pid_t::try_from(id) else {
        return Liveness::Dead;
    };
    if pid <= 0 {
        return Liveness::Dead;
    }
    // SAFETY: signal 0 performs only the existence and permission checks.
    let rc = unsafe { libc::kill(pid, 0) };
    let alive = if rc == 0 {
        true
    } else {
        // SAFETY: errno location is thread-local and always valid.
        let err = unsafe { *libc::__errno_location() };
        err == libc::EPERM
    };
    if !alive {
        return Liveness::Dead;
    }
    match proc_stat(id) {
        Some((b'Z' | b'X', _)) => Liveness::Dead,
        Some(_) => Liveness::Alive,
        // /proc not mounted, or the task vanished between the two checks.
        None => Liveness::Alive,
    }
}

/// The start time of task `id` in clock ticks since boot (field 22 of
/// `/proc/<id>/stat`), or `None` if it cannot be read. Two tasks that ever
/// had the same id differ here, which is what pid-reuse checks compare.
pub(crate) fn start_time(id: u32) -> Option<u64> {
    proc_stat(id).map(|(_, start)| start)
}

/// Reads `/proc/<id>/stat` into a stack buffer and returns (state, starttime).
fn proc_stat(id: u32) -> Option<(u8, u64)> {
    // "/proc/" + up to 10 digits + "/stat" + NUL.
    let mut path = [0u8; 32];
    let mut len = 0;
    for &b in b"/proc/" {
        path[len] = b;
        len += 1;
    }
    let mut digits = [0u8; 10];
    let mut n = id;
    let mut nd = 0;
    loop {
        digits[nd] = b'0' + (n % 10) as u8;
        nd += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    while nd > 0 {
        nd -= 1;
        path[len] = digits[nd];
        len += 1;
    }
    for &b in b"/stat" {
        path[len] = b;
        len += 1;
    }
    // path[len] is already NUL.

    // SAFETY: `path` is NUL-terminated; the flags open read-only.
    let fd = unsafe {
        libc::open(
            path.as_ptr().cast(),
            libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOCTTY,
        )
    };
    if fd < 0 {
        return None;
    }
    let mut buf = [0u8; 1024];
    let mut filled = 0usize;
    while filled < buf.len() {
        // SAFETY: the pointer and length describe the unfilled tail of `buf`.
        let r = unsafe { libc::read(fd, buf[filled..].as_mut_ptr().cast(), buf.len() - filled) };
        if r <= 0 {
            break;
        }
        filled += r as usize;
    }
    // SAFETY: `fd` is ours and closed exactly once.
    unsafe { libc::close(fd) };
    parse_stat(&buf[..filled])
}

/// Parses the state character and start time out of a `/proc/<id>/stat` line.
/// The command name (field 2) may contain spaces and parentheses, so fields
/// are counted from the *last* `)`.
fn parse_stat(line: &[u8]) -> Option<(u8, u64)> {
    let close = line.iter().rposition(|&b| b == b')')?;
    let rest = line.get(close + 1..)?;
    // After ") " come fields 3 (state), 4, ... 22 (starttime).
    let mut fields = rest.split(|&b| b == b' ').filter(|f| !f.is_empty());
    let state = *fields.next()?.first()?;
    let start = fields.nth(22 - 4)?;
    let mut value: u64 = 0;
    for &b in start {
        if !b.is_ascii_digit() {
            return None;
        }
        value = value.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some((state, value))
}

/// Gives up the CPU to another runnable task, if there is one.
pub(crate) fn yield_now() {
    // SAFETY: sched_yield has no preconditions.
    unsafe { libc::sched_yield() };
}

#[cfg(test)]
mod tests {
    use super::parse_stat;

    #[test]
    fn parse_stat_counts_fields_after_the_last_paren() {
        let line = b"123 (a) b (c)) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 4242 19 20\n";
        assert_eq!(parse_stat(line), Some((b'S', 4242)));
        assert_eq!(parse_stat(b"no paren"), None);
        assert_eq!(parse_stat(b"1 (x) R 1 2"), None);
    }
}
