//! Every open/create error, triggered for real against objects in
//! /dev/shm: garbage and hostile header bytes, truncated objects, wrong
//! type, version and kind, missing and duplicate names, invalid names,
//! read-only mappings, and permission checks in an unprivileged child.

mod common;

use std::os::unix::fs::FileExt;

use common::{assert_no_leftovers, poke, shm_path, truncate, Junk};
use shmkit_core::header::{init_state, Kind, FORMAT_VERSION, HEADER_LEN, MAGIC};
use shmkit_posix::segment::{Expect, ObjectSpec, Options, Segment};
use shmkit_posix::{
    Array, CreateError, InvalidName, OpenError, OpenOrCreateError, ReadOnly, UnlinkError, Value,
};
use shmkit_testkit::{fork, unique_name, Exit};

// Header field offsets, as documented in shmkit_core::header.
const VERSION: u64 = 8;
const STATE: u64 = 12;
const KIND: u64 = 16;
const PAYLOAD_OFFSET: u64 = 24;
const TOTAL_LEN: u64 = 32;
const PAYLOAD_LEN: u64 = 40;
const PARAM0: u64 = 72;
const TYPE_NAME_LEN: u64 = 88;

fn header_bytes(name: &str) -> Vec<u8> {
    let f = std::fs::File::open(shm_path(name)).unwrap();
    let mut buf = vec![0u8; HEADER_LEN];
    f.read_exact_at(&mut buf, 0).unwrap();
    buf
}

#[test]
fn missing_segment_is_not_found() {
    let name = unique_name("err-missing");
    let e = Array::<u32>::open(&name).unwrap_err();
    assert!(matches!(e, OpenError::NotFound { .. }), "{e:?}");
    assert!(e.to_string().contains("create it first"), "{e}");
    let e = Segment::unlink(&name).unwrap_err();
    assert!(matches!(e, UnlinkError::NotFound { .. }), "{e:?}");
}

#[test]
fn duplicate_create_is_already_exists_and_leaves_the_first_intact() {
    let tag = "err-dup";
    let name = unique_name(tag);
    let first = Array::<u32>::create(&name, [7, 8, 9]).unwrap();
    let e = Array::<u32>::create(&name, 100).unwrap_err();
    assert!(matches!(e, CreateError::AlreadyExists { .. }), "{e:?}");
    // Another type or kind does not matter: the name is taken.
    let e = Value::<f64>::create(&name, 1.0).unwrap_err();
    assert!(matches!(e, CreateError::AlreadyExists { .. }), "{e:?}");
    let again = Array::<u32>::open(&name).unwrap();
    assert_eq!(again.to_vec(), vec![7, 8, 9]);
    assert_eq!(first.to_vec(), vec![7, 8, 9]);
    drop(again);
    drop(first);
    assert_no_leftovers(tag);
}

#[test]
fn invalid_names_are_refused_by_every_operation() {
    let long = "x".repeat(256);
    let cases: [(&str, InvalidName); 6] = [
        ("", InvalidName::Empty),
        ("/", InvalidName::Empty),
        ("/a/b", InvalidName::InteriorSlash),
        ("a\0b", InvalidName::Nul),
        ("..", InvalidName::DotName),
        (&long, InvalidName::TooLong { len: 256 }),
    ];
    for (name, why) in cases {
        match Array::<u8>::create(name, 1) {
            Err(CreateError::InvalidName(w)) => assert_eq!(w, why, "{name:?}"),
            other => panic!("create {name:?}: {other:?}"),
        }
        match Array::<u8>::open(name) {
            Err(OpenError::InvalidName(w)) => assert_eq!(w, why, "{name:?}"),
            other => panic!("open {name:?}: {other:?}"),
        }
        match Array::<u8>::open_or_create(name, 1) {
            Err(OpenOrCreateError::Create(CreateError::InvalidName(w))) => {
                assert_eq!(w, why, "{name:?}");
            }
            other => panic!("open_or_create {name:?}: {other:?}"),
        }
        match Segment::unlink(name) {
            Err(UnlinkError::InvalidName(w)) => assert_eq!(w, why, "{name:?}"),
            other => panic!("unlink {name:?}: {other:?}"),
        }
    }
}

