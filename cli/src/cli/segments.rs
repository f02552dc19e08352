//! `shmkit ls | inspect | rm | gc`: looking at and cleaning up the named
//! segments in `/dev/shm`.
//!
//! Everything here maps segments **read-only** and copies the header with
//! [`HeaderSnapshot::read`] before trusting any of it: a corrupt segment is
//! reported, and nothing waits on a lock or a creator.

use std::fs::File;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::process::ExitCode;
use std::ptr::NonNull;

use clap::Args;
use memmap2::{MmapOptions, MmapRaw};
use shmkit::core::header::{init_state, HeaderError, HeaderSnapshot, HEADER_LEN, MAGIC};
use shmkit::core::owner::{liveness, liveness_with_start, Liveness};
use shmkit::posix::segment::{SHM_DIR, TEMP_PREFIX};
use shmkit::posix::SegmentName;

use super::inspect;

#[derive(Args, Debug)]
#[command(
    after_help = "Columns: NAME KIND TYPE SIZE CREATOR (pid, alive/dead) MODE OWNER.\n\
Objects in /dev/shm that are not shmkit segments are counted, and listed with --all."
)]
pub struct LsArgs {
    /// Also list objects in /dev/shm that are not shmkit segments.
    #[arg(long)]
    all: bool,
}

#[derive(Args, Debug)]
#[command(
    after_help = "Maps the segment read-only and never waits on it or writes to it. Prints the \
header, then the object's state: a lock's owner (and whether it is alive) and waiters, a \
semaphore's permits, a barrier's parties and generation, a queue's capacity, occupancy and \
attached producers/consumers. Values no honest process can produce print as `corrupt: ...`.\n\
Exit status: 0 if the segment is sound, 2 if its header or object state is corrupt or it is not \
ready (the report is still printed), 1 on errors."
)]
pub struct InspectArgs {
    /// Segment name, with or without the leading '/' (see `shmkit ls`).
    name: String,
}

#[derive(Args, Debug)]
pub struct RmArgs {
    /// Segment name, with or without the leading '/'.
    name: String,
    /// Remove it even if it is not a shmkit segment.
    #[arg(long)]
    force: bool,
}

#[derive(Args, Debug)]
#[command(
    after_help = "A segment is garbage when its creator process is dead (pid and start time \
checked, so a reused pid does not count as alive) and no process has it mapped (/proc/*/maps). \
Leftover temporary names (.shmkit-tmp.<pid>.<n>) of dead pids are garbage too. Without --yes \
nothing is removed."
)]
pub struct GcArgs {
    /// Actually remove the garbage (default: only list it).
    #[arg(long)]
    yes: bool,
    /// Only consider names starting with PREFIX (with or without the leading '/').
    #[arg(long, value_name = "PREFIX")]
    prefix: Option<String>,
}

/// A read-only mapping of a whole object.
pub struct Mapping {
    map: MmapRaw,
}

impl Mapping {
    /// Start of the mapping (page-aligned).
    pub fn base(&self) -> NonNull<u8> {
        NonNull::new(self.map.as_mut_ptr()).unwrap_or(NonNull::dangling())
    }

    /// Bytes mapped.
    pub fn len(&self) -> usize {
        self.map.len()
    }
}

/// What a look at one object in /dev/shm found.
pub struct Probe {
    /// File name under /dev/shm (no leading '/').
    pub body: String,
    pub size: u64,
    pub mode: u32,
    pub uid: u32,
    pub dev: u64,
    pub ino: u64,
    /// The header copy, if the object is big enough to hold one.
    pub header: Option<HeaderSnapshot>,
    /// The read-only mapping, kept only when asked for.
    pub mapping: Option<Mapping>,
}

impl Probe {
    /// Whether the object carries shmkit's magic bytes.
    pub fn is_shmkit(&self) -> bool {
        self.header.as_ref().is_some_and(|h| h.magic == MAGIC)
    }

