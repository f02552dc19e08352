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
//!   [`Options::allow_unsealed`] accepts the risk.
//! - **Named segments are not defended.** POSIX objects in `/dev/shm`
//!   cannot be sealed at all, so any process allowed to open one for
//!   writing (the mode decides who: `0600` by default, the owner alone) can
//!   shrink it under every other process's mapping. Give named segments
//!   only to processes you trust not to; a peer that may be hostile should
//!   get a memfd instead.
//! - **Anonymous segments** ([`Segment::anonymous`]) have no descriptor
//!   left to truncate.

//!
//! # Who removes a name, and leftovers of dead creators
//!
//! The process that created a named segment removes the name when its
//! last handle to it drops (like Python's `SharedMemory.unlink` in the
//! creator), unless it called [`persist`](Segment::persist). A `fork`
//! child that drops an inherited copy of the creator's handle removes
//! nothing: only the creating process does.
//!
//! A creator killed before it could remove the name leaves it behind.
//! Every process that maps a named segment holds a shared
//! open-file-description lock on one byte of it ([`MAPPED_BYTE`]), which
//! the kernel drops when the last descriptor of that mapping's process
//! tree closes. A name that nobody maps and that nobody made persistent is
//! therefore a dead creator's leftover: [`Segment::create`] removes it and
//! creates the segment afresh (Python's resource tracker does this job;
//! shmkit needs no tracker process), and [`reclaim_stale`] removes every
//! such leftover of the caller's, for services at start-up and for
//! `shmkit gc`.

mod lifecycle;
mod options;
pub(crate) mod sys;

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};

use memmap2::MmapRaw;
use shmkit_core::header::{self, header_flags, Fingerprint, HeaderSnapshot, Kind, HEADER_LEN};

use crate::error::{CreateError, OpenError, OpenOrCreateError, TypeMismatch, UnlinkError};
use crate::name::SegmentName;
use lifecycle::{base_of, shm_path};

pub use options::{Options, Owner};

/// Where Linux keeps POSIX shared-memory objects.
pub const SHM_DIR: &str = "/dev/shm";
/// Prefix of the temporary names creators use before linking where
/// `O_TMPFILE` is unsupported (see the module docs); `shmkit gc` removes
/// leftovers of dead creators.
pub const TEMP_PREFIX: &str = ".shmkit-tmp.";
/// The byte of a named segment's file on which every process mapping it
/// holds a shared open-file-description lock (past the end of any real
/// segment: locks need not lie inside the file).
pub const MAPPED_BYTE: u64 = 1 << 62;

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
    /// The descriptor holds the [`MAPPED_BYTE`] lock.
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
/// The typed handles ([`Shared`](crate::Shared) and its aliases) hold one
/// behind an `Arc`; code placing its own objects in segments uses it
/// directly.
pub struct Segment {
    map: MmapRaw,
    header: HeaderSnapshot,
    backing: Backing,
    /// Whether dropping removes the name (named segments of the creating
    /// process, unless persisted).
    unlink_on_drop: AtomicBool,
    /// The process that may remove the name: a `fork` child holding an
    /// inherited copy removes nothing.
    owner_pid: u32,
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
            .field("owner", &self.is_owner())
            .finish()
    }
}

/// The function that fills a fresh payload: given its start and length,
/// with every byte zero, it writes the object's initial state.
pub type InitFn<'a> = &'a mut dyn FnMut(NonNull<u8>, usize);

impl Segment {
    fn new(
        map: MmapRaw,
        header: HeaderSnapshot,
        backing: Backing,
        owner: bool,
        writable: bool,
    ) -> Segment {
        Segment {
            map,
            header,
            backing,
            unlink_on_drop: AtomicBool::new(owner),
            owner_pid: shmkit_core::owner::current_process_id(),
            writable,
        }
    }