#[test]
fn wrong_element_type_is_a_type_mismatch() {
    let tag = "err-type";
    let name = unique_name(tag);
    let _arr = Array::<u32>::create(&name, 4).unwrap();
    // Same size and alignment, another type.
    match Array::<f32>::open(&name) {
        Err(OpenError::TypeMismatch(m)) => {
            assert_eq!(m.found_type, "u32");
            assert_eq!(m.expected_type, "f32");
        }
        other => panic!("{other:?}"),
    }
    // Another size.
    let e = Array::<u64>::open(&name).unwrap_err();
    assert!(matches!(e, OpenError::TypeMismatch(_)), "{e:?}");
    assert!(e.to_string().contains("u32"), "{e}");
    // Another length through open_or_create (parameters must match).
    // The message says what differs: the recorded and the asked length,
    // and what the segment holds (issue 8 item 7).
    match Array::<u32>::open_or_create(&name, 5) {
        Err(OpenOrCreateError::Open(e @ OpenError::ParamsMismatch { .. })) => {
            let msg = e.to_string();
            for part in ["array", "u32", "4", "5"] {
                assert!(msg.contains(part), "{msg}");
            }
        }
        other => panic!("{other:?}"),
    }
    drop(_arr);
    assert_no_leftovers(tag);
}

#[test]
fn wrong_kind_is_a_kind_mismatch() {
    let tag = "err-kind";
    let name = unique_name(tag);
    let arr = Array::<u64>::create(&name, 1).unwrap();
    match Value::<u64>::open(&name) {
        Err(OpenError::KindMismatch { expected, found }) => {
            assert_eq!(expected, Kind::VALUE);
            assert_eq!(found, Kind::ARRAY);
        }
        other => panic!("{other:?}"),
    }
    drop(arr);
    let value = Value::<u64>::create(&name, 3).unwrap();
    let e = Array::<u64>::open(&name).unwrap_err();
    assert!(matches!(e, OpenError::KindMismatch { .. }), "{e:?}");
    drop(value);
    assert_no_leftovers(tag);
}

#[test]
fn another_format_version_is_a_version_mismatch() {
    let tag = "err-version";
    let name = unique_name(tag);
    let arr = Array::<u8>::create(&name, 16).unwrap();
    poke(&name, VERSION, &(FORMAT_VERSION + 1).to_ne_bytes());
    match Array::<u8>::open(&name) {
        Err(OpenError::VersionMismatch { found, supported }) => {
            assert_eq!(found, FORMAT_VERSION + 1);
            assert_eq!(supported, FORMAT_VERSION);
        }
        other => panic!("{other:?}"),
    }
    drop(arr);
    assert_no_leftovers(tag);
}

#[test]
fn truncated_objects_are_refused_before_mapping() {
    let tag = "err-trunc";
    let name = unique_name(tag);
    let arr = Array::<u64>::create(&name, 1024).unwrap();
    let full = (HEADER_LEN + 1024 * 8) as u64;
    // Shorter than the header says.
    truncate(&name, HEADER_LEN as u64 + 8);
    match Array::<u64>::open(&name) {
        Err(OpenError::Truncated { expected, actual }) => {
            assert_eq!(expected, full);
            assert_eq!(actual, HEADER_LEN as u64 + 8);
        }
        other => panic!("{other:?}"),
    }
    // Shorter than a header.
    truncate(&name, 100);
    match Array::<u64>::open(&name) {
        Err(OpenError::Truncated { expected, actual }) => {
            assert_eq!((expected, actual), (HEADER_LEN as u64, 100));
        }
        other => panic!("{other:?}"),
    }
    // Empty.
    truncate(&name, 0);
    let e = Array::<u64>::open(&name).unwrap_err();
    assert!(matches!(e, OpenError::Truncated { actual: 0, .. }), "{e:?}");
    // `arr`'s mapping now lies past the end of the object: never touch it
    // again; dropping only unmaps and unlinks.
    drop(arr);
    assert_no_leftovers(tag);
}

