//! How a segment comes to life and how an opener attaches: the steps of
//! the module docs of [`super`], the owner check, the mapped lock, the
//! reclaiming of dead creators' leftovers, and the errors they map to.

use std::ffi::CString;
use std::io;
use std::os::fd::OwnedFd;
use std::ptr::NonNull;
use std::sync::atomic::AtomicUsize;
use std::time::{Duration, Instant};

use memmap2::MmapRaw;
use shmkit_core::header::{
    self, header_flags, init_state, HeaderError, HeaderInit, HeaderSnapshot, HEADER_LEN, MAGIC,
};
use shmkit_core::wait::{self, Deadline};

use super::sys::{self, LockState};
use super::{
    Backing, Expect, FileId, InitFn, ObjectSpec, Options, Owner, Segment, MAPPED_BYTE, SHM_DIR,
    TEMP_PREFIX,
};
use crate::error::{CreateError, OpenError};
use crate::name::SegmentName;

/// How errors name a segment that has no name (anonymous and memfd).
pub(super) const ANONYMOUS: &str = "(anonymous)";

/// Steps 1 to 3 of the module docs for the name `name`.
pub(super) fn create_named(
    name: &SegmentName,
    spec: &ObjectSpec<'_>,
    options: &Options,
    init: InitFn<'_>,
) -> Result<Segment, CreateError> {
    let total = total_len(spec)?;
    let label = name.as_str();
    let (fd, id, tmp_guard) = create_unnamed(options.mode, label)?;
    sys::flock(&fd, libc::LOCK_EX | libc::LOCK_NB).map_err(|e| os("flock", e, label))?;
    // We map it: nobody may take it for a leftover while we live.
    hold_mapped_lock(&fd).map_err(|e| os("fcntl(F_OFD_SETLK)", e, label))?;
    sys::ftruncate(&fd, total).map_err(|e| os("ftruncate", e, label))?;
    let map = sys::map(&fd, total, true).map_err(|e| os("mmap", e, label))?;
    let base = base_of(&map);
    // SAFETY: `map` is a fresh, writable, page-aligned mapping of
    // `total >= HEADER_LEN` bytes of an object only we can reach.
    unsafe { header::begin_init(base, &header_init(spec)) };
    if !options.unlink_on_drop {
        // Persistent from the start: set before the name is visible.
        // SAFETY: as above.
        let flags = unsafe { header::flags(base) };
        flags.fetch_or(
            header_flags::PERSISTENT,
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    let to = shm_path(name);
    let linked = match &tmp_guard {
        None => sys::link_fd(&fd, &to),
        Some(tmp) => sys::link(&shm_path(tmp.name()), &to),
    };
    linked.map_err(|e| match e.raw_os_error() {
        Some(libc::EEXIST) => CreateError::AlreadyExists {
            name: name.to_string(),
        },
        Some(libc::EACCES | libc::EPERM) => CreateError::PermissionDenied {
            name: name.to_string(),
        },
        _ => os("link", e, name.as_str()),
    })?;
    // From here the name is visible: if `init` panics, remove it again
    // (if it is still ours).
    let name_guard = UnlinkOnDrop {
        name: Some(name.clone()),
        ours: Some(id),
    };
    drop(tmp_guard);

    let (map, header) = finish_init(map, spec, init)?;
    // Openers that found INITIALIZING may now take the lock and see READY.
    let _ = sys::flock(&fd, libc::LOCK_UN);
    let name = name_guard.disarm();
    Ok(Segment::new(
        map,
        header,
        Backing::Named { name, fd, id },
        options.unlink_on_drop,
        true,
    ))
}

/// Opens the name `name` and attaches (waiting for `READY`).
pub(super) fn open_named(
    name: SegmentName,
    expect: &Expect,
    options: &Options,
) -> Result<Segment, OpenError> {
    let flags = if options.read_only {
        libc::O_RDONLY
    } else {
        libc::O_RDWR
    };
    let not_found = || OpenError::NotFound {
        name: name.to_string(),
    };
    let fd = sys::shm_open(&name.c_string(), flags, 0).map_err(|e| match e.raw_os_error() {
        Some(libc::ENOENT) => not_found(),
        Some(libc::EACCES | libc::EPERM) => OpenError::PermissionDenied {
            name: name.to_string(),
        },
        _ => OpenError::Os {
            call: "shm_open",
            source: e,
        },
    })?;
    // A reclaimer holds the byte exclusively while it removes a leftover:
    // for us the name is already gone.
    match hold_mapped_lock(&fd) {
        Ok(true) => {}
        Ok(false) => return Err(not_found()),
        Err(e) => {
            return Err(OpenError::Os {
                call: "fcntl(F_OFD_SETLK)",
                source: e,
            })
        }
    }
    let (map, header, id) = attach(&fd, name.as_str(), expect, options)?;
    Ok(Segment::new(
        map,
        header,
        Backing::Named { name, fd, id },
        false,
        !options.read_only,
    ))
}

/// Takes this process tree's shared lock on [`MAPPED_BYTE`] of `fd`.
/// `Ok(false)`: a reclaimer holds it exclusively. File systems without
/// open-file-description locks (none that holds `/dev/shm` on Linux) count
/// as success: their leftovers are then never reclaimed, which is safe.
fn hold_mapped_lock(fd: &OwnedFd) -> io::Result<bool> {
    match sys::ofd_try_lock(fd, libc::F_RDLCK, MAPPED_BYTE) {
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOLCK)) => Ok(true),
        other => other,
    }
}

