//! The open-path targets: a whole segment from the input, written where
//! the path looks for it, opened and exercised through [`crate::open`].
//!
//! Input layout:
//!
//! ```text
//! byte 0     which typed handle opens it (open::HANDLES)
//! byte 1     fix-ups: which parts come from an honest segment of that
//!            handle, so the fuzzer gets past the cheap checks
//!            bit 0  magic, version, payload offset, flags, type name
//!            bit 1  init state (READY)
//!            bit 2  kind
//!            bit 3  element type (hash, size, align)
//!            bit 4  parameters
//!            bit 5  payload and total length consistent with the file
//!            bit 6  payload bytes
//!            bit 7  file length
//! byte 2     the honest segment's parameter (length, capacity: small)
//! byte 3     bits 0-1: what open_or_create asks for: the honest
//!            parameter, the header's parameters (a victim asking for
//!            exactly what a forger recorded), or a number (8 more bytes);
//!            bit 4: the memfd refuses seals; bit 5: it is sealed already;
//!            bit 6: no live peer holds the named segment (it is a dead
//!            creator's leftover, which create paths may reclaim)
//! [u64]      the number, if asked for
//! u16        segment length (unless bit 7 of byte 1), at most MAX_SEGMENT
//! ...        the segment's bytes (zero-padded)
//! rest       values and timeouts for the operations
//! ```
//!
//! With every fix-up on, the segment is the honest one, and opening it must
//! succeed: that keeps the harness honest (a target whose opens all fail
//! would fuzz nothing).

use std::io::Write;
use std::os::fd::{FromRawFd, OwnedFd};

use crate::open::{self, Ask, Path, Source};
use crate::Input;

/// The longest segment an input writes.
pub const MAX_SEGMENT: usize = 16 * 1024;

const HEADER: usize = 256;

/// Runs one input against `path`; returns whether the segment opened.
///
/// # Panics
/// If an honest segment does not open, or on any failure of the code
/// under test.
pub fn run(path: Path, data: &[u8]) -> bool {
    let mut input = Input::new(data);
    let h = usize::from(input.u8()) % open::HANDLES.len();
    let fix = input.u8();
    let param = input.u8();
    let mode = input.u8();
    let raw_ask = if mode & 3 == 2 { input.u64() } else { 0 };
    let template = open::honest_segment(h, param);
    let len = if fix & 0x80 != 0 {
        template.len()
    } else {
        usize::from(input.u16()) % (MAX_SEGMENT + 1)
    };
    let mut bytes = input.bytes(len).to_vec();
    bytes.resize(len, 0);
    apply_fixups(&mut bytes, &template, fix);
    let ask = match mode & 3 {
        0 | 3 => Ask::Template(param),
        1 => Ask::Header([field(&bytes, 72), field(&bytes, 80)]),
        _ => Ask::Raw(raw_ask),
    };
    let honest = fix == 0xff && ask == Ask::Template(param);
    let opened = match path {
        Path::FromFd => {
            let sealing = mode & 0x10 == 0;
            let fd = memfd(&bytes, sealing, mode & 0x20 != 0);
            open::open_and_exercise(h, path, Source::Fd(fd), ask, &mut input)
        }
        _ => {
            let name = Named::write(&bytes);
            let _peer = if mode & 0x40 == 0 {
                Some(open::hold_as_live_peer(&name.path()).expect("hold the segment file"))
            } else {
                None
            };
            open::open_and_exercise(h, path, Source::Named(name.as_str()), ask, &mut input)
        }
    };
    // A memfd that refuses seals is refused on purpose (a sender could
    // shrink it); everything else honest must open.
    let refused_on_purpose = path == Path::FromFd && mode & 0x10 != 0;
    if honest && !refused_on_purpose {
        assert!(
            opened,
            "an honest {} segment did not open by {path:?}",
            open::HANDLES[h]
        );
    }
    opened
}

/// The u64 at `at` (0 if the segment is shorter).
fn field(bytes: &[u8], at: usize) -> u64 {
    bytes
        .get(at..at + 8)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}

fn copy(bytes: &mut [u8], template: &[u8], range: std::ops::Range<usize>) {
    let end = range.end.min(bytes.len()).min(template.len());
    if range.start < end {
        bytes[range.start..end].copy_from_slice(&template[range.start..end]);
    }
}

fn apply_fixups(bytes: &mut [u8], template: &[u8], fix: u8) {
    if fix & 0x01 != 0 {
        copy(bytes, template, 0..12);
        copy(bytes, template, 24..32);
        copy(bytes, template, 88..160);
    }
    if fix & 0x02 != 0 {
        copy(bytes, template, 12..16);
    }
    if fix & 0x04 != 0 {
        copy(bytes, template, 16..20);
    }
    if fix & 0x08 != 0 {
        copy(bytes, template, 48..72);
    }
    if fix & 0x10 != 0 {
        copy(bytes, template, 72..88);
    }
    if fix & 0x40 != 0 {
        copy(bytes, template, HEADER..template.len());
    }
    if fix & 0x20 != 0 && bytes.len() >= HEADER {
        let total = bytes.len() as u64;
        bytes[32..40].copy_from_slice(&total.to_le_bytes());
        bytes[40..48].copy_from_slice(&(total - HEADER as u64).to_le_bytes());
    }
}

/// A memfd holding `bytes`; with `sealing`, one that allows seals, and
/// with `sealed`, already sealed against resizing.
fn memfd(bytes: &[u8], sealing: bool, sealed: bool) -> OwnedFd {
    let flags = libc::MFD_CLOEXEC | if sealing { libc::MFD_ALLOW_SEALING } else { 0 };
    // SAFETY: the name is a NUL-terminated literal.
    let fd = unsafe { libc::memfd_create(c"shmkit-fuzz".as_ptr(), flags) };
    assert!(fd >= 0, "memfd_create: {}", std::io::Error::last_os_error());
    // SAFETY: a fresh descriptor we own.
    let mut file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    file.write_all(bytes).expect("write the memfd");
    if sealing && sealed {
        let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW;
        // SAFETY: plain fcntl on a descriptor we own.
        let rc = unsafe { libc::fcntl(fd, libc::F_ADD_SEALS, seals) };
        assert_eq!(rc, 0, "F_ADD_SEALS: {}", std::io::Error::last_os_error());
    }
    OwnedFd::from(file)
}

/// A file in `/dev/shm` under this process's fuzz name, removed on drop.
struct Named {
    name: String,
}

impl Named {
    /// Prefix of every name the fuzzer writes (`.ci/fuzz` removes leftovers
    /// of a run that crashed).
    const PREFIX: &'static str = "shmkit-fuzz-";

    fn write(bytes: &[u8]) -> Named {
        let name = format!("/{}{}", Self::PREFIX, std::process::id());
        std::fs::write(format!("/dev/shm{name}"), bytes).expect("write the segment file");
        Named { name }
    }

    fn as_str(&self) -> &str {
        &self.name
    }

    fn path(&self) -> String {
        format!("/dev/shm{}", self.name)
    }
}

impl Drop for Named {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(format!("/dev/shm{}", self.name));
    }
}
