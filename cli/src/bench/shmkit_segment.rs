//! Case `segment_lifecycle`: create + open + drop of a named 4 KiB segment,
//! shmkit against the `shared_memory` crate doing the same.
//!
//! One sample is one whole cycle, in nanoseconds: the owner creates the
//! object under a fixed name (sized to 4 KiB and mapped), a second handle
//! opens it by name (checked and mapped), then the opener and the owner are
//! dropped (unmapped, closed, the name removed). Both impls run in the
//! calling process; `params.cpus[0]`, if given, pins it.
//!
//! shmkit does more per cycle than `shared_memory`, by design: a header is
//! written and validated, creation goes through an unnamed `O_TMPFILE`
//! object, a lock and `linkat(2)` so no opener ever sees a half-built
//! object, and the owner checks that the name is still its object before
//! removing it (16 system calls a cycle against 11). The case shows what
//! that safety costs.
//!
//! Case `segment_lifecycle_touched` is the same cycle in which the owner
//! writes one payload byte and the opener reads it back, as any real use
//! does. It matters on VMs, where bringing in a page costs microseconds
//! (allocation, zeroing, and the TLB flush when it is unmapped): shmkit
//! brings in the first page in create and open (it writes and reads the
//! header; a one-page segment is mapped with `MAP_POPULATE`), while
//! `shared_memory` leaves it untouched until first use, so the plain case
//! charges shmkit for pages its users touch anyway.

use std::time::Instant;

use shmkit_core::header::{Fingerprint, Kind, HEADER_LEN};
use shmkit_posix::segment::{ObjectSpec, Options, Segment};

use super::{proc, Impl, Measurement, Params, RunResult};

/// Total size of the segment each cycle creates (header included).
pub const SEGMENT_BYTES: usize = 4096;

/// The impls of these cases, for the bench engine.
#[must_use]
pub fn impls() -> Vec<(&'static str, Impl)> {
    vec![
        (
            "segment_lifecycle",
            Impl {
                name: "shmkit",
                run: |p| shmkit_lifecycle(p, false),
            },
        ),
        (
            "segment_lifecycle",
            Impl {
                name: "shared_memory",
                run: |p| shared_memory_lifecycle(p, false),
            },
        ),
        (
            "segment_lifecycle_touched",
            Impl {
                name: "shmkit",
                run: |p| shmkit_lifecycle(p, true),
            },
        ),
        (
            "segment_lifecycle_touched",
            Impl {
                name: "shared_memory",
                run: |p| shared_memory_lifecycle(p, true),
            },
        ),
    ]
}

/// Writes a byte through `owner` and reads it back through `opener`.
///
/// # Safety
/// Both point at the same live, writable shared byte.
unsafe fn touch(owner: *mut u8, opener: *const u8) -> Result<(), String> {
    // SAFETY: forwarded from the caller; volatile so the access happens.
    let seen = unsafe {
        owner.write_volatile(0x5a);
        opener.read_volatile()
    };
    if seen == 0x5a {
        Ok(())
    } else {
        Err(format!("opener read {seen:#x}, owner wrote 0x5a"))
    }
}

/// A name private to this process and impl, so concurrent benchmark runs
/// (or a leftover of a killed one) never collide.
fn bench_name(which: &str) -> String {
    format!("/shmkit-bench-seg-{which}-{}", std::process::id())
}

/// Runs `cycle` `warmup` times unmeasured, then `ops` times measured.
fn sample(params: &Params, mut cycle: impl FnMut() -> Result<(), String>) -> RunResult {
    proc::pin_index(&params.cpus, 0).map_err(|e| format!("pinning to a CPU: {e}"))?;
    for _ in 0..params.warmup {
        cycle()?;
    }
    let mut samples = Vec::with_capacity(usize::try_from(params.ops).unwrap_or(0));
    for _ in 0..params.ops {
        let t0 = Instant::now();
        cycle()?;
        let ns = t0.elapsed().as_nanos();
        samples.push(u64::try_from(ns).unwrap_or(u64::MAX));
    }
    Ok(Measurement::Latencies(samples))
}

/// shmkit: `Segment::create` (4 KiB including the header) + `Segment::open`
/// checked against the creator's spec (+ one byte written and read back if
/// `touched`) + drop of both.
fn shmkit_lifecycle(params: &Params, touched: bool) -> RunResult {
    let name = bench_name("shmkit");
    let spec = ObjectSpec {
        kind: Kind::ARRAY,
        fingerprint: Fingerprint::of::<u8>([(SEGMENT_BYTES - HEADER_LEN) as u64, 0]),
        type_name: "u8",
        payload_len: (SEGMENT_BYTES - HEADER_LEN) as u64,
    };
    let expect = spec.expect();
    let options = Options::default();
    sample(params, || {
        let owner = Segment::create(&name, &spec, &options, &mut |_, _| {})
            .map_err(|e| format!("shmkit create: {e}"))?;
        let opener =
            Segment::open(&name, &expect, &options).map_err(|e| format!("shmkit open: {e}"))?;
        if touched {
            // SAFETY: both payloads start with the same byte of the same
            // object, mapped writable while both handles live.
            unsafe { touch(owner.payload().as_ptr(), opener.payload().as_ptr())? };
        }
        drop(opener);
        drop(owner);
        Ok(())
    })
}

/// `shared_memory` 0.12: `ShmemConf::create` (4 KiB, by os id) +
/// `ShmemConf::open` (+ one byte written and read back if `touched`) + drop
/// of both (the owner unlinks).
fn shared_memory_lifecycle(params: &Params, touched: bool) -> RunResult {
    use shared_memory::ShmemConf;
    let name = bench_name("shared-memory");
    sample(params, || {
        let owner = ShmemConf::new()
            .size(SEGMENT_BYTES)
            .os_id(&name)
            .create()
            .map_err(|e| format!("shared_memory create: {e}"))?;
        let opener = ShmemConf::new()
            .os_id(&name)
            .open()
            .map_err(|e| format!("shared_memory open: {e}"))?;
        if touched {
            // SAFETY: both mappings start with the same byte of the same
            // 4 KiB object, mapped writable while both handles live.
            unsafe { touch(owner.as_ptr(), opener.as_ptr())? };
        }
        drop(opener);
        drop(owner);
        Ok(())
    })
}