    /// `Ok` or why the header cannot be used.
    pub fn check(&self) -> Result<(), HeaderError> {
        match &self.header {
            None => Err(HeaderError::TooShort {
                len: usize::try_from(self.size).unwrap_or(usize::MAX),
            }),
            Some(h) => h.validate(usize::try_from(self.size).unwrap_or(usize::MAX)),
        }
    }

    /// The creator's liveness (pid + start time), if there is a header.
    pub fn creator(&self) -> Option<(u32, Liveness)> {
        let h = self.header.as_ref()?;
        if h.creator_pid == 0 {
            return Some((0, Liveness::Unknown));
        }
        Some((
            h.creator_pid,
            liveness_with_start(h.creator_pid, h.creator_start),
        ))
    }
}

fn shm_path(body: &str) -> String {
    format!("{SHM_DIR}/{body}")
}

/// Opens `/dev/shm/body` read-only (never following symlinks, never
/// blocking), maps it, copies the header. Keeps the mapping if `keep`.
pub fn probe(body: &str, keep: bool) -> Result<Probe, String> {
    let path = shm_path(body);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(&path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                format!(
                    "no segment named /{body} in {SHM_DIR}; `shmkit ls` lists the segments there"
                )
            }
            std::io::ErrorKind::PermissionDenied => {
                format!("cannot read {path}: permission denied; run as its owner or as root")
            }
            _ => format!("cannot open {path}: {e}"),
        })?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot stat {path}: {e}"))?;
    if !meta.file_type().is_file() {
        return Err(format!(
            "{path} is not a shared-memory object (not a regular file)"
        ));
    }
    let mut probe = Probe {
        body: body.to_owned(),
        size: meta.len(),
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        dev: meta.dev(),
        ino: meta.ino(),
        header: None,
        mapping: None,
    };
    if meta.len() < HEADER_LEN as u64 {
        return Ok(probe);
    }
    let len = usize::try_from(meta.len()).map_err(|_| format!("{path} is too large to map"))?;
    let map = map_read_only(&file, len).map_err(|e| format!("cannot map {path}: {e}"))?;
    let mapping = Mapping { map };
    // SAFETY: the mapping is at least HEADER_LEN bytes (checked above),
    // page-aligned, and lives until the end of this function or in `probe`.
    probe.header = Some(unsafe { HeaderSnapshot::read(mapping.base()) });
    if keep {
        probe.mapping = Some(mapping);
    }
    Ok(probe)
}

fn map_read_only(file: &File, len: usize) -> std::io::Result<MmapRaw> {
    MmapOptions::new().len(len).map_raw_read_only(file)
}

/// Names in /dev/shm, sorted.
fn shm_names() -> Result<Vec<String>, String> {
    let dir = std::fs::read_dir(SHM_DIR).map_err(|e| format!("cannot list {SHM_DIR}: {e}"))?;
    let mut v: Vec<String> = dir
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    v.sort();
    Ok(v)
}

fn owner_name(uid: u32) -> String {
    let mut buf = vec![0 as libc::c_char; 1024];
    // SAFETY: passwd is plain data; zeroed is a valid out-value.
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut out: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: valid buffers of the sizes passed; `out` is set to `&pw` or null.
    let rc = unsafe { libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr(), buf.len(), &mut out) };
    if rc == 0 && !out.is_null() && !pw.pw_name.is_null() {
        // SAFETY: pw_name points into `buf`, NUL-terminated by getpwuid_r.
        let name = unsafe { std::ffi::CStr::from_ptr(pw.pw_name) };
        return name.to_string_lossy().into_owned();
    }
    uid.to_string()
}

fn liveness_str(l: Liveness) -> &'static str {
    match l {
        Liveness::Alive => "alive",
        Liveness::Dead => "dead",
        Liveness::Unknown => "unknown",
    }
}

fn state_str(s: u32) -> &'static str {
    match s {
        init_state::UNINIT => "uninitialised",
        init_state::INITIALIZING => "initialising",
        init_state::READY => "ready",
        init_state::ABANDONED => "abandoned",
        _ => "invalid",
    }
}