/// Checks the object behind `st` against the options' owner rule.
fn check_owner(st: &libc::stat, label: &str, options: &Options) -> Result<(), OpenError> {
    let wanted = match options.owner {
        Owner::Any => return Ok(()),
        Owner::Me => sys::geteuid(),
        Owner::Uid(uid) => uid,
    };
    if st.st_uid == wanted {
        return Ok(());
    }
    Err(OpenError::NotOwner {
        name: label.to_owned(),
        owner: st.st_uid,
        expected: wanted,
    })
}

/// Whether the object at `path` is a dead creator's leftover: a shmkit
/// segment of the caller's effective uid, not persistent, that no process
/// maps. Returns that and the descriptor it was judged through (opened
/// read-write, so that a reclaimer can take the exclusive lock on it).
/// `None` if the object cannot be opened or is not such a segment.
pub(super) fn stale_state(path: &CString) -> Option<(bool, OwnedFd)> {
    let fd = sys::open_path(path, libc::O_RDWR).ok()?;
    let st = sys::fstat(&fd).ok()?;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG || st.st_uid != sys::geteuid() {
        return None;
    }
    if u64::try_from(st.st_size).ok()? < HEADER_LEN as u64 {
        return None;
    }
    let mut header = [0u8; 32];
    read_at(&fd, &mut header)?;
    if header[..8] != MAGIC {
        return None;
    }
    let flags = u32::from_le_bytes(header[28..32].try_into().ok()?);
    let mapped = sys::ofd_query(&fd, libc::F_WRLCK, MAPPED_BYTE).ok()?;
    let stale = flags & header_flags::PERSISTENT == 0 && mapped == LockState::Free;
    Some((stale, fd))
}

