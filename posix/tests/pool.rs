//! The process `Pool` (issue 11) with real worker processes: `map`,
//! `imap`, `imap_unordered`, `apply_async`, `starmap`, a worker killed by
//! `SIGKILL` (and one by `SIGSEGV`) in the middle of a `map`, a panicking
//! task, bad input, and the same pool test under the `spawn` and
//! `forkserver` start methods.

mod common;

use common::serial;
use std::collections::BTreeSet;
use std::time::Duration;

use shmkit_posix::process::pool::{self, Builder};
use shmkit_posix::process::{self, Pool, PoolError, StartMethod, TaskError};
use shmkit_testkit::{exec_unavailable, skip};

/// Tests run on libtest's threads: forking is allowed explicitly (workers
/// only run the pool's loop and these functions), and the tests run one
/// at a time (a child forked while another test thread panics would
/// inherit the panic machinery's lock).
fn builder(n: usize) -> Builder {
    Pool::builder()
        .processes(n)
        .process(process::Builder::new().allow_threads(true))
}

/// The entry of workers started with `Spawn` or `ForkServer`.
#[test]
#[ignore = "the entry point of spawned pool workers; runs only in them"]
fn pool_spawned_entry() {
    process::init();
    panic!("pool_spawned_entry ran without a task: only spawned workers run it");
}

fn fresh_run(method: StartMethod) -> Builder {
    builder(2).process(
        process::Builder::new()
            .allow_threads(true)
            .start_method(method)
            .args([
                "pool_spawned_entry",
                "--exact",
                "--include-ignored",
                "--test-threads=1",
                "-q",
            ]),
    )
}

fn square(x: u64) -> u64 {
    x * x
}

/// Kills its own worker with `signal` on 13, else squares.
fn square_or_die(x: u64) -> u64 {
    if x == 13 || x == 1013 {
        let sig = if x == 13 {
            libc::SIGKILL
        } else {
            libc::SIGSEGV
        };
        // SAFETY: the default action (Rust's runtime handles SIGSEGV to
        // report stack overflows), then a signal to this very process.
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
            libc::raise(sig);
        }
    }
    x * x
}

fn square_or_panic(x: u64) -> u64 {
    assert!(x != 7, "seven is not allowed");
    x * x
}

fn add(a: u64, b: u64) -> u64 {
    a + b
}

fn sleepy(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// Zombies among this process's children (state `Z` in /proc).
fn zombies() -> Vec<u32> {
    let me = std::process::id();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r.trim().to_owned()) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.first() == Some(&"Z")
            && fields.get(1).and_then(|p| p.parse::<u32>().ok()) == Some(me)
        {
            out.push(pid);
        }
    }
    out
}

fn values(results: Vec<Result<u64, TaskError>>) -> Vec<u64> {
    results.into_iter().map(Result::unwrap).collect()
}

/// The pool test every start method runs.
fn map_apply_and_friends(pool: &Pool, what: &str) {
    let expect: Vec<u64> = (0..1000u64).map(|x| x * x).collect();
    assert_eq!(
        values(pool.map(square, 0..1000u64).unwrap()),
        expect,
        "{what}"
    );
    assert_eq!(
        values(pool.map_chunked(square, 0..1000u64, 1).unwrap()),
        expect,
        "{what}"
    );
    let r = pool.apply_async(square, 12u64).unwrap();
    assert_eq!(r.get(), Ok(144), "{what}");
    let got: Vec<u64> = pool
        .imap(square, 0..100u64)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(got, expect[..100], "{what}");
}

#[test]
fn map_of_squares_and_default_chunking() {
    let _s = serial();
    assert_eq!(pool::default_chunksize(100_000, 2), 12_500);
    assert_eq!(pool::default_chunksize(10, 4), 1);
    assert_eq!(pool::default_chunksize(17, 1), 5);
    let pool = builder(3).build().unwrap();
    assert_eq!(pool.pids().len(), 3);
    map_apply_and_friends(&pool, "fork");
    assert_eq!(pool.map(square, Vec::<u64>::new()).unwrap().len(), 0);
    // More than one message's worth: chunks are split to fit.
    let big: Vec<u64> = (0..300_000u64).collect();
    let got = values(pool.map_chunked(square, big.clone(), 200_000).unwrap());
    assert!(got.iter().zip(&big).all(|(g, x)| *g == x * x));
}

