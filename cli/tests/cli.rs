//! The `shmkit` command against segments these tests create: a healthy
//! one, a corrupt one, one whose creator was SIGKILLed, a leftover
//! temporary name; and `bench --format json` against the documented schema.

use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::process::{Command, Output};

use shmkit::Array;
use shmkit_testkit::{fork, own_prefix, unique_name};

/// Runs the tests of this file one at a time. A child forked by one test
/// thread inherits the pipes of a `Command` another thread is spawning
/// (close-on-exec only acts on exec) and, while it lives, keeps that
/// command's output open: a test could wait on another test's child.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn shmkit(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shmkit"))
        .args(args)
        .output()
        .expect("run the shmkit binary")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn shm_path(name: &str) -> String {
    format!("/dev/shm/{}", name.trim_start_matches('/'))
}

/// Removes `/dev/shm/NAME` when dropped, so a failing test leaves nothing.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(shm_path(&self.0));
    }
}

#[test]
fn every_command_has_help() {
    shmkit_testkit::require_exec!("every_command_has_help");
    let _serial = serial();
    for cmd in [&[][..], &["bench"], &["ls"], &["inspect"], &["rm"], &["gc"]] {
        let mut args: Vec<&str> = cmd.to_vec();
        args.push("--help");
        let o = shmkit(&args);
        let (out, _) = text(&o);
        assert!(o.status.success(), "{args:?}");
        assert!(out.contains("Usage:"), "{args:?}: {out}");
    }
}

#[test]
fn ls_and_inspect_show_a_live_array() {
    shmkit_testkit::require_exec!("ls_and_inspect_show_a_live_array");
    let _serial = serial();
    let name = unique_name("cli-ls");
    let arr = Array::<u32>::create(&name, [7, 8, 9]).unwrap();
    let o = shmkit(&["ls"]);
    let (out, _) = text(&o);
    assert!(o.status.success());
    let row = out
        .lines()
        .find(|l| l.starts_with(&name))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(row.contains("array") && row.contains("u32"), "{row}");
    assert!(
        row.contains(&format!("{} alive", std::process::id())),
        "{row}"
    );

    let o = shmkit(&["inspect", &name]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(out.contains("header:      valid"), "{out}");
    assert!(out.contains("kind:        array (1)"), "{out}");
    assert!(out.contains("elements:    [7, 8, 9]"), "{out}");
    assert!(
        out.contains("length:      3 element(s) of 4 byte(s)"),
        "{out}"
    );
    assert!(
        out.contains(&std::process::id().to_string()),
        "mapped by us: {out}"
    );
    // A live creator's segment is never garbage.
    let o = shmkit(&["gc", "--prefix", &name]);
    assert!(text(&o).0.contains("no garbage"), "{}", text(&o).0);
    drop(arr);
}

#[test]
fn a_corrupt_segment_is_reported_not_crashed_on() {
    shmkit_testkit::require_exec!("a_corrupt_segment_is_reported_not_crashed_on");
    let _serial = serial();
    let name = unique_name("cli-corrupt");
    let _cleanup = Cleanup(name.clone());
    let arr = Array::<u64>::create(&name, 4).unwrap();
    arr.persist();
    drop(arr);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(shm_path(&name))
        .unwrap();
    // total_len (offset 32) no longer matches payload_len: corrupt.
    f.write_all_at(&u64::MAX.to_ne_bytes(), 32).unwrap();
    // Garbage type name length and state bytes too.
    f.write_all_at(&[0xff; 4], 88).unwrap();

    let o = shmkit(&["inspect", &name]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out}{err}");
    assert!(out.contains("header:      INVALID"), "{out}");
    assert!(err.contains("shmkit rm"), "{err}");
    let o = shmkit(&["ls"]);
    let row = text(&o)
        .0
        .lines()
        .find(|l| l.starts_with(&name))
        .map(str::to_owned);
    assert!(row.is_some_and(|r| r.contains("(corrupt)")));

    // All-garbage bytes: not a shmkit segment at all.
    f.write_all_at(&[0xa5; 256], 0).unwrap();
    let o = shmkit(&["inspect", &name]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).1.contains("not a shmkit segment"));
    let o = shmkit(&["rm", &name]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).1.contains("--force"));
    let o = shmkit(&["rm", "--force", &name]);
    assert!(o.status.success(), "{:?}", text(&o));
    assert!(!std::path::Path::new(&shm_path(&name)).exists());
}

#[test]
fn gc_removes_the_segment_of_a_killed_creator() {
    shmkit_testkit::require_exec!("gc_removes_the_segment_of_a_killed_creator");
    let _serial = serial();
    let name = unique_name("cli-gc");
    let _cleanup = Cleanup(name.clone());
    let (mut rx, mut tx) = std::os::unix::net::UnixStream::pair().unwrap();
    let child = {
        let name = name.clone();
        fork(move || {
            let arr = Array::<u8>::create(&name, 64).unwrap();
            arr.persist();
            drop(arr);
            tx.write_all(b"k").unwrap();
            loop {
                std::thread::park();
            }
        })
    };
    let mut b = [0u8; 1];
    rx.read_exact(&mut b).unwrap();
    let pid = child.pid();
    child.kill9();
    child.wait();

    let o = shmkit(&["ls"]);
    let out = text(&o).0;
    let row = out
        .lines()
        .find(|l| l.starts_with(&name))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(row.contains(&format!("{pid} dead")), "{row}");

    let o = shmkit(&["gc", "--prefix", &name]);
    let out = text(&o).0;
    assert!(out.contains(&format!("garbage: {name}")), "{out}");
    assert!(out.contains("gc --yes"), "{out}");
    assert!(
        std::path::Path::new(&shm_path(&name)).exists(),
        "listing alone removes nothing"
    );

    let o = shmkit(&["gc", "--yes", "--prefix", &name]);
    assert!(o.status.success());
    assert!(text(&o).0.contains(&format!("removed: {name}")));
    assert!(!std::path::Path::new(&shm_path(&name)).exists());
}