fn read_at(fd: &OwnedFd, buf: &mut [u8]) -> Option<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: `buf` is writable for its length; pread has no other
    // preconditions.
    let n = unsafe { libc::pread(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    (usize::try_from(n).ok()? == buf.len()).then_some(())
}

/// Removes the name `name` if it is a dead creator's leftover (see
/// [`stale_state`]); returns whether it did. Holding the exclusive lock on
/// [`MAPPED_BYTE`] while it checks and unlinks keeps openers out (they
/// take the shared lock first and treat a refusal as "not found") and
/// makes concurrent reclaimers back off.
pub(super) fn reclaim_if_stale(name: &SegmentName) -> bool {
    let path = shm_path(name);
    let Some((true, fd)) = stale_state(&path) else {
        return false;
    };
    if !matches!(sys::ofd_try_lock(&fd, libc::F_WRLCK, MAPPED_BYTE), Ok(true)) {
        // Someone maps it now, or another reclaimer is at it.
        return false;
    }
    let Ok(st) = sys::fstat(&fd) else {
        return false;
    };
    // Still the same file under the name: then remove it.
    sys::names(&path, sys::file_id(&st)) && sys::unlink(&path).is_ok()
}

/// Removes a name on drop unless disarmed: cleans up after a failed or
/// panicking create. With `ours`, only while the name still refers to that
/// object: a peer may have removed and re-created it meanwhile.
struct UnlinkOnDrop {
    name: Option<SegmentName>,
    ours: Option<FileId>,
}

impl UnlinkOnDrop {
    fn name(&self) -> &SegmentName {
        // Cannot be None while armed: only disarm takes the name out.
        self.name
            .as_ref()
            .unwrap_or_else(|| unreachable!("used after disarm"))
    }

    fn disarm(mut self) -> SegmentName {
        // Cannot be None: only disarm takes the name out.
        self.name
            .take()
            .unwrap_or_else(|| unreachable!("disarmed twice"))
    }
}

impl Drop for UnlinkOnDrop {
    fn drop(&mut self) {
        let Some(name) = &self.name else { return };
        let path = shm_path(name);
        if let Some(id) = self.ours {
            if !sys::names(&path, id) {
                return;
            }
        }
        let _ = sys::unlink(&path);
    }
}

/// `/dev/shm/NAME`, the file behind the POSIX object `name` on Linux
/// (what glibc's `shm_open` and `shm_unlink` use).
pub(super) fn shm_path(name: &SegmentName) -> CString {
    // Cannot fail: names hold no NUL (SegmentName::new refuses them).
    CString::new(format!("{SHM_DIR}/{}", name.body())).unwrap_or_default()
}

/// Gives the new object `fd` exactly `mode` (open and shm_open apply the
/// umask) and returns its identity. One `fstat` tells both; `fchmod` only
/// if the umask took bits away.
fn exact_mode(fd: &OwnedFd, mode: u32, label: &str) -> Result<FileId, CreateError> {
    let st = sys::fstat(fd).map_err(|e| os("fstat", e, label))?;
    if st.st_mode & 0o7777 != mode {
        sys::fchmod(fd, mode).map_err(|e| os("fchmod", e, label))?;
    }
    Ok(sys::file_id(&st))
}

/// The error for a failed `call` while creating `name` (the canonical
/// name, or [`ANONYMOUS`] for unnamed segments).
fn os(call: &'static str, source: io::Error, name: &str) -> CreateError {
    if matches!(source.raw_os_error(), Some(libc::EACCES | libc::EPERM)) {
        return CreateError::PermissionDenied {
            name: name.to_owned(),
        };
    }
    CreateError::Os { call, source }
}

fn total_len(spec: &ObjectSpec<'_>) -> Result<usize, CreateError> {
    header::segment_len(spec.payload_len).ok_or(CreateError::InvalidLayout {
        reason: "payload too large for the address space",
    })
}

fn header_init<'a>(spec: &ObjectSpec<'a>) -> HeaderInit<'a> {
    let (pid, start) = creator_identity();
    HeaderInit {
        kind: spec.kind,
        fingerprint: spec.fingerprint,
        type_name: spec.type_name,
        payload_len: spec.payload_len,
        creator_pid: pid,
        creator_start: start,
    }
}

/// This process's pid and start time (0 if unknown). The start time comes
/// from `/proc` (an open, a read and a close, dearer than the rest of a
/// create), so it is read once per process and cached; a `fork` child has
/// another pid and reads its own.
fn creator_identity() -> (u32, u64) {
    use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
    static PID: AtomicU32 = AtomicU32::new(0);
    static START: AtomicU64 = AtomicU64::new(0);
    let pid = shmkit_core::owner::current_process_id();
    // SYNC POINT: Acquire pairs with the Release store of PID below: a
    // thread that sees its own pid there sees the START stored before it.
    // Every thread of one process stores the same pair, so racing
    // refreshes are harmless.
    if PID.load(Ordering::Acquire) == pid {
        return (pid, START.load(Ordering::Relaxed));
    }
    let start = shmkit_core::owner::start_time(pid).unwrap_or(0);
    START.store(start, Ordering::Relaxed);
    PID.store(pid, Ordering::Release);
    (pid, start)
}

pub(super) fn base_of(map: &MmapRaw) -> NonNull<u8> {
    // A successful mmap never returns null.
    NonNull::new(map.as_mut_ptr()).unwrap_or(NonNull::dangling())
}

/// Creates the new object, not yet reachable by any name: an `O_TMPFILE`
/// in [`SHM_DIR`] (nothing to clean up if we die before linking it), or, where
/// the file system cannot do that, an object under a unique temporary name,
/// with the guard that removes that name again.
/// `label` is the name being created, for error messages.
fn create_unnamed(
    mode: u32,
    label: &str,
) -> Result<(OwnedFd, FileId, Option<UnlinkOnDrop>), CreateError> {
    match sys::open_tmpfile(mode) {
        Ok(fd) => {
            let id = exact_mode(&fd, mode, label)?;
            Ok((fd, id, None))
        }
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EOPNOTSUPP | libc::EISDIR | libc::EINVAL)
            ) =>
        {
            let (tmp, fd) = create_temp(mode, label)?;
            let guard = UnlinkOnDrop {
                name: Some(tmp),
                ours: None,
            };
            let id = exact_mode(&fd, mode, label)?;
            Ok((fd, id, Some(guard)))
        }
        Err(e) => Err(os("open(O_TMPFILE)", e, label)),
    }
}