#[test]
fn foreign_objects_and_garbage_headers_are_not_shmkit() {
    let tag = "err-garbage";
    let name = unique_name(tag);
    // An object some other program made under the name.
    std::fs::write(shm_path(&name), vec![0xAB; 4096]).unwrap();
    let e = Array::<u8>::open(&name).unwrap_err();
    assert!(matches!(e, OpenError::NotShmkit { .. }), "{e:?}");
    assert!(e.to_string().contains("not a shmkit segment"), "{e}");
    Segment::unlink(&name).unwrap();

    // A real segment whose whole header is overwritten with junk.
    let arr = Array::<u32>::create(&name, 64).unwrap();
    let mut junk = Junk(0x9e37_79b9_7f4a_7c15);
    for _ in 0..50 {
        let mut bytes = junk.bytes(HEADER_LEN);
        if bytes[..8] == MAGIC {
            bytes[0] ^= 1;
        }
        poke(&name, 0, &bytes);
        let e = Array::<u32>::open(&name).unwrap_err();
        assert!(matches!(e, OpenError::NotShmkit { .. }), "{e:?}");
    }
    drop(arr);
    assert_no_leftovers(tag);
}

/// Single hostile fields behind a valid magic and version: each is
/// reported as the error it is, never trusted.
#[test]
fn hostile_header_fields_are_reported() {
    let tag = "err-fields";
    let name = unique_name(tag);
    let arr = Array::<u64>::create(&name, 4).unwrap();
    let good = header_bytes(&name);
    let reset = || poke(&name, 0, &good);
    let open = || Array::<u64>::open(&name).map(|_| ());
    let corrupt = |r: Result<(), OpenError>| match r {
        Err(OpenError::Corrupt { what }) => what,
        other => panic!("expected Corrupt, got {other:?}"),
    };

    poke(&name, STATE, &77u32.to_ne_bytes());
    assert!(corrupt(open()).contains("init_state"));
    reset();
    poke(&name, PAYLOAD_OFFSET, &0u32.to_ne_bytes());
    assert!(corrupt(open()).contains("payload_offset"));
    reset();
    poke(&name, TYPE_NAME_LEN, &1000u32.to_ne_bytes());
    assert!(corrupt(open()).contains("type_name_len"));
    reset();
    poke(&name, PAYLOAD_LEN, &u64::MAX.to_ne_bytes());
    assert!(corrupt(open()).contains("payload_len"));
    reset();
    poke(&name, TOTAL_LEN, &1u64.to_ne_bytes());
    assert!(corrupt(open()).contains("total_len"));
    reset();
    // A consistent header claiming more bytes than the object has.
    poke(&name, PAYLOAD_LEN, &(1u64 << 40).to_ne_bytes());
    poke(
        &name,
        TOTAL_LEN,
        &((1u64 << 40) + HEADER_LEN as u64).to_ne_bytes(),
    );
    poke(&name, PARAM0, &(1u64 << 37).to_ne_bytes());
    let e = open().unwrap_err();
    assert!(matches!(e, OpenError::Truncated { .. }), "{e:?}");
    reset();
    // An array length that disagrees with the payload length.
    poke(&name, PARAM0, &5u64.to_ne_bytes());
    assert!(corrupt(open()).contains("need a payload of 40 bytes"));
    poke(&name, PARAM0, &u64::MAX.to_ne_bytes());
    let _ = corrupt(open());
    reset();
    // A "value" holding two elements.
    poke(&name, KIND, &Kind::VALUE.0.to_ne_bytes());
    poke(&name, PARAM0, &2u64.to_ne_bytes());
    poke(&name, PAYLOAD_LEN, &16u64.to_ne_bytes());
    poke(&name, TOTAL_LEN, &(16 + HEADER_LEN as u64).to_ne_bytes());
    assert!(corrupt(Value::<u64>::open(&name).map(|_| ())).contains("exactly one"));
    reset();
    // Marked abandoned by an opener that found the creator dead.
    poke(&name, STATE, &init_state::ABANDONED.to_ne_bytes());
    let e = open().unwrap_err();
    assert!(matches!(e, OpenError::CreatorDied { .. }), "{e:?}");
    reset();
    assert_eq!(open().map_err(|e| e.to_string()), Ok(()));
    drop(arr);
    assert_no_leftovers(tag);
}