    /// Creates the named segment `name` holding `spec`, running `init` on
    /// the zeroed payload before anyone can attach. A dead creator's
    /// leftover under the name is removed first (see the module docs)
    /// unless the options say otherwise.
    ///
    /// # Errors
    /// See [`CreateError`]; `AlreadyExists` if the name is taken.
    pub fn create(
        name: &str,
        spec: &ObjectSpec<'_>,
        options: &Options,
        init: InitFn<'_>,
    ) -> Result<Segment, CreateError> {
        let name = SegmentName::new(name).map_err(CreateError::InvalidName)?;
        match lifecycle::create_named(&name, spec, options, &mut *init) {
            Err(CreateError::AlreadyExists { .. })
                if options.reclaim && lifecycle::reclaim_if_stale(&name) =>
            {
                lifecycle::create_named(&name, spec, options, init)
            }
            other => other,
        }
    }

    /// Opens the named segment `name`, waiting (up to the options' init
    /// timeout) for its creator to finish, and checks it against `expect`
    /// and the options' owner rule.
    ///
    /// # Errors
    /// See [`OpenError`].
    pub fn open(name: &str, expect: &Expect, options: &Options) -> Result<Segment, OpenError> {
        let name = SegmentName::new(name).map_err(OpenError::InvalidName)?;
        lifecycle::open_named(name, expect, options)
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
        options: &Options,
        init: InitFn<'_>,
    ) -> Result<(Segment, bool), OpenOrCreateError> {
        Self::open_or_create_expecting(name, spec, &spec.expect(), options, init)
    }

