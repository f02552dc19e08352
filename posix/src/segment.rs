//! Named, anonymous and memfd segments: a mapping that starts with a
//! validated shmkit header.
//!
//! # How a named segment comes to life
//!
//! 1. The creator makes the object without a name (`O_TMPFILE` in
//!    `/dev/shm`; where that is unsupported, under a private temporary name
//!    `/.shmkit-tmp.<pid>.<n>`), takes an exclusive `flock` on it, sizes
//!    it, and writes the header in state `INITIALIZING`.
//! 2. It `link(2)`s the object to its real name (`linkat`): this is the
//!    `O_EXCL` step (fails with `EEXIST` if the name is taken) and, because
//!    the lock and the header came first, nobody can ever open the name and
//!    find an unsized object or a header without a creator pid.
//! 3. It initialises the payload, stores `READY` (Release), wakes openers
//!    waiting on the state word, and drops the lock.
//!
//! A creator killed before step 2 leaves nothing behind on the `O_TMPFILE`
//! path (the kernel frees an unnamed file with its last descriptor). Only
//! on the fallback path can one leave a `.shmkit-tmp.<pid>.<n>` object in
//! `/dev/shm` (a creator that merely fails removes its own); `shmkit gc`
//! removes those of dead processes.
//!
//! An opener that finds `INITIALIZING` waits (on the state word, in slices
//! of a few milliseconds) until `READY` or its timeout; it sets the state
//! word's `WAITERS` bit first, and the creator issues the futex wake-up
//! only if someone did (see `shmkit_core::header`). A read-only opener
//! cannot set the bit, so it polls instead, from 100 µs up to every 5 ms.
//! In between it tries
//! a *shared* `flock`: getting it while the state is still not `READY`
//! proves the creator is gone (the kernel drops a dead process's locks), so
//! the opener marks the segment `ABANDONED` and reports
//! [`OpenError::CreatorDied`]. Recover by removing the segment
//! ([`Segment::unlink`] or `shmkit rm`) and creating it again.
//!
//! On Linux, POSIX shared-memory objects are files in `/dev/shm` (glibc's
//! `shm_open` opens `/dev/shm/NAME`); shmkit relies on that for the `link`.
//!
//! # Ownership
//!
//! A creator's handle removes the name when dropped (like Python's
//! `SharedMemory.unlink`); mappings other processes hold stay valid.
//! [`Segment::persist`] keeps the name alive past the handle;
//! [`Segment::take_ownership`] makes an opener responsible for removing it.
//!
//! # What is and is not defended against: shrinking
//!
//! A mapping outlives the object's size: if anyone `ftruncate`s the object
//! smaller after we mapped it, touching the lost pages raises `SIGBUS` and
//! kills this process. Sizes are checked against the header before
//! mapping (a short object is `Truncated`, never mapped past its end); what
//! happens after mapping depends on the kind of segment:
//!
//! - **memfd segments** ([`Segment::memfd`]) are sealed against shrinking
//!   and growing (`F_SEAL_SHRINK | F_SEAL_GROW`, then `F_SEAL_SEAL`) before
//!   their descriptor leaves the creator: nobody can shrink them.
//! - **Descriptors received with [`Segment::from_fd`]** must carry
//!   `F_SEAL_SHRINK`, or take it: a memfd that allows sealing is sealed by
//!   the receiver before it checks the size and maps. Objects that cannot
//!   be sealed (a named object's descriptor, a memfd created without
//!   `MFD_ALLOW_SEALING`, a read-only descriptor of an unsealed memfd,
//!   files outside tmpfs) are refused with [`OpenError::Unsealed`] unless
//!   [`SegmentOptions::allow_unsealed`] accepts the risk.
//! - **Named segments are not defended.** POSIX objects in `/dev/shm`
//!   cannot be sealed at all, so any process allowed to open one for
//!   writing (the mode decides who: `0600` by default, the owner alone) can
//!   shrink it under every other process's mapping. Give named segments
//!   only to processes you trust not to; a peer that may be hostile should
//!   get a memfd instead.
//! - **Anonymous segments** ([`Segment::anonymous`]) have no descriptor
//!   left to truncate.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::AtomicUsize;
use std::time::{Duration, Instant};

use memmap2::{MmapOptions, MmapRaw};
use shmkit_core::header::{
    self, init_state, Fingerprint, HeaderError, HeaderInit, HeaderSnapshot, Kind, HEADER_LEN,
};
use shmkit_core::wait::{self, Deadline};

use crate::error::{CreateError, OpenError, OpenOrCreateError, TypeMismatch, UnlinkError};
use crate::name::SegmentName;

