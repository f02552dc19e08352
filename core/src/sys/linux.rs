//! Linux back end: shared futexes, the monotonic clock, thread ids, task
//! liveness, and the syscalls behind liveness tokens (open-file-description
//! locks on the liveness file, `getrandom`). The token *policy* lives in
//! [`crate::owner`]; this file only wraps the calls.

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
    let _ = wait_timed_out(word, expected, deadline);
}

/// [`wait`], telling whether it slept until the deadline (`true`) rather
/// than returning on a wake-up, a moved word or a signal. Loops that a
/// peer could keep going by moving the word and waking its sleepers count
/// the `false`s (see `sync::Contention`); a full sleep is no such round.
pub(crate) fn wait_timed_out(word: &AtomicU32, expected: u32, deadline: Option<Duration>) -> bool {
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
    let rc = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT_BITSET,
            expected,
            ts_ptr,
            core::ptr::null::<u32>(),
            libc::FUTEX_BITSET_MATCH_ANY,
        )
    };
    // Every outcome (woken, EAGAIN because the value changed, EINTR,
    // ETIMEDOUT) means the same to callers: re-check the word and the clock.
    rc != 0 && errno() == libc::ETIMEDOUT
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

/// Whether a thread or process id names a live task (ids below
/// [`crate::owner::FIRST_TOKEN`]; tokens are checked by the owner layer).
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
/// its `stat`), or `None` if it cannot be read. Two tasks that had the same
/// id at different clock ticks differ here (within one tick they do not:
/// that is why owners hold tokens, see [`crate::owner`]).
///
/// Read from `/proc/<id>/task/<id>/stat`, which names the task `id` itself
/// whether it is a thread or a process leader, and which qemu user-mode
/// emulation passes through unchanged (it rewrites `/proc/<own pid>/stat`
/// to the calling thread's values): everyone reads the same value.
pub(crate) fn start_time(id: u32) -> Option<u64> {
    proc_stat(id).map(|(_, start)| start)
}

/// Appends the decimal digits of `n` to `buf` at `*len`.
fn push_decimal(buf: &mut [u8], len: &mut usize, n: u32) {
    let mut digits = [0u8; 10];
    let mut n = n;
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
        buf[*len] = digits[nd];
        *len += 1;
    }
}

/// Appends `bytes` to `buf` at `*len`.
fn push_bytes(buf: &mut [u8], len: &mut usize, bytes: &[u8]) {
    for &b in bytes {
        buf[*len] = b;
        *len += 1;
    }
}

/// Reads `/proc/<id>/task/<id>/stat` into a stack buffer and returns
/// (state, starttime).
fn proc_stat(id: u32) -> Option<(u8, u64)> {
    // "/proc/" + 10 digits + "/task/" + 10 digits + "/stat" + NUL.
    let mut path = [0u8; 48];
    let mut len = 0;
    push_bytes(&mut path, &mut len, b"/proc/");
    push_decimal(&mut path, &mut len, id);
    push_bytes(&mut path, &mut len, b"/task/");
    push_decimal(&mut path, &mut len, id);
    push_bytes(&mut path, &mut len, b"/stat");
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

/// The calling thread's `errno`.
fn errno() -> i32 {
    // SAFETY: errno location is thread-local and always valid.
    unsafe { *libc::__errno_location() }
}

/// 32 random bits from `getrandom(2)` (never blocks after early boot; the
/// non-blocking flag makes it fail instead of waiting then). If the call
/// is unavailable, a mix of the clock, the pid and the tid: tokens only
/// need to be *unlikely* to repeat, never secret.
#[cfg_attr(not(feature = "std"), allow(dead_code))] // tokens are drawn only with `std`
pub(crate) fn random_u32() -> u32 {
    let mut v: u32 = 0;
    // SAFETY: the kernel writes at most 4 bytes into `v`.
    let n = unsafe {
        libc::syscall(
            libc::SYS_getrandom,
            core::ptr::addr_of_mut!(v).cast::<u8>(),
            4usize,
            libc::GRND_NONBLOCK,
        )
    };
    if n == 4 {
        return v;
    }
    let t = now().map_or(0, |d| d.as_nanos() as u64);
    let x = t ^ (u64::from(getpid()) << 32) ^ u64::from(gettid()).rotate_left(17);
    // splitmix64's finaliser.
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)) as u32
}

/// The liveness file's path, NUL-terminated (see [`crate::owner::LIVENESS_FILE`]).
const LIVENESS_PATH: &[u8] = b"/dev/shm/.shmkit-liveness\0";

/// Opens the liveness file: read-write (creating it, mode 0666) when
/// `write`, else read-only. Never follows a symlink (`O_NOFOLLOW`: a peer
/// could otherwise plant one pointing at a file of ours) and accepts only a
/// regular file. A file we own whose mode is not 0666 (the umask, or a
/// creator that died before fixing it) is made 0666, so that other users'
/// processes can share it. Returns the descriptor (close-on-exec) or the
/// `errno`.
pub(crate) fn open_liveness_file(write: bool) -> Result<i32, i32> {
    let flags = libc::O_CLOEXEC
        | libc::O_NOFOLLOW
        | libc::O_NOCTTY
        | libc::O_NONBLOCK
        | if write {
            libc::O_RDWR | libc::O_CREAT
        } else {
            libc::O_RDONLY
        };
    // SAFETY: the path is NUL-terminated; the mode is an integer.
    let fd = unsafe { libc::open(LIVENESS_PATH.as_ptr().cast(), flags, 0o666 as libc::c_uint) };
    if fd < 0 {
        return Err(errno());
    }
    let Some(st) = fstat(fd) else {
        let e = errno();
        close(fd);
        return Err(e);
    };
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        close(fd);
        return Err(libc::EINVAL);
    }
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if write && st.st_uid == me && st.st_nlink == 1 && st.st_mode & 0o7777 != 0o666 {
        // Best effort: a failure leaves the file usable by us.
        // SAFETY: `fd` is a descriptor we own.
        unsafe { libc::fchmod(fd, 0o666) };
    }
    Ok(fd)
}