/// Random bytes behind a valid magic, version and READY state: opening
/// never panics or reads out of bounds; whatever it accepts is in bounds.
#[test]
fn random_header_bytes_never_panic_or_escape_the_mapping() {
    let tag = "err-fuzz";
    let name = unique_name(tag);
    let arr = Array::<u64>::create(&name, 16).unwrap();
    let good = header_bytes(&name);
    let file_len = (HEADER_LEN + 16 * 8) as u64;
    let mut junk = Junk(0x2545_f491_4f6c_dd1d);
    let iterations = if std::env::var_os("SHMKIT_LONG_TESTS").is_some() {
        20_000
    } else {
        500
    };
    let mut accepted = 0;
    for _ in 0..iterations {
        let mut bytes = good.clone();
        // Flip 1 to 8 random bytes after magic, version and state.
        for _ in 0..=(junk.next() % 8) {
            let at = 16 + (junk.next() as usize % (HEADER_LEN - 16));
            bytes[at] = junk.next() as u8;
        }
        poke(&name, 0, &bytes);
        for kind_value in [false, true] {
            let result = if kind_value {
                Value::<u64>::open(&name).map(|v| {
                    let _ = v.get();
                    1
                })
            } else {
                Array::<u64>::open(&name).map(|a| {
                    let len = a.len();
                    assert!(HEADER_LEN as u64 + len as u64 * 8 <= file_len);
                    assert_eq!(a.to_vec().len(), len);
                    if len > 0 {
                        assert!(a.get(len - 1).is_some());
                    }
                    assert!(a.get(len).is_none());
                    len
                })
            };
            if result.is_ok() {
                accepted += 1;
            }
        }
    }
    // Some flips land in unchecked bytes (type name, reserved): those
    // segments are still valid and must open.
    assert!(accepted > 0);
    drop(arr);
    assert_no_leftovers(tag);
}

/// CI runs as root: a child that drops to `nobody` may not open a 0600
/// segment root created.
#[test]
fn an_unprivileged_process_gets_permission_denied() {
    let tag = "err-perm";
    let name = unique_name(tag);
    let arr = Array::<u32>::create(&name, 4).unwrap();
    // SAFETY: plain getter.
    if unsafe { libc::geteuid() } != 0 {
        // Not root: the test cannot switch users; another user's segment
        // is what it would need.
        eprintln!("not root: skipping the setuid half of the test");
        drop(arr);
        return;
    }
    let child_name = name.clone();
    let child = fork(move || {
        // SAFETY: plain credential calls in a single-threaded child.
        unsafe {
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setgid(65534) != 0
                || libc::setuid(65534) != 0
            {
                return 2;
            }
        }
        let rw = matches!(
            Array::<u32>::open(&child_name),
            Err(OpenError::PermissionDenied { .. })
        );
        let ro = matches!(
            Array::<u32>::open_read_only(&child_name),
            Err(OpenError::PermissionDenied { .. })
        );
        let rm = matches!(
            Segment::unlink(&child_name),
            Err(UnlinkError::PermissionDenied { .. })
        );
        match (rw, ro, rm) {
            (true, true, true) => 0,
            (false, _, _) => 3,
            (_, false, _) => 4,
            (_, _, false) => 5,
        }
    });
    assert_eq!(child.wait(), Exit::Code(0));
    // The segment is intact for its owner.
    assert_eq!(Array::<u32>::open(&name).unwrap().len(), 4);
    drop(arr);
    assert_no_leftovers(tag);
}

