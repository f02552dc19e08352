//! Thin, `io::Result` wrappers over the system calls segments use.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use memmap2::{MmapOptions, MmapRaw};

use super::FileId;

fn cvt(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Retries `f` while it fails with `EINTR`.
fn retry(mut f: impl FnMut() -> libc::c_int) -> io::Result<libc::c_int> {
    loop {
        match cvt(f()) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

pub(crate) fn shm_open(name: &CString, flags: libc::c_int, mode: u32) -> io::Result<OwnedFd> {
    // O_NONBLOCK: anyone may create files in /dev/shm, and opening a
    // FIFO planted under a segment's name read-only would otherwise
    // block until a writer appears. It changes nothing for regular
    // files (the object is then refused by its size or header).
    let flags = flags | libc::O_CLOEXEC | libc::O_NONBLOCK;
    // SAFETY: `name` is NUL-terminated; shm_open has no other
    // preconditions.
    let fd = retry(|| unsafe { libc::shm_open(name.as_ptr(), flags, mode as libc::mode_t) })?;
    // SAFETY: `fd` is a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub(crate) fn shm_unlink(name: &CString) -> io::Result<()> {
    // SAFETY: `name` is NUL-terminated.
    cvt(unsafe { libc::shm_unlink(name.as_ptr()) }).map(drop)
}

pub(crate) fn memfd_create(seal: bool) -> io::Result<OwnedFd> {
    let flags = libc::MFD_CLOEXEC | if seal { libc::MFD_ALLOW_SEALING } else { 0 };
    // SAFETY: the name is a NUL-terminated literal.
    let fd = cvt(unsafe { libc::memfd_create(c"shmkit".as_ptr(), flags) })?;
    // SAFETY: `fd` is a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Why [`seal_against_shrinking`] failed.
pub(crate) enum SealError {
    /// The object cannot take the seal, for this reason.
    Refused(&'static str),
    /// An unexpected OS error from this call.
    Os(&'static str, io::Error),
}

fn get_seals(fd: &OwnedFd) -> io::Result<libc::c_int> {
    // SAFETY: plain fcntl on a descriptor we own.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) })
}

/// Makes sure the object behind `fd` can never shrink: it carries
/// `F_SEAL_SHRINK` already, or this call adds it.
pub(crate) fn seal_against_shrinking(fd: &OwnedFd) -> Result<(), SealError> {
    /// Why an object whose seals are `seals` cannot take the seal.
    fn refusal(seals: libc::c_int) -> SealError {
        if seals & libc::F_SEAL_SEAL != 0 {
            // Named tmpfs objects, and memfds made without
            // MFD_ALLOW_SEALING, start out with F_SEAL_SEAL.
            SealError::Refused("it is a named object, or a memfd created without MFD_ALLOW_SEALING")
        } else {
            // Only a writable descriptor may add seals.
            SealError::Refused("the descriptor is read-only, and only a writable one may add seals")
        }
    }
    let seals = match get_seals(fd) {
        Ok(seals) => seals,
        // Files outside tmpfs/hugetlbfs know nothing of seals.
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            return Err(SealError::Refused("the file system does not support seals"))
        }
        Err(e) => return Err(SealError::Os("fcntl(F_GET_SEALS)", e)),
    };
    if seals & libc::F_SEAL_SHRINK != 0 {
        return Ok(());
    }
    if seals & libc::F_SEAL_SEAL != 0 {
        return Err(refusal(seals));
    }
    // SAFETY: plain fcntl on a descriptor we own.
    match cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, libc::F_SEAL_SHRINK) }) {
        Ok(_) => Ok(()),
        // A read-only descriptor, or the sender sealed the object
        // meanwhile: look again to tell which.
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => match get_seals(fd) {
            Ok(now) if now & libc::F_SEAL_SHRINK != 0 => Ok(()),
            Ok(now) => Err(refusal(now)),
            Err(_) => Err(SealError::Os("fcntl(F_ADD_SEALS)", e)),
        },
        Err(e) => Err(SealError::Os("fcntl(F_ADD_SEALS)", e)),
    }
}

pub(crate) fn seal_size(fd: &OwnedFd) -> io::Result<()> {
    let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
    // SAFETY: plain fcntl on a descriptor we own.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) }).map(drop)
}

pub(crate) fn ftruncate(fd: &OwnedFd, len: usize) -> io::Result<()> {
    let len = libc::off_t::try_from(len).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
    // SAFETY: plain ftruncate on a descriptor we own.
    retry(|| unsafe { libc::ftruncate(fd.as_raw_fd(), len) }).map(drop)
}

pub(crate) fn fchmod(fd: &OwnedFd, mode: u32) -> io::Result<()> {
    // SAFETY: plain fchmod on a descriptor we own.
    cvt(unsafe { libc::fchmod(fd.as_raw_fd(), mode as libc::mode_t) }).map(drop)
}

pub(crate) fn flock(fd: &OwnedFd, op: libc::c_int) -> io::Result<()> {
    // SAFETY: plain flock on a descriptor we own.
    retry(|| unsafe { libc::flock(fd.as_raw_fd(), op) }).map(drop)
}

/// An unnamed, read-write object in [`SHM_DIR`] (`O_TMPFILE`).
pub(crate) fn open_tmpfile(mode: u32) -> io::Result<OwnedFd> {
    // SAFETY: NUL-terminated literal path; open has no other
    // preconditions.
    let fd = retry(|| unsafe {
        libc::open(
            c"/dev/shm".as_ptr(),
            libc::O_TMPFILE | libc::O_RDWR | libc::O_CLOEXEC,
            mode as libc::c_uint,
        )
    })?;
    // SAFETY: `fd` is a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Gives the `O_TMPFILE` object `fd` the name `to`; fails with `EEXIST`
/// if the name is taken. `linkat(AT_EMPTY_PATH)` is one path walk
/// cheaper; older kernels allow it only with `CAP_DAC_READ_SEARCH`
/// (recent ones also for files the caller opened itself). Where it is
/// refused (`ENOENT`), go through `/proc/self/fd`, which needs no
/// privilege, and remember that.
pub(crate) fn link_fd(fd: &OwnedFd, to: &CStr) -> io::Result<()> {
    use std::sync::atomic::{AtomicBool, Ordering};
    /// Set once `AT_EMPTY_PATH` was refused; a hint only, so Relaxed.
    static NO_EMPTY_PATH: AtomicBool = AtomicBool::new(false);
    if !NO_EMPTY_PATH.load(Ordering::Relaxed) {
        // SAFETY: both paths are NUL-terminated; `fd` is open.
        let rc = unsafe {
            libc::linkat(
                fd.as_raw_fd(),
                c"".as_ptr(),
                libc::AT_FDCWD,
                to.as_ptr(),
                libc::AT_EMPTY_PATH,
            )
        };
        match cvt(rc) {
            Ok(_) => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                NO_EMPTY_PATH.store(true, Ordering::Relaxed);
            }
            Err(e) => return Err(e),
        }
    }
    let from = CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: both paths are NUL-terminated.
    cvt(unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    })
    .map(drop)
}

pub(crate) fn link(from: &CStr, to: &CStr) -> io::Result<()> {
    // SAFETY: both paths are NUL-terminated.
    cvt(unsafe { libc::link(from.as_ptr(), to.as_ptr()) }).map(drop)
}

pub(crate) fn unlink(path: &CStr) -> io::Result<()> {
    // SAFETY: `path` is NUL-terminated.
    cvt(unsafe { libc::unlink(path.as_ptr()) }).map(drop)
}

pub(crate) fn fstat(fd: &OwnedFd) -> io::Result<libc::stat> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::zeroed();
    // SAFETY: `st` is a writable stat buffer.
    cvt(unsafe { libc::fstat(fd.as_raw_fd(), st.as_mut_ptr()) })?;
    // SAFETY: fstat succeeded and filled it (and it was zeroed anyway).
    Ok(unsafe { st.assume_init() })
}

