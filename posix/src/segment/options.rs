//! [`Options`]: the one builder every handle's `*_with` constructors take.

use std::time::Duration;

/// Whose objects an opener accepts (see [`Options::owner`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    /// Only objects owned by the caller's effective uid (the default).
    Me,
    /// Only objects owned by this uid.
    Uid(u32),
    /// Objects of any owner: for deliberately shared, multi-user setups.
    Any,
}

/// How a segment is created or opened: one builder for every handle.
///
/// ```
/// use std::time::Duration;
/// use shmkit_posix::{Array, Options, Owner};
///
/// # let name = format!("/shmkit-doc-options-{}", std::process::id());
/// let options = Options::new()
///     .mode(0o600)                       // who may open it (the default)
///     .init_timeout(Duration::from_secs(5))
///     .owner(Owner::Me);                 // open only our own objects (the default)
/// let a = Array::<u32>::create_with(&name, 4, &options)?;
/// let b = Array::<u32>::open_with(&name, &options)?;
/// # drop((a, b));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct Options {
    pub(crate) mode: u32,
    pub(crate) unlink_on_drop: bool,
    pub(crate) init_timeout: Duration,
    pub(crate) read_only: bool,
    pub(crate) allow_unsealed: bool,
    pub(crate) owner: Owner,
    pub(crate) reclaim: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            mode: 0o600,
            unlink_on_drop: true,
            init_timeout: Duration::from_secs(2),
            read_only: false,
            allow_unsealed: false,
            owner: Owner::Me,
            reclaim: true,
        }
    }
}

impl Options {
    /// The defaults: mode `0600`; the creating process removes the name
    /// when its last handle drops; openers wait up to 2 s for a creator to
    /// finish; only objects owned by the caller's effective uid are opened;
    /// a dead creator's leftover under the name is reclaimed by `create`.
    #[must_use]
    pub fn new() -> Options {
        Options::default()
    }

    /// Permission bits of a new named segment (applied exactly, umask
    /// ignored).
    #[must_use]
    pub fn mode(mut self, mode: u32) -> Options {
        self.mode = mode & 0o777;
        self
    }

    /// Whether the creator removes the name when its process drops its
    /// last handle (default). `false` is [`persist`](crate::Segment::persist)
    /// from the start: the name outlives the creator until someone removes
    /// it.
    #[must_use]
    pub fn unlink_on_drop(mut self, yes: bool) -> Options {
        self.unlink_on_drop = yes;
        self
    }

    /// How long an opener waits for a creator to finish initialising.
    #[must_use]
    pub fn init_timeout(mut self, timeout: Duration) -> Options {
        self.init_timeout = timeout;
        self
    }

    /// Whose objects an opener accepts. By default only the caller's own
    /// (its effective uid; root too accepts only root's): on a machine with
    /// several users, anyone may create a name in `/dev/shm` first, with a
    /// mode that lets them read and write every message, and a service
    /// that attached to it blindly would talk to them. Open paths refuse
    /// such an object with [`OpenError::NotOwner`](crate::OpenError::NotOwner).
    #[must_use]
    pub fn owner(mut self, owner: Owner) -> Options {
        self.owner = owner;
        self
    }

    /// Whether `create` (and `open_or_create`) may remove a leftover under
    /// the name: a shmkit segment that no live process maps and that nobody
    /// made persistent, i.e. whose creator died without removing it (the
    /// job of Python's resource tracker). On by default.
    #[must_use]
    pub fn reclaim_stale(mut self, yes: bool) -> Options {
        self.reclaim = yes;
        self
    }

    /// Lets `from_fd` attach to an object that cannot be sealed against
    /// shrinking (a named object's descriptor, or a memfd created without
    /// `MFD_ALLOW_SEALING`). Off by default: whoever else holds such a
    /// descriptor can `ftruncate` the object and crash this process with
    /// `SIGBUS`. Turn it on only for descriptors from a peer you trust as
    /// much as yourself.
    #[must_use]
    pub fn allow_unsealed(mut self, yes: bool) -> Options {
        self.allow_unsealed = yes;
        self
    }

    /// Open read-only (`O_RDONLY`, `PROT_READ`), for [`Segment::open`]
    /// and [`Segment::from_fd`](crate::Segment::from_fd). The typed
    /// handles ignore it: they open read-write, or read-only through
    /// `open_read_only`, whose handle type has no setters.
    ///
    /// [`Segment::open`]: crate::Segment::open
    #[must_use]
    pub fn read_only(mut self, yes: bool) -> Options {
        self.read_only = yes;
        self
    }
}
