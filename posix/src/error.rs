//! One error type per segment operation.
//!
//! Every message says what went wrong and what to do about it. OS errors
//! that have no better home keep the `io::Error` and the call that failed.

use std::fmt;
use std::io;
use std::time::Duration;

use shmkit_core::header::{Fingerprint, Kind};

use crate::name::InvalidName;

/// Why a segment could not be created.
#[derive(Debug)]
#[non_exhaustive]
pub enum CreateError {
    /// The name breaks a naming rule.
    InvalidName(InvalidName),
    /// A segment of this name exists already.
    AlreadyExists {
        /// The canonical name.
        name: String,
    },
    /// The OS refused (`EACCES`/`EPERM`).
    PermissionDenied {
        /// The canonical name, or `"(anonymous)"`.
        name: String,
    },
    /// The requested object does not fit in memory (length overflows, or an
    /// element type is aligned beyond what a segment offers).
    InvalidLayout {
        /// What is wrong.
        reason: &'static str,
    },
    /// Another OS call failed.
    Os {
        /// The call that failed.
        call: &'static str,
        /// The OS error.
        source: io::Error,
    },
}

impl fmt::Display for CreateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CreateError::InvalidName(e) => write!(f, "invalid segment name: {e}"),
            CreateError::AlreadyExists { name } => write!(
                f,
                "segment {name} already exists; open it, use open_or_create, or remove it (`shmkit rm {name}`)"
            ),
            CreateError::PermissionDenied { name } => write!(
                f,
                "permission denied creating segment {name}; check /dev/shm permissions or run as its owner"
            ),
            CreateError::InvalidLayout { reason } => write!(f, "cannot lay out the segment: {reason}"),
            CreateError::Os { call, source } => write!(f, "{call} failed while creating a segment: {source}"),
        }
    }
}

impl std::error::Error for CreateError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CreateError::InvalidName(e) => Some(e),
            CreateError::Os { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Why a segment could not be opened.
#[derive(Debug)]
#[non_exhaustive]
pub enum OpenError {
    /// The name breaks a naming rule.
    InvalidName(InvalidName),
    /// No segment of this name exists.
    NotFound {
        /// The canonical name.
        name: String,
    },
    /// The OS refused (`EACCES`/`EPERM`).
    PermissionDenied {
        /// The canonical name.
        name: String,
    },
    /// The object does not start with a shmkit header.
    NotShmkit {
        /// The canonical name, or `"(fd)"`.
        name: String,
    },
    /// The segment was written by another version of the format.
    VersionMismatch {
        /// Version found.
        found: u32,
        /// Version this build supports.
        supported: u32,
    },
    /// The segment holds another kind of object.
    KindMismatch {
        /// The kind asked for.
        expected: Kind,
        /// The kind found.
        found: Kind,
    },
    /// The segment holds the right kind of object, of another element type
    /// or with other parameters (length, capacity).
    TypeMismatch(Box<TypeMismatch>),
    /// The object is shorter than its header says (or than a header).
    Truncated {
        /// Bytes the header requires.
        expected: u64,
        /// Bytes present.
        actual: u64,
    },
    /// The object belongs to another user than the options accept (by
    /// default the caller's effective uid): someone else may have created
    /// the name first, to read and write what we would put in it.
    NotOwner {
        /// The canonical name, or `"(fd)"`.
        name: String,
        /// The object's owner.
        owner: u32,
        /// The owner the options accept.
        expected: u32,
    },
    /// The segment holds the right kind and element type, created with
    /// other parameters (length, capacity) than `open_or_create` asked for.
    ParamsMismatch {
        /// The kind of object, e.g. `array`.
        kind: Kind,
        /// Its element type.
        type_name: String,
        /// What the segment records.
        recorded: String,
        /// What the caller asked for.
        asked: String,
    },
    /// A header or payload field is impossible.
    Corrupt {
        /// What is wrong.
        what: String,
    },
    /// The creator did not finish initialising within the timeout.
    InitTimedOut {
        /// How long this open waited.
        waited: Duration,
    },
    /// The creator died while initialising: remove the segment and create
    /// it again.
    CreatorDied {
        /// The creator's pid as recorded (0 if unknown).
        pid: u32,
    },
    /// A descriptor given to `from_fd` refers to an object that whoever
    /// else holds it could shrink (it is not sealed with `F_SEAL_SHRINK`
    /// and the seal cannot be added), which would crash this process with
    /// `SIGBUS` on its next access to the lost pages.
    Unsealed {
        /// Why the seal could not be added.
        reason: &'static str,
    },
    /// Another OS call failed.
    Os {
        /// The call that failed.
        call: &'static str,
        /// The OS error.
        source: io::Error,
    },
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::InvalidName(e) => write!(f, "invalid segment name: {e}"),
            OpenError::NotFound { name } => write!(
                f,
                "no segment named {name}; create it first (`shmkit ls` lists existing ones)"
            ),
            OpenError::PermissionDenied { name } => write!(
                f,
                "permission denied opening segment {name}; run as its owner or create it with a wider mode"
            ),
            OpenError::NotShmkit { name } => write!(
                f,
                "{name} is not a shmkit segment (no shmkit header); it was made by another program"
            ),
            OpenError::VersionMismatch { found, supported } => write!(
                f,
                "segment has format version {found}, this build supports {supported}; rebuild both sides with the same shmkit"
            ),
            OpenError::KindMismatch { expected, found } => write!(
                f,
                "segment holds a {found}, not a {expected}; open it with the matching type"
            ),
            OpenError::TypeMismatch(m) => write!(
                f,
                "segment holds elements of type {} ({} bytes, align {}), not {} ({} bytes, align {}); open it with the creator's element type",
                m.found_type, m.found.size, m.found.align, m.expected_type, m.expected.size, m.expected.align
            ),
            OpenError::Truncated { expected, actual } => write!(
                f,
                "segment truncated: needs {expected} bytes, has {actual}; remove it and create it again"
            ),
            OpenError::NotOwner { name, owner, expected } => write!(
                f,
                "segment {name} belongs to uid {owner}, not uid {expected}: another user may have created it first; remove it, or accept that owner with Options::owner"
            ),
            OpenError::ParamsMismatch { kind, type_name, recorded, asked } => write!(
                f,
                "the segment holds a {kind} of {type_name} created with parameters {recorded}, not the {asked} asked for; open it as it is (open), or remove it first"
            ),
            OpenError::Corrupt { what } => {
                write!(f, "segment is corrupt ({what}); remove it and create it again")
            }
            OpenError::InitTimedOut { waited } => write!(
                f,
                "segment still not initialised after {waited:?}; its creator may be stuck (raise the timeout or remove it)"
            ),
            OpenError::CreatorDied { pid } => write!(
                f,
                "the creator (pid {pid}) died while initialising the segment; remove it (`shmkit rm`) and create it again"
            ),
            OpenError::Unsealed { reason } => write!(
                f,
                "the descriptor's object is not sealed against shrinking and cannot be sealed ({reason}), so its sender could truncate it and crash this process; send a memfd made by Segment::memfd, or accept the risk with Options::allow_unsealed(true)"
            ),
            OpenError::Os { call, source } => write!(f, "{call} failed while opening a segment: {source}"),
        }
    }
}