/// A create refused by the OS names the segment it was creating. The child
/// gets a private mount namespace whose `/dev/shm` is a fresh tmpfs only
/// root may write, then drops to `nobody`: the first step of a create (the
/// unnamed `O_TMPFILE`) is refused.
#[test]
fn a_refused_create_names_the_segment() {
    let name = unique_name("err-create-perm");
    // SAFETY: plain getter.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("not root: cannot set up an unwritable /dev/shm; skipping");
        return;
    }
    let child_name = name.clone();
    let child = fork(move || {
        // SAFETY: namespace, mount and credential calls in a single-threaded
        // child; the mounts are private to its new mount namespace.
        unsafe {
            if libc::unshare(libc::CLONE_NEWNS) != 0 {
                return 10; // no mount namespaces here: skipped below
            }
            if libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ) != 0
                || libc::mount(
                    c"tmpfs".as_ptr(),
                    c"/dev/shm".as_ptr(),
                    c"tmpfs".as_ptr(),
                    0,
                    c"mode=0755".as_ptr().cast(),
                ) != 0
            {
                return 11;
            }
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setgid(65534) != 0
                || libc::setuid(65534) != 0
            {
                return 2;
            }
        }
        match Array::<u32>::create(&child_name, 4) {
            Err(CreateError::PermissionDenied { name }) if name == child_name => 0,
            Err(CreateError::PermissionDenied { name }) => {
                eprintln!("permission error names {name:?}, not {child_name:?}");
                3
            }
            Err(e) => {
                eprintln!("unexpected error: {e}");
                4
            }
            Ok(_) => 5,
        }
    });
    match child.wait() {
        Exit::Code(10 | 11) => eprintln!("cannot mount a private /dev/shm here; skipping"),
        other => assert_eq!(other, Exit::Code(0)),
    }
}

/// A read-only handle sees the writer's updates, and its mapping really is
/// PROT_READ: a write through it (in a forked child) dies with SIGSEGV.
#[test]
fn read_only_mappings_cannot_be_written() {
    let tag = "err-ro";
    let name = unique_name(tag);
    let writer = Array::<u32>::create(&name, 8).unwrap();
    let reader: Array<u32, ReadOnly> = Array::<u32>::open_read_only(&name).unwrap();
    assert!(!reader.segment().is_writable());
    writer.set(3, 42).unwrap();
    assert_eq!(reader.get(3), Some(42));
    let value = Value::<u32>::open_read_only(&name);
    assert!(matches!(value, Err(OpenError::KindMismatch { .. })));

    let target = reader.segment().payload().as_ptr();
    let child = fork(move || {
        // SAFETY: deliberately writes through a PROT_READ mapping; the
        // child is expected to die of SIGSEGV right here.
        unsafe { target.write_volatile(1) };
        0
    });
    assert_eq!(child.wait(), Exit::Signal(libc::SIGSEGV));
    assert_eq!(reader.get(0), Some(0));
    drop(reader);
    drop(writer);
    assert_no_leftovers(tag);
}