#[test]
fn imap_keeps_order_and_imap_unordered_gives_everything() {
    let _s = serial();
    let pool = builder(3).build().unwrap();
    // Early tasks are the slow ones: finish order differs from input order.
    let delays = [40u64, 30, 20, 10, 0, 0, 0, 0];
    let ordered: Vec<u64> = pool
        .imap(sleepy, delays)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(ordered, delays);
    let mut seen = BTreeSet::new();
    for (i, r) in pool.imap_unordered(square, 0..500u64).unwrap() {
        assert_eq!(r.unwrap(), (i as u64) * (i as u64));
        assert!(seen.insert(i), "index {i} given twice");
    }
    assert_eq!(seen, (0..500).collect());
}

#[test]
fn apply_async_get_timeout_ready_successful() {
    let _s = serial();
    let pool = builder(2).build().unwrap();
    let slow = pool.apply_async(sleepy, 400u64).unwrap();
    assert_eq!(
        slow.get_timeout(Duration::from_millis(10)),
        Err(TaskError::Timeout)
    );
    assert!(!slow.ready());
    assert_eq!(slow.successful(), None);
    slow.wait();
    assert_eq!(slow.successful(), Some(true));
    assert_eq!(slow.get_timeout(Duration::from_secs(10)), Ok(400));
    assert_eq!(
        slow.get_timeout(Duration::from_secs(10)),
        Err(TaskError::Taken)
    );
    // Many at once, Python's `[p.apply_async(job, (i,)) for i in ...]`.
    let all: Vec<_> = (0..20u64)
        .map(|i| pool.apply_async(square, i).unwrap())
        .collect();
    let got: Vec<u64> = all.into_iter().map(|r| r.get().unwrap()).collect();
    assert_eq!(got, (0..20u64).map(|i| i * i).collect::<Vec<_>>());
    assert_eq!(pool.apply(square, 9u64).unwrap(), 81);
}

#[test]
fn starmap_pairs() {
    let _s = serial();
    let pool = builder(2).build().unwrap();
    let got = values(
        pool.starmap(add, (0..100u64).map(|i| (i, 1000 * i)))
            .unwrap(),
    );
    assert_eq!(got, (0..100u64).map(|i| 1001 * i).collect::<Vec<_>>());
}

#[test]
fn a_worker_killed_mid_map_fails_only_its_tasks() {
    let _s = serial();
    let pool = builder(2).build().unwrap();
    let before: BTreeSet<u32> = pool.pids().into_iter().collect();
    // Chunks of 4: the chunk holding 13 (12..16) dies with its worker.
    let results = pool.map_chunked(square_or_die, 0..64u64, 4).unwrap();
    let mut died = BTreeSet::new();
    for (i, r) in results.iter().enumerate() {
        let i = i as u64;
        if (12..16).contains(&i) {
            match r {
                Err(e @ TaskError::WorkerDied { pid, signal: 9 }) => {
                    assert!(before.contains(pid), "{pid} is not one of {before:?}");
                    assert!(e.to_string().contains(&format!("worker {pid}")), "{e}");
                    assert!(e.to_string().contains("SIGKILL"), "{e}");
                    died.insert(*pid);
                }
                other => panic!("task {i}: {other:?}"),
            }
        } else {
            assert_eq!(r, &Ok(i * i), "task {i}");
        }
    }
    assert_eq!(died.len(), 1);
    // Replaced: as many workers, the dead one not among them.
    let after: BTreeSet<u32> = pool.pids().into_iter().collect();
    assert_eq!(after.len(), 2);
    assert!(after.is_disjoint(&died));
    // A segfault is named too, and the pool still works.
    let r = pool.map_chunked(square_or_die, 1000..1020u64, 1).unwrap();
    for (i, r) in (1000..1020u64).zip(&r) {
        if i == 1013 {
            assert!(
                matches!(r, Err(TaskError::WorkerDied { signal: 11, .. })),
                "{r:?}"
            );
        } else {
            assert_eq!(r, &Ok(i * i));
        }
    }
    assert_eq!(values(pool.map(square, 0..100u64).unwrap())[99], 99 * 99);
    assert_eq!(zombies(), Vec::<u32>::new(), "zombies left");
    pool.close();
    pool.join().unwrap();
    assert_eq!(zombies(), Vec::<u32>::new(), "zombies left after join");
}