#[test]
fn gc_keeps_a_mapped_segment_and_removes_dead_temp_names() {
    shmkit_testkit::require_exec!("gc_keeps_a_mapped_segment_and_removes_dead_temp_names");
    let _serial = serial();
    // Creator dead but still mapped by us: not garbage.
    let name = unique_name("cli-mapped");
    let _cleanup = Cleanup(name.clone());
    let (mut rx, mut tx) = std::os::unix::net::UnixStream::pair().unwrap();
    let child = {
        let name = name.clone();
        fork(move || {
            let arr = Array::<u8>::create(&name, 8).unwrap();
            arr.persist();
            drop(arr);
            tx.write_all(b"k").unwrap();
            0
        })
    };
    let mut b = [0u8; 1];
    rx.read_exact(&mut b).unwrap();
    assert!(child.wait().success());
    let held = Array::<u8>::open(&name).unwrap();
    let o = shmkit(&["gc", "--prefix", &name]);
    assert!(text(&o).0.contains("no garbage"), "{}", text(&o).0);
    held.take_ownership();
    drop(held);

    // A temporary name of a dead pid.
    let dead = fork(|| 0);
    let pid = dead.pid();
    assert!(dead.wait().success());
    let tmp = format!(".shmkit-tmp.{pid}.0");
    let _cleanup_tmp = Cleanup(tmp.clone());
    std::fs::write(shm_path(&tmp), [0u8; 16]).unwrap();
    let o = shmkit(&["gc", "--yes", "--prefix", &tmp]);
    let out = text(&o).0;
    assert!(out.contains("temporary name of dead pid"), "{out}");
    assert!(!std::path::Path::new(&shm_path(&tmp)).exists());
}

#[test]
fn errors_say_what_to_do() {
    shmkit_testkit::require_exec!("errors_say_what_to_do");
    let _serial = serial();
    let o = shmkit(&["inspect", "/shmkit-test-no-such-segment"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).1.contains("shmkit ls"), "{}", text(&o).1);
    let o = shmkit(&["rm", "a/b"]);
    assert_eq!(o.status.code(), Some(1));
    let o = shmkit(&["bench", "--cases", "nope"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).1.contains("known cases"), "{}", text(&o).1);
    let o = shmkit(&["bench", "--cpus", "4096"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).1.contains("--cpus"));
}

const METRICS: &[&str] = &["rtt_ns", "ns_per_op", "msgs_per_s", "bytes_per_s"];

#[test]
fn bench_json_matches_the_documented_schema() {
    shmkit_testkit::require_exec!("bench_json_matches_the_documented_schema");
    let _serial = serial();
    let o = Command::new(env!("CARGO_BIN_EXE_shmkit"))
        .args(["bench", "--quick", "--format", "json", "--rounds", "2"])
        .env("SHMKIT_BENCH_OPS_SCALE", "0.005")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // Nothing but one JSON array on stdout.
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).expect("stdout is JSON");
    let rows = doc.as_array().expect("an array");
    assert!(!rows.is_empty());
    let cases: Vec<&str> = shmkit_cli::bench::cases::CASES
        .iter()
        .map(|c| c.name)
        .collect();
    for r in rows {
        let obj = r.as_object().expect("objects");
        let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "case",
                "cpu_ns_per_op",
                "impl",
                "median",
                "metric",
                "p99",
                "ratio_to_floor",
                "rounds"
            ]
        );
        assert!(
            obj["cpu_ns_per_op"].is_number() || obj["cpu_ns_per_op"].is_null(),
            "{r}"
        );
        assert!(cases.contains(&obj["case"].as_str().unwrap()), "{r}");
        assert!(!obj["impl"].as_str().unwrap().is_empty());
        assert!(METRICS.contains(&obj["metric"].as_str().unwrap()), "{r}");
        assert!(obj["median"].is_number(), "{r}");
        assert!(obj["p99"].is_number() || obj["p99"].is_null(), "{r}");
        assert!(obj["rounds"].is_u64(), "{r}");
        assert!(
            obj["ratio_to_floor"].is_number() || obj["ratio_to_floor"].is_null(),
            "{r}"
        );
    }
    // The floors and peers of this branch are all there.
    assert!(
        rows.iter()
            .any(|r| r["case"] == "delay_sweep_10us" && r["cpu_ns_per_op"].is_number()),
        "the delay sweep reports CPU time"
    );
    for (case, imp) in [
        ("busy_rtt", "floor"),
        ("blocking_rtt", "floor"),
        ("blocking_rtt", "eventfd"),
        ("lock_uncontended", "std"),
        ("lock_uncontended", "pthread_robust"),
        ("lock_handoff", "pthread_pshared"),
        ("spsc_throughput", "pipe"),
        ("pipe_bytes", "floor"),
        ("mpmc_pxc", "vyukov"),
        ("busy_rtt", "vyukov"),
        ("delay_sweep_10us", "pure_spin"),
        ("delay_sweep_10us", "adaptive"),
    ] {
        assert!(
            rows.iter().any(|r| r["case"] == case && r["impl"] == imp),
            "{case}/{imp} missing"
        );
    }
    let _ = own_prefix("cli");
}