/// `Segment::open` checks what an `Expect` asks for, kind first.
#[test]
fn segment_level_open_checks_expectations() {
    let tag = "err-seg";
    let name = unique_name(tag);
    let spec = ObjectSpec {
        kind: Kind::USER,
        fingerprint: shmkit_core::header::Fingerprint::of::<[u8; 3]>([3, 9]),
        type_name: "[u8; 3]",
        payload_len: 300,
    };
    let seg = Segment::create(&name, &spec, &Options::new(), &mut |p, len| {
        assert_eq!(len, 300);
        // SAFETY: the payload is `len` writable bytes nobody else sees yet.
        unsafe { p.as_ptr().write_bytes(0x11, len) };
    })
    .unwrap();
    assert!(seg.is_owner());
    let opened = Segment::open(&name, &spec.expect(), &Options::new()).unwrap();
    assert!(!opened.is_owner());
    assert_eq!(opened.payload_len(), 300);
    assert_eq!(opened.header().kind, Kind::USER);
    // SAFETY: 300 readable payload bytes.
    assert_eq!(
        unsafe { opened.payload().as_ptr().add(299).read_volatile() },
        0x11
    );
    let mut other = spec.expect();
    other.fingerprint.params = [3, 10];
    let e = Segment::open(&name, &other, &Options::new()).unwrap_err();
    assert!(matches!(e, OpenError::TypeMismatch(_)), "{e:?}");
    other.match_params = false;
    assert!(Segment::open(&name, &other, &Options::new()).is_ok());
    let e = Segment::open(&name, &Expect::of::<[u8; 3]>(Kind::RING), &Options::new()).unwrap_err();
    assert!(matches!(e, OpenError::KindMismatch { .. }), "{e:?}");
    drop(opened);
    drop(seg);
    assert_no_leftovers(tag);
}

/// A hostile peer flips the state word between READY and INITIALIZING as
/// fast as it can: openers still return (attached, CreatorDied or
/// InitTimedOut) and never hang.
#[test]
fn a_peer_flipping_the_state_word_cannot_hang_openers() {
    let tag = "err-flip";
    let name = unique_name(tag);
    let arr = Array::<u32>::create(&name, 4).unwrap();
    let state = arr.segment().base();
    let flipper = fork(move || {
        // SAFETY: the header of `arr`'s mapping, inherited across fork.
        let word = unsafe { shmkit_core::header::init_state(state) };
        loop {
            word.store(
                init_state::INITIALIZING,
                std::sync::atomic::Ordering::Relaxed,
            );
            word.store(init_state::READY, std::sync::atomic::Ordering::Relaxed);
        }
    });
    let opener_name = name.clone();
    let opener = fork(move || {
        let options = Options::new().init_timeout(std::time::Duration::from_millis(20));
        for _ in 0..50 {
            match Array::<u32>::open_with(&opener_name, &options) {
                Ok(a) if a.len() == 4 => {}
                Err(OpenError::CreatorDied { .. } | OpenError::InitTimedOut { .. }) => {}
                Ok(_) => return 2,
                Err(_) => return 3,
            }
        }
        0
    });
    let result = opener.wait_timeout(std::time::Duration::from_secs(30));
    flipper.kill9();
    assert_eq!(flipper.wait(), Exit::Signal(libc::SIGKILL));
    assert_eq!(result, Some(Exit::Code(0)));
    drop(arr);
    assert_no_leftovers(tag);
}

/// A 4096-aligned element type cannot be created (the payload is only
/// 128-aligned), and a header forged to claim one is refused on open.
#[test]
fn over_aligned_element_types_are_refused_even_with_a_forged_header() {
    #[derive(Clone, Copy, bytemuck::Zeroable, bytemuck::Pod)]
    #[repr(C, align(4096))]
    struct Page([u8; 4096]);

    let tag = "err-align";
    let name = unique_name(tag);
    let e = Array::<Page>::create(&name, 1).unwrap_err();
    assert!(matches!(e, CreateError::InvalidLayout { .. }), "{e:?}");
    // Forge: a segment whose fingerprint is exactly Page's.
    let spec = ObjectSpec {
        kind: Kind::ARRAY,
        fingerprint: shmkit_core::header::Fingerprint::of::<Page>([1, 0]),
        type_name: std::any::type_name::<Page>(),
        payload_len: 4096,
    };
    let seg = Segment::create(&name, &spec, &Options::new(), &mut |_, _| {}).unwrap();
    match Array::<Page>::open(&name) {
        Err(OpenError::Corrupt { what }) => assert!(what.contains("aligned"), "{what}"),
        other => panic!("{other:?}"),
    }
    drop(seg);
    assert_no_leftovers(tag);
}