#[test]
fn a_panicking_task_fails_alone() {
    let _s = serial();
    let pool = builder(2).build().unwrap();
    let pids = pool.pids();
    let results = pool.map_chunked(square_or_panic, 0..20u64, 5).unwrap();
    for (i, r) in results.into_iter().enumerate() {
        if i == 7 {
            match r {
                Err(TaskError::Panicked { message }) => {
                    assert!(message.contains("seven is not allowed"), "{message}");
                }
                other => panic!("{other:?}"),
            }
        } else {
            assert_eq!(r, Ok((i * i) as u64));
        }
    }
    assert_eq!(pool.pids(), pids, "a panic does not cost the worker");
}

#[test]
fn bad_input_is_a_clear_error() {
    let _s = serial();
    assert!(matches!(Pool::new(0), Err(PoolError::NoWorkers)));
    let pool = builder(1).build().unwrap();
    let e = pool.map_chunked(square, 0..10u64, 0).unwrap_err();
    assert!(matches!(e, PoolError::ZeroChunksize), "{e}");
    assert!(e.to_string().contains("chunk size"), "{e}");
    assert!(matches!(pool.join(), Err(PoolError::StillRunning)));
    // An argument larger than a message fails alone.
    #[derive(Clone, Copy, shmkit_posix::Pod, shmkit_posix::Zeroable)]
    #[repr(C)]
    struct Big([[u8; 4096]; 512]);
    fn len_of(v: Big) -> u64 {
        v.0.len() as u64
    }
    // (a 2 MiB value: built on a thread with room for it on its stack)
    let r = std::thread::scope(|s| {
        std::thread::Builder::new()
            .stack_size(64 << 20)
            .spawn_scoped(s, || {
                pool.apply_async(len_of, Big([[0; 4096]; 512]))
                    .unwrap()
                    .get()
            })
            .unwrap()
            .join()
            .unwrap()
    });
    assert!(matches!(r, Err(TaskError::TooLarge { .. })), "{r:?}");
    assert!(r.unwrap_err().to_string().contains("does not fit"));
    pool.close();
    let e = pool.map(square, 0..10u64).unwrap_err();
    assert!(matches!(e, PoolError::Closed), "{e}");
    assert!(e.to_string().contains("closed"), "{e}");
    pool.join().unwrap();
    let e = pool.apply_async(square, 1u64).err().unwrap();
    assert!(matches!(e, PoolError::Terminated), "{e}");

    let pool = builder(1).build().unwrap();
    let pending = pool.apply_async(sleepy, 10_000u64).unwrap();
    pool.terminate();
    assert_eq!(pending.get(), Err(TaskError::Terminated));
    assert!(matches!(
        pool.map(square, [1u64]),
        Err(PoolError::Terminated)
    ));
    assert_eq!(zombies(), Vec::<u32>::new());
}

fn count_init() {
    INITIALIZED.store(1, std::sync::atomic::Ordering::Relaxed);
}

static INITIALIZED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn initialized(_: u8) -> u64 {
    INITIALIZED.load(std::sync::atomic::Ordering::Relaxed) + u64::from(std::process::id()) * 10
}

#[test]
fn initializer_and_maxtasksperchild() {
    let _s = serial();
    let pool = builder(2)
        .initializer(count_init)
        .maxtasksperchild(2)
        .build()
        .unwrap();
    let results = values(pool.map_chunked(initialized, [0u8; 12], 1).unwrap());
    // Every worker ran the initializer.
    assert!(results.iter().all(|r| r % 10 == 1), "{results:?}");
    // And none ran more than 2 tasks.
    let mut per_pid = std::collections::BTreeMap::new();
    for r in &results {
        *per_pid.entry(r / 10).or_insert(0) += 1;
    }
    assert!(per_pid.values().all(|&n| n <= 2), "{per_pid:?}");
    assert!(per_pid.len() >= 6, "{per_pid:?}");
    drop(pool);
    assert_eq!(zombies(), Vec::<u32>::new());
}