/// How errors name a segment that has no name (anonymous and memfd).
const ANONYMOUS: &str = "(anonymous)";

/// Where Linux keeps POSIX shared-memory objects.
pub const SHM_DIR: &str = "/dev/shm";
/// Prefix of the temporary names creators use before linking where
/// `O_TMPFILE` is unsupported (see the module docs); `shmkit gc` removes
/// leftovers of dead creators.
pub const TEMP_PREFIX: &str = ".shmkit-tmp.";

/// How a segment is created or opened.
#[derive(Clone, Debug)]
pub struct SegmentOptions {
    mode: u32,
    unlink_on_drop: bool,
    init_timeout: Duration,
    read_only: bool,
    allow_unsealed: bool,
}

impl Default for SegmentOptions {
    fn default() -> SegmentOptions {
        SegmentOptions {
            mode: 0o600,
            unlink_on_drop: true,
            init_timeout: Duration::from_secs(2),
            read_only: false,
            allow_unsealed: false,
        }
    }
}

impl SegmentOptions {
    /// The defaults: mode `0600`, the creator unlinks on drop, openers wait
    /// up to 2 s for `READY`, read-write.
    #[must_use]
    pub fn new() -> SegmentOptions {
        SegmentOptions::default()
    }

    /// Permission bits of a new segment (applied exactly, umask ignored).
    #[must_use]
    pub fn mode(mut self, mode: u32) -> SegmentOptions {
        self.mode = mode & 0o777;
        self
    }

    /// Whether the creator's handle removes the name when dropped.
    #[must_use]
    pub fn unlink_on_drop(mut self, yes: bool) -> SegmentOptions {
        self.unlink_on_drop = yes;
        self
    }

    /// How long an opener waits for a creator to finish initialising.
    #[must_use]
    pub fn init_timeout(mut self, timeout: Duration) -> SegmentOptions {
        self.init_timeout = timeout;
        self
    }

    /// Open read-only (`O_RDONLY`, `PROT_READ`).
    #[must_use]
    pub fn read_only(mut self, yes: bool) -> SegmentOptions {
        self.read_only = yes;
        self
    }

    /// Lets [`Segment::from_fd`] attach to an object that cannot be sealed
    /// against shrinking (a named object's descriptor, or a memfd created
    /// without `MFD_ALLOW_SEALING`). Off by default: whoever else holds
    /// such a descriptor can `ftruncate` the object and crash this process
    /// with `SIGBUS`. Turn it on only for descriptors from a peer you trust
    /// as much as yourself.
    #[must_use]
    pub fn allow_unsealed(mut self, yes: bool) -> SegmentOptions {
        self.allow_unsealed = yes;
        self
    }
}

/// What a creator puts in a new segment.
#[derive(Clone, Copy, Debug)]
pub struct ObjectSpec<'a> {
    /// The object kind.
    pub kind: Kind,
    /// The payload type and parameters.
    pub fingerprint: Fingerprint,
    /// The payload type's name, for messages and `shmkit ls`.
    pub type_name: &'a str,
    /// Bytes of payload.
    pub payload_len: u64,
}

impl ObjectSpec<'_> {
    /// What an opener of exactly this object (parameters included) expects.
    #[must_use]
    pub fn expect(&self) -> Expect {
        Expect {
            kind: self.kind,
            fingerprint: self.fingerprint,
            match_params: true,
            payload_len: Some(self.payload_len),
            type_name: self.type_name.to_owned(),
        }
    }
}

/// What an opener requires of the header it finds.
#[derive(Clone, Debug)]
pub struct Expect {
    /// Required kind.
    pub kind: Kind,
    /// Required element type (hash, size, align) and, if `match_params`,
    /// parameters.
    pub fingerprint: Fingerprint,
    /// Whether `fingerprint.params` must match too.
    pub match_params: bool,
    /// The payload length these parameters need, if the opener knows it
    /// (`open_or_create` does): a header whose parameters match but whose
    /// payload length differs was forged, and a handle trusting the
    /// parameters would read past the payload.
    pub payload_len: Option<u64>,
    /// The expected type name, for messages.
    pub type_name: String,
}

impl Expect {
    /// Expect `kind` holding element type `T`, any parameters.
    #[must_use]
    pub fn of<T>(kind: Kind) -> Expect {
        Expect {
            kind,
            fingerprint: Fingerprint::of::<T>([0, 0]),
            match_params: false,
            payload_len: None,
            type_name: std::any::type_name::<T>().to_owned(),
        }
    }

