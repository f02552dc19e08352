//! `from_fd` and the shrinking attack: a received descriptor is attached
//! only once nobody can shrink its object (sealed, or sealed by us), and
//! objects that cannot be sealed are refused unless the caller accepts the
//! risk.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

use shmkit_core::header::Kind;
use shmkit_posix::segment::{Expect, Options, Segment};
use shmkit_posix::{Array, OpenError};
use shmkit_testkit::{fork, unique_name, Exit};

const VALUES: [u64; 4] = [11, 22, 33, 44];

/// The bytes of a valid, READY array segment holding `VALUES`.
fn segment_image() -> Vec<u8> {
    let arr = Array::<u64>::anonymous(VALUES).unwrap();
    let seg = arr.segment();
    // SAFETY: `seg.len()` bytes are mapped at `seg.base()` while `arr`
    // lives; nobody else writes them.
    unsafe { std::slice::from_raw_parts(seg.base().as_ptr(), seg.len()) }.to_vec()
}

/// A memfd holding a valid segment image, with no seals; `allow_sealing`
/// decides whether seals may be added later.
fn unsealed_memfd(allow_sealing: bool) -> File {
    let flags = libc::MFD_CLOEXEC
        | if allow_sealing {
            libc::MFD_ALLOW_SEALING
        } else {
            0
        };
    // SAFETY: NUL-terminated literal name.
    let fd = unsafe { libc::memfd_create(c"shmkit-test-unsealed".as_ptr(), flags) };
    assert!(fd >= 0, "memfd_create: {}", std::io::Error::last_os_error());
    // SAFETY: a fresh descriptor we own.
    let mut file = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    file.write_all(&segment_image()).unwrap();
    file
}

fn seals(fd: &impl AsRawFd) -> libc::c_int {
    // SAFETY: plain fcntl on an open descriptor.
    unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) }
}

fn dup(file: &File) -> OwnedFd {
    file.as_fd().try_clone_to_owned().unwrap()
}

/// What a hostile sender does after handing the descriptor over.
fn try_shrink(file: &File) -> std::io::Result<()> {
    file.set_len(0)
}

#[test]
fn a_sealed_memfd_is_attached_as_it_is() {
    let sender = Array::<u64>::memfd(4).unwrap();
    sender.write_from(0, &VALUES).unwrap();
    let fd = sender.segment().fd().unwrap().try_clone_to_owned().unwrap();
    let file = File::from(fd.try_clone().unwrap());
    let receiver = Array::<u64>::from_fd(fd).unwrap();
    assert_eq!(receiver.to_vec(), VALUES);
    assert_ne!(seals(&file) & libc::F_SEAL_SHRINK, 0);
    assert!(try_shrink(&file).is_err());
}

/// A memfd that allows sealing but carries no seal: the receiver adds
/// `F_SEAL_SHRINK` before mapping, so a sender process's later `ftruncate`
/// fails instead of crashing the receiver.
#[test]
fn an_unsealed_memfd_is_sealed_against_shrinking_before_mapping() {
    let sender = unsealed_memfd(true);
    assert_eq!(seals(&sender) & libc::F_SEAL_SHRINK, 0);
    let receiver = Array::<u64>::from_fd(dup(&sender)).unwrap();
    assert_ne!(seals(&sender) & libc::F_SEAL_SHRINK, 0);
    // The sender, a separate process holding the descriptor, tries to
    // shrink it.
    let child = fork(|| match try_shrink(&sender) {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => 0,
        Err(_) => 2,
        Ok(()) => 3,
    });
    assert_eq!(child.wait(), Exit::Code(0));
    // Still all there (a shrink would have made this SIGBUS).
    assert_eq!(receiver.to_vec(), VALUES);
    // Growing stays allowed: the receiver's mapping is unaffected.
    sender.set_len(1 << 20).unwrap();
    assert_eq!(receiver.to_vec(), VALUES);
}

/// A memfd created without `MFD_ALLOW_SEALING` can never be sealed: refused
/// with a message naming the way out, accepted only on request.
#[test]
fn a_memfd_that_cannot_be_sealed_is_refused_unless_allowed() {
    let sender = unsealed_memfd(false);
    let e = Array::<u64>::from_fd(dup(&sender)).unwrap_err();
    assert!(matches!(e, OpenError::Unsealed { .. }), "{e:?}");
    assert!(e.to_string().contains("allow_unsealed"), "{e}");
    let expect = Expect::of::<u64>(Kind::ARRAY);
    let e = Segment::from_fd(dup(&sender), &expect, &Options::new()).unwrap_err();
    assert!(matches!(e, OpenError::Unsealed { .. }), "{e:?}");

    let allowed = Options::new().allow_unsealed(true);
    let arr = Array::<u64>::from_fd_with(dup(&sender), &allowed).unwrap();
    assert_eq!(arr.to_vec(), VALUES);
}

/// A read-only descriptor cannot add seals: an unsealed memfd received
/// read-only is refused.
#[test]
fn a_read_only_descriptor_of_an_unsealed_memfd_is_refused() {
    let sender = unsealed_memfd(true);
    let read_only = File::open(format!("/proc/self/fd/{}", sender.as_raw_fd())).unwrap();
    let options = Options::new().read_only(true);
    let expect = Expect::of::<u64>(Kind::ARRAY);
    let e = Segment::from_fd(read_only.into(), &expect, &options).unwrap_err();
    match &e {
        OpenError::Unsealed { reason } => assert!(reason.contains("read-only"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(seals(&sender) & libc::F_SEAL_SHRINK, 0);
}

/// A named segment's descriptor cannot be sealed (POSIX objects start out
/// with `F_SEAL_SEAL`): refused unless allowed.
#[test]
fn a_named_segments_descriptor_is_refused_unless_allowed() {
    let name = unique_name("fd-named");
    let arr = Array::<u64>::create(&name, VALUES).unwrap();
    let fd = || arr.segment().fd().unwrap().try_clone_to_owned().unwrap();
    let e = Array::<u64>::from_fd(fd()).unwrap_err();
    match &e {
        OpenError::Unsealed { reason } => assert!(reason.contains("named"), "{reason}"),
        other => panic!("{other:?}"),
    }
    let allowed = Options::new().allow_unsealed(true);
    let again = Array::<u64>::from_fd_with(fd(), &allowed).unwrap();
    assert_eq!(again.to_vec(), VALUES);
}