#[test]
fn dropping_the_pool_terminates_it() {
    let _s = serial();
    let pool = builder(2).build().unwrap();
    let pids = pool.pids();
    let _pending = pool.apply_async(sleepy, 30_000u64).unwrap();
    drop(pool);
    for pid in pids {
        // SAFETY: signal 0 only checks existence.
        let alive = unsafe { libc::kill(pid as i32, 0) } == 0;
        assert!(!alive, "worker {pid} outlived its pool");
    }
}

#[test]
fn the_same_pool_test_under_spawn_and_forkserver() {
    let _s = serial();
    for method in [StartMethod::Spawn, StartMethod::ForkServer] {
        if let Some(why) = exec_unavailable() {
            skip(
                &format!("the_same_pool_test_under_spawn_and_forkserver ({method:?})"),
                &why,
            );
            continue;
        }
        let prefix = format!("shmkit-pool-{}-", std::process::id());
        let pool = fresh_run(method).build().unwrap();
        map_apply_and_friends(&pool, &format!("{method:?}"));
        // A killed worker under this method too.
        let r = pool.map_chunked(square_or_die, 0..20u64, 1).unwrap();
        assert!(
            matches!(r[13], Err(TaskError::WorkerDied { signal: 9, .. })),
            "{:?}",
            r[13]
        );
        assert_eq!(r[12], Ok(144));
        assert_eq!(values(pool.map(square, 0..10u64).unwrap())[9], 81);
        drop(pool);
        let left = shmkit_testkit::leftover_segments(&prefix);
        assert!(left.is_empty(), "{method:?}: segments left: {left:?}");
        assert_eq!(zombies(), Vec::<u32>::new(), "{method:?}");
    }
}

#[test]
fn the_handles_can_move_to_other_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Pool>();
    send_sync::<process::AsyncResult<u64>>();
    send_sync::<pool::MapResult<u64>>();
    fn send<T: Send>() {}
    send::<pool::Imap<u64>>();
    send::<pool::ImapUnordered<u64>>();
}

#[cfg(feature = "serde")]
fn bytes_of_len(n: u64) -> shmkit_posix::message::Serde<Vec<u8>> {
    shmkit_posix::message::Serde(vec![7; n as usize])
}

#[test]
#[cfg(feature = "serde")]
fn a_result_larger_than_a_message_fails_alone() {
    let _s = serial();
    let pool = builder(1).build().unwrap();
    let r = pool
        .map_chunked(bytes_of_len, [10u64, 3 << 20, 20], 3)
        .unwrap();
    assert_eq!(r[0].as_ref().map(|v| v.len()), Ok(10));
    match &r[1] {
        Err(e @ TaskError::TooLarge { len, max }) => {
            assert!(*len > 3 << 20 && *max < 1 << 20, "{e}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(r[2].as_ref().map(|v| v.len()), Ok(20));
}

/// A page of a `u64`, repeated: a large `Pod` result (8 KiB).
fn page_of(x: u64) -> [u64; 1024] {
    assert!(x % 100 != 42 && x % 100 != 43, "{x} is not allowed");
    [x; 1024]
}

/// Fixed-length (`Pod`) arguments and results travel packed: a chunk whose
/// results outgrow one message goes back in several, and tasks that panic
/// (two in a row, in the middle) fail alone between packed runs.
#[test]
fn packed_chunks_span_messages_and_panics_split_them() {
    let _s = serial();
    let pool = builder(2).build().unwrap();
    // 300 results of 8 KiB per chunk: 2.4 MB, more than two messages.
    let results = pool.map_chunked(page_of, 0..600u64, 300).unwrap();
    assert_eq!(results.len(), 600);
    for (i, r) in results.into_iter().enumerate() {
        let i = i as u64;
        if i % 100 == 42 || i % 100 == 43 {
            match r {
                Err(TaskError::Panicked { message }) => {
                    assert!(message.contains("is not allowed"), "{i}: {message}");
                }
                other => panic!("{i}: {other:?}"),
            }
        } else {
            let page = r.unwrap_or_else(|e| panic!("{i}: {e}"));
            assert!(page.iter().all(|&v| v == i), "{i}: wrong page");
        }
    }
}