pub(crate) fn file_id(st: &libc::stat) -> FileId {
    FileId {
        dev: st.st_dev,
        ino: st.st_ino,
    }
}

/// Whether `path` names the file `id`.
pub(crate) fn names(path: &CStr, id: FileId) -> bool {
    let mut st = std::mem::MaybeUninit::<libc::stat>::zeroed();
    // SAFETY: NUL-terminated path, writable stat buffer.
    if unsafe { libc::stat(path.as_ptr(), st.as_mut_ptr()) } != 0 {
        return false;
    }
    // SAFETY: stat succeeded.
    file_id(&unsafe { st.assume_init() }) == id
}

/// Maps `len` bytes of `fd`, shared. A segment of one page is mapped
/// with `MAP_POPULATE`: creator and openers touch its header on that
/// page right away anyway, and populating it inside `mmap` is cheaper
/// than taking the page fault. Larger segments are not populated, so
/// pages nobody touches are never allocated.
pub(crate) fn map(fd: &OwnedFd, len: usize, writable: bool) -> io::Result<MmapRaw> {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let one_page = usize::try_from(page).is_ok_and(|page| len <= page);
    let opts = {
        let mut o = MmapOptions::new();
        o.len(len);
        if one_page {
            o.populate();
        }
        o
    };
    if writable {
        opts.map_raw(fd.as_raw_fd())
    } else {
        opts.map_raw_read_only(fd.as_raw_fd())
    }
}