/// Pids other than this one whose /proc/PID/maps map the object `(dev,
/// ino)` (a `Probe`'s), and the pids whose maps could not be read (so the
/// answer may be incomplete for them).
///
/// The object is matched by device and inode, not by name: a creator maps
/// it under its temporary name, which its maps show as
/// `/dev/shm/.shmkit-tmp.PID.N (deleted)` once the object is linked to its
/// real name, and so do the children it forks afterwards. An inode is not
/// reused while anything maps it, so an old object of the same name never
/// matches.
pub fn mapped_by(dev: u64, ino: u64) -> (Vec<u32>, Vec<u32>) {
    let me = std::process::id();
    // The `MAJ:MIN` field of a maps line, in hex as the kernel prints it.
    let want_dev = format!("{:02x}:{:02x}", libc::major(dev), libc::minor(dev));
    let want_ino = ino.to_string();
    let maps_it = |line: &str| {
        // address perms offset dev inode [path]
        let mut fields = line.split_ascii_whitespace().skip(3);
        fields.next() == Some(want_dev.as_str()) && fields.next() == Some(want_ino.as_str())
    };
    let mut pids = Vec::new();
    let mut unreadable = Vec::new();
    let Ok(proc_dir) = std::fs::read_dir("/proc") else {
        return (pids, unreadable);
    };
    for e in proc_dir.filter_map(Result::ok) {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        match std::fs::read_to_string(format!("/proc/{pid}/maps")) {
            Ok(maps) => {
                if maps.lines().any(maps_it) {
                    pids.push(pid);
                }
            }
            // A process that exited meanwhile maps nothing.
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(_) => unreadable.push(pid),
        }
    }
    pids.sort_unstable();
    (pids, unreadable)
}

fn human_size(n: u64) -> String {
    if n >= 1 << 30 {
        format!("{:.1}G", n as f64 / f64::from(1u32 << 30))
    } else if n >= 1 << 20 {
        format!("{:.1}M", n as f64 / f64::from(1u32 << 20))
    } else if n >= 1 << 10 {
        format!("{:.1}K", n as f64 / 1024.0)
    } else {
        format!("{n}B")
    }
}

/// Printable version of a name from a directory listing (control
/// characters escaped so a hostile name cannot rewrite the terminal).
fn printable(s: &str) -> String {
    s.chars()
        .flat_map(char::escape_default)
        .collect::<String>()
        .replace("\\'", "'")
        .replace("\\\"", "\"")
}