/// Creates a fresh object under a unique temporary name.
fn create_temp(mode: u32, label: &str) -> Result<(SegmentName, OwnedFd), CreateError> {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let pid = shmkit_core::owner::current_process_id();
    for _ in 0..16 {
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = SegmentName::new(&format!("{TEMP_PREFIX}{pid}.{n}"))
            .map_err(CreateError::InvalidName)?;
        match sys::shm_open(
            &tmp.c_string(),
            libc::O_RDWR | libc::O_CREAT | libc::O_EXCL,
            mode,
        ) {
            // The caller sets the exact mode.
            Ok(fd) => return Ok((tmp, fd)),
            // A leftover from an earlier process with our pid: next number.
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => continue,
            Err(e) => return Err(os("shm_open", e, label)),
        }
    }
    Err(CreateError::Os {
        call: "shm_open",
        source: io::Error::from_raw_os_error(libc::EEXIST),
    })
}

pub(super) fn new_memfd(
    spec: &ObjectSpec<'_>,
    seal: bool,
) -> Result<(OwnedFd, MmapRaw), CreateError> {
    let total = total_len(spec)?;
    let fd = sys::memfd_create(seal).map_err(|e| os("memfd_create", e, ANONYMOUS))?;
    sys::ftruncate(&fd, total).map_err(|e| os("ftruncate", e, ANONYMOUS))?;
    if seal {
        sys::seal_size(&fd).map_err(|e| os("fcntl(F_ADD_SEALS)", e, ANONYMOUS))?;
    }
    let map = sys::map(&fd, total, true).map_err(|e| os("mmap", e, ANONYMOUS))?;
    let base = base_of(&map);
    // SAFETY: fresh, writable, page-aligned mapping of an unnamed object
    // nobody else can reach yet.
    unsafe { header::begin_init(base, &header_init(spec)) };
    Ok((fd, map))
}

/// Runs `init` on the payload, publishes `READY` and wakes waiting openers.
pub(super) fn finish_init(
    map: MmapRaw,
    spec: &ObjectSpec<'_>,
    init: InitFn<'_>,
) -> Result<(MmapRaw, HeaderSnapshot), CreateError> {
    let base = base_of(&map);
    // SAFETY: HEADER_LEN <= total mapped length.
    let payload = unsafe { base.add(HEADER_LEN) };
    // The payload length fits in usize: segment_len checked the total.
    init(payload, spec.payload_len as usize);
    // SAFETY: the mapping is writable and its header was written by us.
    if unsafe { header::publish(base) } {
        // An opener announced it sleeps on the state word (only then: the
        // wake-up is a system call most creates can do without).
        // SAFETY: the header is mapped for as long as `map` lives.
        wait::wake_all(unsafe { header::init_state(base) });
    }
    // SAFETY: readable mapping of at least HEADER_LEN bytes.
    let snapshot = unsafe { HeaderSnapshot::read(base) };
    snapshot
        .validate(map.len())
        .map_err(|_| CreateError::InvalidLayout {
            reason: "header failed validation right after being written",
        })?;
    Ok((map, snapshot))
}

/// Maps `fd`, waits for `READY`, validates the header and checks `expect`.
/// Returns the mapping, the header and the file's identity.
pub(super) fn attach(
    fd: &OwnedFd,
    label: &str,
    expect: &Expect,
    options: &Options,
) -> Result<(MmapRaw, HeaderSnapshot, FileId), OpenError> {
    let st = sys::fstat(fd).map_err(|e| OpenError::Os {
        call: "fstat",
        source: e,
    })?;
    check_owner(&st, label, options)?;
    let size = u64::try_from(st.st_size).map_err(|_| OpenError::Corrupt {
        what: format!("negative object size {}", st.st_size),
    })?;
    if size < HEADER_LEN as u64 {
        return Err(OpenError::Truncated {
            expected: HEADER_LEN as u64,
            actual: size,
        });
    }
    let len = usize::try_from(size).map_err(|_| OpenError::Corrupt {
        what: format!("object of {size} bytes does not fit the address space"),
    })?;
    let map = sys::map(fd, len, !options.read_only).map_err(|e| match e.raw_os_error() {
        Some(libc::EACCES | libc::EPERM) => OpenError::PermissionDenied {
            name: label.to_owned(),
        },
        _ => OpenError::Os {
            call: "mmap",
            source: e,
        },
    })?;
    let header = wait_ready(fd, &map, label, options)?;
    expect.check(&header)?;
    Ok((map, header, sys::file_id(&st)))
}