/// What an open-file-description lock query found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LockState {
    /// Nobody holds a conflicting lock.
    Free,
    /// Somebody does.
    Held,
}

fn ofd_lock(kind: libc::c_int, offset: u64) -> libc::flock {
    // SAFETY: `flock` is a plain C struct; all-zero is a valid value.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = offset as libc::off_t;
    fl.l_len = 1;
    fl
}

/// Takes an open-file-description lock of `kind` (`F_RDLCK`/`F_WRLCK`) on
/// the byte at `offset`, without waiting. OFD locks belong to the open file
/// description: a `fork` child shares it through the inherited descriptor,
/// and the kernel drops the lock when the last descriptor to it closes
/// (at the latest when every process holding one has died).
///
/// `Ok(false)`: a conflicting lock is held by another description.
pub(crate) fn ofd_try_lock(fd: &OwnedFd, kind: libc::c_int, offset: u64) -> io::Result<bool> {
    let fl = ofd_lock(kind, offset);
    // SAFETY: `fl` is a valid flock for the duration of the call.
    match cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_OFD_SETLK, &fl) }) {
        Ok(_) => Ok(true),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EACCES)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Whether another open file description holds a lock that conflicts with
/// a lock of `kind` on the byte at `offset` (a write-lock query finds read
/// and write locks alike). Works from a read-only descriptor.
pub(crate) fn ofd_query(fd: &OwnedFd, kind: libc::c_int, offset: u64) -> io::Result<LockState> {
    let mut fl = ofd_lock(kind, offset);
    // SAFETY: `fl` is a valid, writable flock for the duration of the call.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_OFD_GETLK, &mut fl) })?;
    Ok(if fl.l_type == libc::F_UNLCK as libc::c_short {
        LockState::Free
    } else {
        LockState::Held
    })
}

/// Opens an existing object by path, without following a symlink and
/// without blocking on a FIFO planted under its name.
pub(crate) fn open_path(path: &CStr, flags: libc::c_int) -> io::Result<OwnedFd> {
    let flags = flags | libc::O_CLOEXEC | libc::O_NONBLOCK | libc::O_NOFOLLOW;
    // SAFETY: `path` is NUL-terminated; open has no other preconditions.
    let fd = retry(|| unsafe { libc::open(path.as_ptr(), flags) })?;
    // SAFETY: `fd` is a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The caller's effective user id.
pub(crate) fn geteuid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}