/// `(device, inode)` of an open descriptor.
#[cfg_attr(not(feature = "std"), allow(dead_code))] // tokens are drawn only with `std`
pub(crate) fn file_identity(fd: i32) -> Option<(u64, u64)> {
    // (`dev_t` and `ino_t` are narrower than `u64` on some 32-bit targets.)
    #[allow(clippy::unnecessary_cast)]
    fstat(fd).map(|st| (st.st_dev as u64, st.st_ino as u64))
}

fn fstat(fd: i32) -> Option<libc::stat> {
    // SAFETY: an all-zero `stat` is a valid value to be overwritten.
    let mut st: libc::stat = unsafe { core::mem::zeroed() };
    // SAFETY: `st` is a valid out-pointer.
    (unsafe { libc::fstat(fd, &mut st) } == 0).then_some(st)
}

/// Whether `fd` is still the file at the liveness path (same device and
/// inode): a liveness file deleted and re-created under us would otherwise
/// make every token held on the new one look released.
#[cfg_attr(not(feature = "std"), allow(dead_code))] // tokens are drawn only with `std`
pub(crate) fn is_current_liveness_file(fd: i32) -> bool {
    // SAFETY: an all-zero `stat` is a valid value to be overwritten.
    let mut at_path: libc::stat = unsafe { core::mem::zeroed() };
    // SAFETY: the path is NUL-terminated; `at_path` is a valid out-pointer.
    let rc = unsafe { libc::lstat(LIVENESS_PATH.as_ptr().cast(), &mut at_path) };
    match (rc == 0, fstat(fd)) {
        (true, Some(ours)) => ours.st_dev == at_path.st_dev && ours.st_ino == at_path.st_ino,
        _ => false,
    }
}

/// Closes a descriptor (async-signal-safe: used in a fork child handler).
pub(crate) fn close(fd: i32) {
    // SAFETY: the caller owns `fd` and never uses it again.
    unsafe { libc::close(fd) };
}

/// A one-byte `struct flock` at `offset`.
fn one_byte(kind: libc::c_int, offset: u64) -> libc::flock {
    // SAFETY: an all-zero `flock` is a valid value; every field the
    // kernel reads is set below.
    let mut fl: libc::flock = unsafe { core::mem::zeroed() };
    fl.l_type = kind as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = offset as libc::off_t;
    fl.l_len = 1;
    fl.l_pid = 0;
    fl
}

/// Takes (`lock`) or releases the open-file-description write lock on the
/// byte at `offset` through `fd`. `Err(errno)`: `EAGAIN`/`EACCES` if
/// another open file description holds a conflicting lock, `ENOLCK`, ...
#[cfg_attr(not(feature = "std"), allow(dead_code))] // tokens are drawn only with `std`
pub(crate) fn ofd_lock(fd: i32, offset: u64, lock: bool) -> Result<(), i32> {
    let mut fl = one_byte(if lock { libc::F_WRLCK } else { libc::F_UNLCK }, offset);
    // SAFETY: `fl` is a valid flock for the duration of the call.
    let rc = unsafe { libc::fcntl(fd, libc::F_OFD_SETLK, &mut fl) };
    if rc == 0 {
        Ok(())
    } else {
        Err(errno())
    }
}

/// Whether some *other* open file description holds a lock on the byte at
/// `offset` (`F_OFD_GETLK`; locks held through `fd`'s own description never
/// conflict with it and are not reported). Works on a read-only `fd`.
pub(crate) fn ofd_probe(fd: i32, offset: u64) -> Result<bool, i32> {
    let mut fl = one_byte(libc::F_WRLCK, offset);
    // SAFETY: `fl` is a valid flock for the duration of the call.
    let rc = unsafe { libc::fcntl(fd, libc::F_OFD_GETLK, &mut fl) };
    if rc == 0 {
        Ok(fl.l_type != libc::F_UNLCK as libc::c_short)
    } else {
        Err(errno())
    }
}

/// Liveness of token `offset` for a process that holds no descriptor of
/// its own (no `std`): opens the file read-only, asks, closes. A missing
/// file means nobody ever held a token since it was last removed.
#[cfg_attr(
    all(feature = "std", target_pointer_width = "64", not(miri)),
    allow(dead_code)
)] // see `owner`
pub(crate) fn probe_liveness_file(offset: u64) -> Liveness {
    match open_liveness_file(false) {
        Ok(fd) => {
            let r = ofd_probe(fd, offset);
            close(fd);
            match r {
                Ok(true) => Liveness::Alive,
                Ok(false) => Liveness::Dead,
                Err(_) => Liveness::Unknown,
            }
        }
        Err(libc::ENOENT) => Liveness::Dead,
        Err(_) => Liveness::Unknown,
    }
}

/// Whether task `id` is this process or one of its threads: whether
/// `/proc/self/task/<id>` exists (one `access` call).
pub(crate) fn task_in_this_process(id: u32) -> bool {
    // "/proc/self/task/" + up to 10 digits + NUL.
    let mut path = [0u8; 32];
    let prefix = b"/proc/self/task/";
    path[..prefix.len()].copy_from_slice(prefix);
    let mut len = prefix.len();
    let mut digits = [0u8; 10];
    let (mut n, mut nd) = (id, 0);
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
    // SAFETY: `path` is NUL-terminated (zero-filled past `len`).
    unsafe { libc::access(path.as_ptr().cast(), libc::F_OK) == 0 }
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