impl std::error::Error for OpenError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            OpenError::InvalidName(e) => Some(e),
            OpenError::Os { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// The element type (or parameters) a segment was opened with, against
/// those it was created with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeMismatch {
    /// Type name asked for.
    pub expected_type: String,
    /// Fingerprint asked for.
    pub expected: Fingerprint,
    /// Type name found in the segment.
    pub found_type: String,
    /// Fingerprint found in the segment.
    pub found: Fingerprint,
}

/// Why `open_or_create` failed: the create step or the open step.
#[derive(Debug)]
#[non_exhaustive]
pub enum OpenOrCreateError {
    /// Creating failed for a reason other than "exists".
    Create(CreateError),
    /// The segment existed and opening it failed.
    Open(OpenError),
    /// The segment kept appearing and disappearing (another process keeps
    /// removing it); gave up after this many tries.
    Contended {
        /// Attempts made.
        attempts: u32,
    },
}

impl fmt::Display for OpenOrCreateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenOrCreateError::Create(e) => e.fmt(f),
            OpenOrCreateError::Open(e) => e.fmt(f),
            OpenOrCreateError::Contended { attempts } => write!(
                f,
                "segment was removed and re-created under us {attempts} times; something keeps deleting it"
            ),
        }
    }
}

impl std::error::Error for OpenOrCreateError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            OpenOrCreateError::Create(e) => Some(e),
            OpenOrCreateError::Open(e) => Some(e),
            OpenOrCreateError::Contended { .. } => None,
        }
    }
}

/// Why a segment could not be removed.
#[derive(Debug)]
#[non_exhaustive]
pub enum UnlinkError {
    /// The name breaks a naming rule.
    InvalidName(InvalidName),
    /// No segment of this name exists.
    NotFound {
        /// The canonical name.
        name: String,
    },
    /// The OS refused.
    PermissionDenied {
        /// The canonical name.
        name: String,
    },
    /// Another OS error.
    Os {
        /// The OS error.
        source: io::Error,
    },
}

impl fmt::Display for UnlinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UnlinkError::InvalidName(e) => write!(f, "invalid segment name: {e}"),
            UnlinkError::NotFound { name } => write!(f, "no segment named {name} to remove"),
            UnlinkError::PermissionDenied { name } => {
                write!(f, "permission denied removing {name}; run as its owner")
            }
            UnlinkError::Os { source } => write!(f, "shm_unlink failed: {source}"),
        }
    }
}

impl std::error::Error for UnlinkError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            UnlinkError::InvalidName(e) => Some(e),
            UnlinkError::Os { source } => Some(source),
            _ => None,
        }
    }
}