    fn check(&self, found: &HeaderSnapshot) -> Result<(), OpenError> {
        if found.kind != self.kind {
            return Err(OpenError::KindMismatch {
                expected: self.kind,
                found: found.kind,
            });
        }
        let params_differ =
            self.match_params && found.fingerprint.params != self.fingerprint.params;
        if !found.fingerprint.same_type(&self.fingerprint) || params_differ {
            return Err(OpenError::TypeMismatch(Box::new(TypeMismatch {
                expected_type: self.type_name.clone(),
                expected: self.fingerprint,
                found_type: found.type_name().to_owned(),
                found: found.fingerprint,
            })));
        }
        if let Some(needed) = self.payload_len {
            if needed != found.payload_len {
                return Err(OpenError::Corrupt {
                    what: format!(
                        "its recorded parameters {:?} need a payload of {needed} bytes, but the header says {}",
                        found.fingerprint.params, found.payload_len
                    ),
                });
            }
        }
        Ok(())
    }
}

/// Which file an open descriptor refers to (device and inode numbers).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct FileId {
    dev: u64,
    ino: u64,
}

enum Backing {
    /// A named object, with the identity of the file we hold (taken from
    /// the `fstat` we needed anyway), to check before unlinking the name.
    Named {
        name: SegmentName,
        fd: OwnedFd,
        id: FileId,
    },
    /// A memfd whose descriptor can be passed to other processes.
    Memfd(OwnedFd),
    /// An unnamed mapping shared with children created by `fork`.
    Anonymous,
}

/// A mapped shmkit segment: header validated, payload ready.
///
/// Typed handles (`SharedArray`, ...) wrap one; code placing its own
/// objects in segments uses it directly.
pub struct Segment {
    map: MmapRaw,
    header: HeaderSnapshot,
    backing: Backing,
    unlink_on_drop: bool,
    writable: bool,
}

impl std::fmt::Debug for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segment")
            .field("name", &self.name())
            .field("len", &self.len())
            .field("kind", &self.header.kind)
            .field("type", &self.header.type_name())
            .field("writable", &self.writable)
            .field("owner", &self.unlink_on_drop)
            .finish()
    }
}

/// The function that fills a fresh payload: given its start and length,
/// with every byte zero, it writes the object's initial state.
pub type InitFn<'a> = &'a mut dyn FnMut(NonNull<u8>, usize);

impl Segment {
    /// Creates the named segment `name` holding `spec`, running `init` on
    /// the zeroed payload before anyone can attach.
    ///
    /// # Errors
    /// See [`CreateError`]; `AlreadyExists` if the name is taken.
    pub fn create(
        name: &str,
        spec: &ObjectSpec<'_>,
        options: &SegmentOptions,
        init: InitFn<'_>,
    ) -> Result<Segment, CreateError> {
        let name = SegmentName::new(name).map_err(CreateError::InvalidName)?;
        let total = total_len(spec)?;
        let label = name.as_str();
        let (fd, id, tmp_guard) = create_unnamed(options.mode, label)?;
        sys::flock(&fd, libc::LOCK_EX | libc::LOCK_NB).map_err(|e| os("flock", e, label))?;
        sys::ftruncate(&fd, total).map_err(|e| os("ftruncate", e, label))?;
        let map = sys::map(&fd, total, true).map_err(|e| os("mmap", e, label))?;
        let base = base_of(&map);
        // SAFETY: `map` is a fresh, writable, page-aligned mapping of
        // `total >= HEADER_LEN` bytes of an object only we can reach.
        unsafe { header::begin_init(base, &header_init(spec)) };

        let to = shm_path(&name);
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
            name: Some(name),
            ours: Some(id),
        };
        drop(tmp_guard);