pub fn ls(a: &LsArgs) -> Result<ExitCode, String> {
    let names = shm_names()?;
    let mut rows = Vec::new();
    let mut others = Vec::new();
    for body in &names {
        match probe(body, false) {
            Ok(p) if p.is_shmkit() => rows.push(p),
            Ok(p) => others.push(format!(
                "{:<40} {:>8}  {:04o} {}",
                printable(&p.body),
                human_size(p.size),
                p.mode,
                owner_name(p.uid)
            )),
            Err(e) => others.push(format!("{:<40} ({e})", printable(body))),
        }
    }
    println!(
        "{:<40} {:<16} {:<20} {:>8} {:>16} {:>5} OWNER",
        "NAME", "KIND", "TYPE", "SIZE", "CREATOR", "MODE"
    );
    for p in &rows {
        let h = p.header.as_ref();
        let kind = match p.check() {
            Ok(()) => h.map_or("?".to_string(), |h| h.kind.to_string()),
            Err(HeaderError::NotReady { state }) => format!("({})", state_str(state)),
            Err(HeaderError::Abandoned) => "(abandoned)".to_string(),
            Err(_) => "(corrupt)".to_string(),
        };
        let ty = h.map_or("?", |h| h.type_name());
        let creator = match p.creator() {
            Some((0, _)) | None => "?".to_string(),
            Some((pid, l)) => format!("{pid} {}", liveness_str(l)),
        };
        println!(
            "{:<40} {:<16} {:<20} {:>8} {:>16} {:>5} {}",
            format!("/{}", printable(&p.body)),
            kind,
            printable(ty),
            human_size(p.size),
            creator,
            format!("{:04o}", p.mode),
            owner_name(p.uid)
        );
    }
    if rows.is_empty() {
        println!("(no shmkit segments in {SHM_DIR})");
    }
    if !others.is_empty() {
        if a.all {
            println!("\nnot shmkit segments:");
            for o in &others {
                println!("{o}");
            }
        } else {
            println!(
                "({} other object(s) in {SHM_DIR} are not shmkit segments; --all lists them)",
                others.len()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn inspect(a: &InspectArgs) -> Result<ExitCode, String> {
    let name = SegmentName::new(&a.name).map_err(|e| format!("{e}"))?;
    let p = probe(name.body(), true)?;
    let Some(h) = p.header else {
        return Err(format!(
            "{} is {} bytes, too short to be a shmkit segment; `shmkit rm --force {}` removes it",
            name.as_str(),
            p.size,
            name.as_str()
        ));
    };
    if h.magic != MAGIC {
        return Err(format!(
            "{} is not a shmkit segment (no shmkit header); nothing to inspect",
            name.as_str()
        ));
    }
    let check = p.check();
    let (pids, unreadable) = mapped_by(p.dev, p.ino);
    let mut out = vec![
        ("name", name.as_str().to_string()),
        ("path", shm_path(name.body())),
        ("size", format!("{} bytes", p.size)),
        (
            "mode",
            format!("{:04o}, owner {}", p.mode, owner_name(p.uid)),
        ),
        (
            "header",
            match &check {
                Ok(()) => "valid".to_string(),
                Err(e) => format!("INVALID: {e}"),
            },
        ),
        (
            "state",
            format!("{} ({})", state_str(h.init_state), h.init_state),
        ),
        ("version", h.version.to_string()),
        ("kind", format!("{} ({})", h.kind, h.kind.0)),
        ("type", printable(h.type_name())),
        (
            "element",
            format!(
                "size {}, align {}, type hash {:#018x}",
                h.fingerprint.size, h.fingerprint.align, h.fingerprint.type_hash
            ),
        ),
        ("params", format!("{:?}", h.fingerprint.params)),
        (
            "payload",
            format!("{} bytes at offset {}", h.payload_len, h.payload_offset),
        ),
        (
            "creator",
            match p.creator() {
                Some((0, _)) | None => "unknown (pid 0)".to_string(),
                Some((pid, l)) => format!(
                    "pid {pid}, {} (start time {})",
                    liveness_str(l),
                    h.creator_start
                ),
            },
        ),
        (
            "mapped by",
            match (pids.is_empty(), unreadable.is_empty()) {
                (true, true) => "no process".to_string(),
                (true, false) => format!(
                    "no process whose maps are readable (not readable: pids {unreadable:?})"
                ),
                (false, _) => pids
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
            },
        ),
    ];
    let mut payload_corrupt = false;
    if check.is_ok() {
        if let Some(m) = &p.mapping {
            let payload = inspect::Payload::new(m, &h);
            match payload {
                Some(payload) => match inspect::details(&h, &payload) {
                    Some(lines) => {
                        payload_corrupt = lines.iter().any(|(_, v)| v.starts_with("corrupt: "));
                        out.extend(lines);
                    }
                    None => out.push(("details", format!("no inspector for kind {} yet", h.kind))),
                },
                None => out.push(("details", "payload out of range".to_string())),
            }
        }
    }
    for (k, v) in &out {
        println!("{:<12} {v}", format!("{k}:"));
    }
    if let Err(e) = check {
        eprintln!(
            "shmkit: {} is not usable: {e}. If no process needs it, remove it with `shmkit rm {}`.",
            name.as_str(),
            name.as_str()
        );
        return Ok(ExitCode::from(2));
    }
    if payload_corrupt {
        eprintln!(
            "shmkit: {}: the object's shared state is corrupt (the `corrupt:` lines above); \
             its users will get errors or nonsense. If no process needs it, remove it with `shmkit rm {}` and recreate it.",
            name.as_str(),
            name.as_str()
        );
        return Ok(ExitCode::from(2));
    }
    Ok(ExitCode::SUCCESS)
}

pub fn rm(a: &RmArgs) -> Result<ExitCode, String> {
    let name = SegmentName::new(&a.name).map_err(|e| format!("{e}"))?;
    if !a.force {
        let p = probe(name.body(), false)?;
        if !p.is_shmkit() {
            return Err(format!(
                "{} is not a shmkit segment; pass --force to remove it anyway",
                name.as_str()
            ));
        }
    }
    shmkit::posix::Segment::unlink(name.as_str()).map_err(|e| format!("{e}"))?;
    println!("removed {}", name.as_str());
    Ok(ExitCode::SUCCESS)
}

/// Why an object is garbage, or `None` if it is not (or may not be).
fn garbage_reason(body: &str) -> Option<(String, u64, u64)> {
    if let Some(rest) = body.strip_prefix(TEMP_PREFIX) {
        // `.shmkit-tmp.<pid>.<n>`: a creator died between creating and linking.
        let pid: u32 = rest.split('.').next()?.parse().ok()?;
        if liveness(pid) != Liveness::Dead {
            return None;
        }
        let p = probe(body, false).ok()?;
        if !mapped_by(p.dev, p.ino).0.is_empty() {
            return None;
        }
        return Some((format!("temporary name of dead pid {pid}"), p.dev, p.ino));
    }
    let p = probe(body, false).ok()?;
    if !p.is_shmkit() {
        return None;
    }
    let (pid, l) = p.creator()?;
    if pid == 0 || l != Liveness::Dead {
        return None;
    }
    if !mapped_by(p.dev, p.ino).0.is_empty() {
        return None;
    }
    let state = match p.check() {
        Ok(()) => String::new(),
        Err(e) => format!(", {e}"),
    };
    Some((
        format!("creator pid {pid} dead, not mapped{state}"),
        p.dev,
        p.ino,
    ))
}

pub fn gc(a: &GcArgs) -> Result<ExitCode, String> {
    let mut found = 0;
    let mut failed = 0;
    let prefix = a
        .prefix
        .as_deref()
        .map(|p| p.strip_prefix('/').unwrap_or(p));
    for body in shm_names()? {
        if prefix.is_some_and(|p| !body.starts_with(p)) {
            continue;
        }
        let Some((why, dev, ino)) = garbage_reason(&body) else {
            continue;
        };
        found += 1;
        let shown = format!("/{}", printable(&body));
        if !a.yes {
            println!("garbage: {shown} ({why})");
            continue;
        }
        // Unlink only the object we judged: the name may have been reused.
        let same = std::fs::symlink_metadata(shm_path(&body))
            .is_ok_and(|m| m.dev() == dev && m.ino() == ino);
        if !same {
            println!("skipped: {shown} (replaced while checking)");
            continue;
        }
        match std::fs::remove_file(shm_path(&body)) {
            Ok(()) => println!("removed: {shown} ({why})"),
            Err(e) => {
                failed += 1;
                eprintln!("shmkit: cannot remove {shown}: {e}");
            }
        }
    }
    if found > 0 {
        // Inode 0 names no object: this only collects the unreadable maps.
        let (_, unreadable) = mapped_by(0, 0);
        if !unreadable.is_empty() {
            println!(
                "note: /proc/PID/maps of pids {unreadable:?} is not readable; if one of them maps an object \
                 above, it keeps its mapping (removing only drops the name)"
            );
        }
    }
    if found == 0 {
        println!("no garbage in {SHM_DIR}");
    } else if !a.yes {
        println!("{found} garbage object(s); run `shmkit gc --yes` to remove them");
    }
    if failed > 0 {
        return Err(format!("{failed} object(s) could not be removed; check permissions (run as their owner or root)"));
    }
    Ok(ExitCode::SUCCESS)
}