    /// [`open_or_create`](Self::open_or_create) with an explicit check of
    /// an existing segment (the typed handles check parameters themselves,
    /// to say in their own terms what differs).
    ///
    /// # Errors
    /// See [`OpenOrCreateError`].
    pub fn open_or_create_expecting(
        name: &str,
        spec: &ObjectSpec<'_>,
        expect: &Expect,
        options: &Options,
        init: InitFn<'_>,
    ) -> Result<(Segment, bool), OpenOrCreateError> {
        const ATTEMPTS: u32 = 64;
        for _ in 0..ATTEMPTS {
            match Segment::create(name, spec, options, &mut *init) {
                Ok(segment) => return Ok((segment, true)),
                Err(CreateError::AlreadyExists { .. }) => {}
                Err(e) => return Err(OpenOrCreateError::Create(e)),
            }
            match Segment::open(name, expect, options) {
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
        let (fd, map) = lifecycle::new_memfd(spec, false)?;
        // The mapping keeps the memory alive; the descriptor is not needed.
        drop(fd);
        let (map, header) = lifecycle::finish_init(map, spec, init)?;
        Ok(Segment::new(map, header, Backing::Anonymous, false, true))
    }

    /// Creates a memfd-backed segment whose descriptor ([`Segment::fd`]) can
    /// be handed to another process (`SCM_RIGHTS`, or inherited across
    /// `exec` once `FD_CLOEXEC` is cleared), which attaches with
    /// [`Segment::from_fd`]. The object is sealed against resizing.
    ///
    /// # Errors
    /// `InvalidLayout` or `Os`.
    pub fn memfd(spec: &ObjectSpec<'_>, init: InitFn<'_>) -> Result<Segment, CreateError> {
        let (fd, map) = lifecycle::new_memfd(spec, true)?;
        let (map, header) = lifecycle::finish_init(map, spec, init)?;
        Ok(Segment::new(map, header, Backing::Memfd(fd), false, true))
    }

    /// Attaches to a segment by descriptor, checking it against `expect`
    /// and the options' owner rule.
    ///
    /// The sender keeps its own descriptor, so before mapping the object
    /// must be sealed against shrinking (`F_SEAL_SHRINK`): a memfd from
    /// [`Segment::memfd`] is; a memfd that allows sealing gets the seal
    /// added here (the sender can then no longer shrink it either). Any
    /// other object, one that cannot take the seal, is refused with
    /// [`OpenError::Unsealed`] unless the options
    /// [`allow unsealed`](Options::allow_unsealed) objects (see the
    /// module docs for the risk).
    ///
    /// # Errors
    /// See [`OpenError`]; `Unsealed` as above.
    pub fn from_fd(fd: OwnedFd, expect: &Expect, options: &Options) -> Result<Segment, OpenError> {
        // Seal first: the size fstat'ed next can then only stay or grow.
        match sys::seal_against_shrinking(&fd) {
            Ok(()) => {}
            Err(sys::SealError::Refused(_)) if options.allow_unsealed => {}
            Err(sys::SealError::Refused(reason)) => return Err(OpenError::Unsealed { reason }),
            Err(sys::SealError::Os(call, source)) => return Err(OpenError::Os { call, source }),
        }
        let (map, header, _) = lifecycle::attach(&fd, "(fd)", expect, options)?;
        Ok(Segment::new(
            map,
            header,
            Backing::Memfd(fd),
            false,
            !options.read_only,
        ))
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

    /// Keeps the name alive after this handle is dropped, and marks the
    /// segment persistent in its header: nobody reclaims it as a dead
    /// creator's leftover (see the module docs).
    pub fn persist(&self) {
        // Relaxed: a flag of this process's own drop; nothing is published.
        self.unlink_on_drop.store(false, Ordering::Relaxed);
        if self.writable && self.name().is_some() {
            // SAFETY: a writable mapping of at least HEADER_LEN bytes,
            // page-aligned, alive as long as `self`.
            let flags = unsafe { header::flags(self.base()) };
            // Relaxed: a hint for reclaimers, who read it under their lock.
            flags.fetch_or(header_flags::PERSISTENT, Ordering::Relaxed);
        }
    }

    /// Makes this handle's process remove the name when its last handle
    /// drops (named segments only; a no-op for others), and clears the
    /// persistent mark.
    pub fn take_ownership(&self) {
        if self.name().is_none() {
            return;
        }
        if self.writable {
            // SAFETY: as in `persist`.
            let flags = unsafe { header::flags(self.base()) };
            flags.fetch_and(!header_flags::PERSISTENT, Ordering::Relaxed);
        }
        self.unlink_on_drop.store(true, Ordering::Relaxed);
    }

    /// Whether dropping this segment in this process removes the name.
    #[must_use]
    pub fn is_owner(&self) -> bool {
        self.unlink_on_drop.load(Ordering::Relaxed)
            && self.owner_pid == shmkit_core::owner::current_process_id()
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
        if !self.is_owner() {
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

/// Removes every named segment in [`SHM_DIR`] owned by the caller's
/// effective uid whose name starts with `prefix` (`""`: all) and that is a
/// dead creator's leftover: a shmkit segment no live process maps and
/// nobody made persistent (see the module docs). Returns the names
/// removed. Meant for services at start-up, before they create their
/// segments, and for `shmkit gc`.
///
/// # Errors
/// The directory cannot be read.
pub fn reclaim_stale(prefix: &str) -> std::io::Result<Vec<String>> {
    let prefix = prefix.trim_start_matches('/');
    let mut removed = Vec::new();
    for entry in std::fs::read_dir(SHM_DIR)? {
        let Ok(entry) = entry else { continue };
        let file = entry.file_name();
        let Some(file) = file.to_str() else { continue };
        if !file.starts_with(prefix) {
            continue;
        }
        let Ok(name) = SegmentName::new(file) else {
            continue;
        };
        if lifecycle::reclaim_if_stale(&name) {
            removed.push(name.to_string());
        }
    }
    Ok(removed)
}

/// Whether the named segment is a dead creator's leftover (see the module
/// docs), without removing it: `None` if it is not a readable shmkit
/// segment of the caller's.
#[must_use]
pub fn is_stale(name: &SegmentName) -> Option<bool> {
    lifecycle::stale_state(&shm_path(name)).map(|(stale, _)| stale)
}