        let (map, header) = finish_init(map, spec, init)?;
        // Openers that found INITIALIZING may now take the lock and see READY.
        let _ = sys::flock(&fd, libc::LOCK_UN);
        let name = name_guard.disarm();
        Ok(Segment {
            map,
            header,
            backing: Backing::Named { name, fd, id },
            unlink_on_drop: options.unlink_on_drop,
            writable: true,
        })
    }

    /// Opens the named segment `name`, waiting (up to the options' init
    /// timeout) for its creator to finish, and checks it against `expect`.
    ///
    /// # Errors
    /// See [`OpenError`].
    pub fn open(
        name: &str,
        expect: &Expect,
        options: &SegmentOptions,
    ) -> Result<Segment, OpenError> {
        let name = SegmentName::new(name).map_err(OpenError::InvalidName)?;
        let flags = if options.read_only {
            libc::O_RDONLY
        } else {
            libc::O_RDWR
        };
        let fd = sys::shm_open(&name.c_string(), flags, 0).map_err(|e| match e.raw_os_error() {
            Some(libc::ENOENT) => OpenError::NotFound {
                name: name.to_string(),
            },
            Some(libc::EACCES | libc::EPERM) => OpenError::PermissionDenied {
                name: name.to_string(),
            },
            _ => OpenError::Os {
                call: "shm_open",
                source: e,
            },
        })?;
        let (map, header, id) = attach(&fd, name.as_str(), expect, options)?;
        Ok(Segment {
            map,
            header,
            backing: Backing::Named { name, fd, id },
            unlink_on_drop: false,
            writable: !options.read_only,
        })
    }

    /// Opens `name` if it exists, else creates it; race-free when many
    /// processes call it at once: exactly one creates (and runs `init`), the
    /// rest wait for `READY` and attach. Returns the segment and whether
    /// this call created it. An existing segment must match `spec` exactly.
    ///
    /// # Errors
    /// See [`OpenOrCreateError`].
    pub fn open_or_create(
        name: &str,
        spec: &ObjectSpec<'_>,
        options: &SegmentOptions,
        init: InitFn<'_>,
    ) -> Result<(Segment, bool), OpenOrCreateError> {
        const ATTEMPTS: u32 = 64;
        let expect = spec.expect();
        for _ in 0..ATTEMPTS {
            match Segment::create(name, spec, options, &mut *init) {
                Ok(segment) => return Ok((segment, true)),
                Err(CreateError::AlreadyExists { .. }) => {}
                Err(e) => return Err(OpenOrCreateError::Create(e)),
            }
            match Segment::open(name, &expect, options) {
                Ok(segment) => return Ok((segment, false)),
                // Removed between our create and open: try again.
                Err(OpenError::NotFound { .. }) => continue,
                Err(e) => return Err(OpenOrCreateError::Open(e)),
            }
        }
        Err(OpenOrCreateError::Contended { attempts: ATTEMPTS })
    }

    /// Creates an unnamed segment that children created by `fork` share
    /// (Python's `Value`/`Array` passed to a child `Process`).
    ///
    /// # Errors
    /// `InvalidLayout` or `Os`.
    pub fn anonymous(spec: &ObjectSpec<'_>, init: InitFn<'_>) -> Result<Segment, CreateError> {
        let (fd, map) = new_memfd(spec, false)?;
        // The mapping keeps the memory alive; the descriptor is not needed.
        drop(fd);
        let (map, header) = finish_init(map, spec, init)?;
        Ok(Segment {
            map,
            header,
            backing: Backing::Anonymous,
            unlink_on_drop: false,
            writable: true,
        })
    }

    /// Creates a memfd-backed segment whose descriptor ([`Segment::fd`]) can
    /// be handed to another process (`SCM_RIGHTS`, or inherited across
    /// `exec` once `FD_CLOEXEC` is cleared), which attaches with
    /// [`Segment::from_fd`]. The object is sealed against resizing.
    ///
    /// # Errors
    /// `InvalidLayout` or `Os`.
    pub fn memfd(spec: &ObjectSpec<'_>, init: InitFn<'_>) -> Result<Segment, CreateError> {
        let (fd, map) = new_memfd(spec, true)?;
        let (map, header) = finish_init(map, spec, init)?;
        Ok(Segment {
            map,
            header,
            backing: Backing::Memfd(fd),
            unlink_on_drop: false,
            writable: true,
        })
    }

    /// Attaches to a segment by descriptor, checking it against `expect`.
    ///
    /// The sender keeps its own descriptor, so before mapping the object
    /// must be sealed against shrinking (`F_SEAL_SHRINK`): a memfd from
    /// [`Segment::memfd`] is; a memfd that allows sealing gets the seal
    /// added here (the sender can then no longer shrink it either). Any
    /// other object, one that cannot take the seal, is refused with
    /// [`OpenError::Unsealed`] unless the options
    /// [`allow unsealed`](SegmentOptions::allow_unsealed) objects (see the
    /// module docs for the risk).
    ///
    /// # Errors
    /// See [`OpenError`]; `Unsealed` as above.
    pub fn from_fd(
        fd: OwnedFd,
        expect: &Expect,
        options: &SegmentOptions,
    ) -> Result<Segment, OpenError> {
        // Seal first: the size fstat'ed next can then only stay or grow.
        match sys::seal_against_shrinking(&fd) {
            Ok(()) => {}
            Err(sys::SealError::Refused(_)) if options.allow_unsealed => {}
            Err(sys::SealError::Refused(reason)) => return Err(OpenError::Unsealed { reason }),
            Err(sys::SealError::Os(call, source)) => return Err(OpenError::Os { call, source }),
        }
        let (map, header, _) = attach(&fd, "(fd)", expect, options)?;
        Ok(Segment {
            map,
            header,
            backing: Backing::Memfd(fd),
            unlink_on_drop: false,
            writable: !options.read_only,
        })
    }

    /// Removes the name `name` (mappings stay valid until unmapped).
    ///
    /// # Errors
    /// See [`UnlinkError`].
    pub fn unlink(name: &str) -> Result<(), UnlinkError> {
        let name = SegmentName::new(name).map_err(UnlinkError::InvalidName)?;
        sys::shm_unlink(&name.c_string()).map_err(|e| match e.raw_os_error() {
            Some(libc::ENOENT) => UnlinkError::NotFound {
                name: name.to_string(),
            },
            Some(libc::EACCES | libc::EPERM) => UnlinkError::PermissionDenied {
                name: name.to_string(),
            },
            _ => UnlinkError::Os { source: e },
        })
    }

    /// Keeps the name alive after this handle is dropped.
    pub fn persist(&mut self) {
        self.unlink_on_drop = false;
    }

    /// Makes this handle remove the name when dropped (named segments only;
    /// a no-op for others).
    pub fn take_ownership(&mut self) {
        self.unlink_on_drop = matches!(self.backing, Backing::Named { .. });
    }

    /// Whether dropping this handle removes the name.
    #[must_use]
    pub fn is_owner(&self) -> bool {
        self.unlink_on_drop
    }

    /// The segment's name, if it has one.
    #[must_use]
    pub fn name(&self) -> Option<&SegmentName> {
        match &self.backing {
            Backing::Named { name, .. } => Some(name),
            _ => None,
        }
    }

    /// The descriptor of a named or memfd segment.
    #[must_use]
    pub fn fd(&self) -> Option<BorrowedFd<'_>> {
        match &self.backing {
            Backing::Named { fd, .. } | Backing::Memfd(fd) => Some(fd.as_fd()),
            Backing::Anonymous => None,
        }
    }

    /// The validated header, as read when the segment was attached.
    #[must_use]
    pub fn header(&self) -> &HeaderSnapshot {
        &self.header
    }

    /// Whether the mapping is writable.
    #[must_use]
    pub fn is_writable(&self) -> bool {
        self.writable
    }

    /// Total mapped length (header included).
    #[must_use]
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Never true: a segment holds at least its header.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Start of the payload, aligned to `header::PAYLOAD_ALIGN`. The
    /// `payload_len()` bytes from here are mapped for the life of `self`.
    #[must_use]
    pub fn payload(&self) -> NonNull<u8> {
        // SAFETY: the header validated payload_offset == HEADER_LEN and
        // HEADER_LEN + payload_len <= mapped length.
        unsafe { base_of(&self.map).add(HEADER_LEN) }
    }

    /// Bytes of payload (validated against the mapping).
    #[must_use]
    pub fn payload_len(&self) -> usize {
        // Cannot truncate: validated <= the mapped length, a usize.
        self.header.payload_len as usize
    }

    /// Start of the mapping (the header).
    #[must_use]
    pub fn base(&self) -> NonNull<u8> {
        base_of(&self.map)
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        if !self.unlink_on_drop {
            return;
        }
        if let Backing::Named { name, id, .. } = &self.backing {
            // Remove the name only if it still names *our* object: it may
            // have been removed and re-created by someone else meanwhile.
            let path = shm_path(name);
            if sys::names(&path, *id) {
                let _ = sys::unlink(&path);
            }
        }
    }
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
fn shm_path(name: &SegmentName) -> CString {
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

fn base_of(map: &MmapRaw) -> NonNull<u8> {
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

fn new_memfd(spec: &ObjectSpec<'_>, seal: bool) -> Result<(OwnedFd, MmapRaw), CreateError> {
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
fn finish_init(
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
fn attach(
    fd: &OwnedFd,
    label: &str,
    expect: &Expect,
    options: &SegmentOptions,
) -> Result<(MmapRaw, HeaderSnapshot, FileId), OpenError> {
    let st = sys::fstat(fd).map_err(|e| OpenError::Os {
        call: "fstat",
        source: e,
    })?;
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
    options: &SegmentOptions,
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

/// Thin, `io::Result` wrappers over the system calls used above.
pub(crate) mod sys {
    use super::*;

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
                SealError::Refused(
                    "it is a named object, or a memfd created without MFD_ALLOW_SEALING",
                )
            } else {
                // Only a writable descriptor may add seals.
                SealError::Refused(
                    "the descriptor is read-only, and only a writable one may add seals",
                )
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
        let len =
            libc::off_t::try_from(len).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
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
}