/// /dev/shm is world-writable: a FIFO planted under a segment's name must
/// not make openers (read-only ones block on a FIFO) hang.
#[test]
fn a_fifo_under_the_name_is_refused_without_blocking() {
    let tag = "err-fifo";
    let name = unique_name(tag);
    let path = std::ffi::CString::new(shm_path(&name)).unwrap();
    // SAFETY: NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o666) }, 0);
    let child_name = name.clone();
    let child = fork(move || {
        let ro = Array::<u32>::open_read_only(&child_name);
        let rw = Array::<u32>::open(&child_name);
        match (ro, rw) {
            (Err(OpenError::Truncated { actual: 0, .. }), Err(OpenError::Truncated { .. })) => 0,
            _ => 2,
        }
    });
    let exit = child.wait_timeout(std::time::Duration::from_secs(20));
    Segment::unlink(&name).unwrap();
    assert_eq!(exit, Some(Exit::Code(0)));
    assert_no_leftovers(tag);
}

/// The mode asked for is applied exactly, whatever the umask: in a child
/// whose umask strips group and other bits, a 0644 segment is still 0644,
/// and a 0600 one (untouched by that umask) is 0600.
#[test]
fn create_applies_the_mode_exactly_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let tag = "err-mode";
    let names = [unique_name(tag), unique_name(tag)];
    let child_names = names.clone();
    let child = fork(move || {
        // SAFETY: plain umask call in a single-threaded child.
        unsafe { libc::umask(0o077) };
        for (name, mode) in child_names.iter().zip([0o644, 0o600]) {
            let options = Options::new().mode(mode);
            let Ok(arr) = Array::<u8>::create_with(name, 4, &options) else {
                return 2;
            };
            let Ok(meta) = std::fs::metadata(shm_path(name)) else {
                return 3;
            };
            if meta.permissions().mode() & 0o777 != mode {
                eprintln!(
                    "{name}: mode {:o}, asked {mode:o}",
                    meta.permissions().mode()
                );
                return 4;
            }
            drop(arr);
        }
        0
    });
    assert_eq!(child.wait(), Exit::Code(0));
    assert_no_leftovers(tag);
}

/// Python raises `ValueError` for `Array('i', 0)` and `Barrier(0)`:
/// creating either is a clear error on every creating path, and so are
/// their `lock=True` and too-many-parties cousins (issue 8, item 7).
#[test]
fn empty_arrays_and_impossible_barriers_are_refused() {
    let tag = "err-empty";
    let name = unique_name(tag);
    let layout = |e: CreateError| match e {
        CreateError::InvalidLayout { reason } => reason,
        other => panic!("expected InvalidLayout, got {other:?}"),
    };
    assert!(layout(Array::<u32>::create(&name, 0).unwrap_err()).contains("at least one element"));
    assert!(
        layout(Array::<u32>::anonymous(Vec::<u32>::new()).unwrap_err()).contains("at least one")
    );
    assert!(layout(Array::<u32>::memfd(0).unwrap_err()).contains("at least one"));
    match Array::<u32>::open_or_create(&name, 0) {
        Err(OpenOrCreateError::Create(CreateError::InvalidLayout { reason })) => {
            assert!(reason.contains("at least one"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        layout(shmkit_posix::LockedArray::<u8>::anonymous(0).unwrap_err()).contains("at least one")
    );
    for parties in [0, 65_536, 70_000] {
        let reason = layout(shmkit_posix::sync::Barrier::anonymous(parties).unwrap_err());
        assert!(reason.contains("1 to 65535 parties"), "{parties}: {reason}");
    }
    assert!(shmkit_posix::sync::Barrier::anonymous(65_535).is_ok());
    assert_no_leftovers(tag);
}