/// Polls the header until it is `READY`, the creator is found dead, or the
/// init timeout passes.
fn wait_ready(
    fd: &OwnedFd,
    map: &MmapRaw,
    label: &str,
    options: &Options,
) -> Result<HeaderSnapshot, OpenError> {
    /// How often a waiting opener checks whether the creator still lives.
    const LIVENESS_SLICE: Duration = Duration::from_millis(5);
    let started = Instant::now();
    let deadline = Deadline::after(options.init_timeout);
    let base = base_of(map);
    // Read-only openers' poll interval, doubled before each sleep.
    let mut read_only_poll = Duration::from_micros(50);
    loop {
        // SAFETY: the mapping is at least HEADER_LEN bytes (checked by the
        // caller) and page-aligned.
        let snapshot = unsafe { HeaderSnapshot::read(base) };
        let state = match snapshot.validate(map.len()) {
            Ok(()) => return Ok(snapshot),
            Err(HeaderError::NotReady { state }) => state,
            Err(e) => return Err(header_error(e, &snapshot, label)),
        };
        if sys::flock(fd, libc::LOCK_SH | libc::LOCK_NB).is_ok() {
            // Nobody holds the creator's lock: either it just finished, or
            // it died. The state word tells which.
            // SAFETY: as above.
            let again = unsafe { HeaderSnapshot::read(base) };
            let _ = sys::flock(fd, libc::LOCK_UN);
            if again.init_state == init_state::READY {
                // Use this snapshot rather than looping: a peer flipping
                // the state back and forth must not keep us here past the
                // deadline.
                return match again.validate(map.len()) {
                    Ok(()) => Ok(again),
                    Err(e) => Err(header_error(e, &again, label)),
                };
            }
            if !options.read_only {
                // SAFETY: writable mapping of the header.
                unsafe { header::mark_abandoned(base, again.init_state) };
            }
            return Err(OpenError::CreatorDied {
                pid: again.creator_pid,
            });
        }
        if deadline.has_passed() {
            return Err(OpenError::InitTimedOut {
                waited: started.elapsed(),
            });
        }
        let slice = if options.read_only {
            // A read-only mapping cannot announce itself (that is a write),
            // so the creator will not wake us: poll, briefly at first.
            read_only_poll = (read_only_poll * 2).min(LIVENESS_SLICE);
            read_only_poll
        } else {
            LIVENESS_SLICE
        };
        let expected = if options.read_only {
            Some(state)
        } else {
            // SAFETY: writable mapping of the header.
            unsafe { header::announce_waiter(base, state) }
        };
        // None: the state moved on while we announced; look again.
        if let Some(expected) = expected {
            // SAFETY: the header stays mapped while `map` lives.
            let word = unsafe { header::init_state(base) };
            wait::wait(word, expected, Some(deadline.min(Deadline::after(slice))));
        }
    }
}

fn header_error(e: HeaderError, snapshot: &HeaderSnapshot, label: &str) -> OpenError {
    match e {
        HeaderError::TooShort { len } => OpenError::Truncated {
            expected: HEADER_LEN as u64,
            actual: len as u64,
        },
        HeaderError::NotShmkit => OpenError::NotShmkit {
            name: label.to_owned(),
        },
        HeaderError::VersionMismatch { found } => OpenError::VersionMismatch {
            found,
            supported: header::FORMAT_VERSION,
        },
        HeaderError::Abandoned => OpenError::CreatorDied {
            pid: snapshot.creator_pid,
        },
        HeaderError::Corrupt { field } => OpenError::Corrupt {
            what: format!("impossible header field `{field}`"),
        },
        HeaderError::Truncated { expected, actual } => OpenError::Truncated { expected, actual },
        HeaderError::NotReady { state } => OpenError::Corrupt {
            what: format!("init state {state}"),
        },
    }
}
