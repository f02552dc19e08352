//! Every example runs, does what its Python original does (checked on its
//! output), and stays within 1.5× the Python program's lines — so none of
//! them can rot. The Python originals are in `examples/python/`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The example binaries `cargo test` built next to this test binary.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/examples-<hash> -> target/<profile>/examples/<name>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("a target directory")
        .join("examples");
    dir.join(name)
}

/// Runs example `name` (at most a minute) and returns its stdout.
fn run(name: &str) -> String {
    let path = example(name);
    assert!(
        path.exists(),
        "{} was not built: run the tests with `cargo test` (which builds the examples)",
        path.display()
    );
    let mut child = Command::new(&path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the example");
    let t0 = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        if t0.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("{name} ran for a minute");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let out = child.wait_with_output().expect("output");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{name} failed ({:?}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn count(out: &str, needle: &str) -> usize {
    out.lines().filter(|l| l.contains(needle)).count()
}

/// Lines of code: non-blank, not a comment (nor a Python docstring).
fn loc(path: &str) -> usize {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let python = path.ends_with(".py");
    let mut in_doc = false;
    text.lines()
        .map(str::trim)
        .filter(|l| {
            if l.is_empty() {
                return false;
            }
            if python {
                if l.starts_with("\"\"\"") {
                    if !(l.len() > 3 && l.ends_with("\"\"\"")) {
                        in_doc = !in_doc;
                    }
                    return false;
                }
                !in_doc && !l.starts_with('#')
            } else {
                !l.starts_with("//")
            }
        })
        .count()
}

#[test]
fn every_example_is_at_most_one_and_a_half_times_its_python_original() {
    let mut checked = 0;
    for entry in std::fs::read_dir("examples/python").expect("examples/python") {
        let py = entry.expect("entry").path();
        let name = py.file_stem().and_then(|s| s.to_str()).expect("a name");
        let rs = format!("examples/{name}.rs");
        let (p, r) = (loc(py.to_str().expect("utf-8")), loc(&rs));
        assert!(
            r * 2 <= p * 3,
            "{rs}: {r} lines for Python's {p} (more than 1.5×)"
        );
        checked += 1;
    }
    assert!(
        checked >= 12,
        "only {checked} examples have a Python original"
    );
}

#[test]
fn process_basic_and_subclass() {
    for name in ["process_basic", "process_subclass"] {
        let out = run(name);
        for i in 1..=3 {
            assert_eq!(
                count(&out, &format!("this is process {i}")),
                1,
                "{name}:\n{out}"
            );
        }
        assert_eq!(count(&out, "main pid:"), 1, "{name}:\n{out}");
    }
}

#[test]
fn bank_balances_end_where_they_began() {
    assert_eq!(run("bank").trim(), "100");
    let out = run("bank_rlock");
    assert_eq!(count(&out, "drew 800"), 1, "{out}");
    assert_eq!(count(&out, "refused"), 2, "{out}");
    assert!(out.contains("balance 100"), "{out}");
}

#[test]
fn restaurant_seats_at_most_ten() {
    let out = run("restaurant");
    assert_eq!(count(&out, " acquire"), 20, "{out}");
    assert_eq!(count(&out, " release"), 20, "{out}");
    // Each line is printed while the table is held, so the running count
    // in output order is the number eating.
    let mut eating = 0i32;
    let mut most = 0;
    for line in out.lines() {
        if line.ends_with(" acquire") {
            eating += 1;
        } else if line.ends_with(" release") {
            eating -= 1;
        }
        most = most.max(eating);
    }
    assert!(most <= 10, "{most} ate at once:\n{out}");
    assert!(most >= 2, "nobody ate at the same time:\n{out}");
}

#[test]
fn event_releases_both_waiters_and_the_timed_one_times_out() {
    let out = run("event");
    assert_eq!(count(&out, "wait_for_event: e.is_set()-> true"), 2, "{out}");
    assert_eq!(
        count(&out, "wait_for_event_timeout: e.is_set()-> false"),
        1,
        "{out}"
    );
    assert!(out.contains("main: event is set"), "{out}");
}

#[test]
fn barrier_elects_one_leader_after_everyone_arrived() {
    let out = run("barrier");
    assert_eq!(count(&out, "is the leader"), 1, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    let last_before = lines
        .iter()
        .rposition(|l| l.contains("before"))
        .expect("before");
    let first_after = lines
        .iter()
        .position(|l| l.contains("after"))
        .expect("after");
    assert!(last_before < first_after, "someone passed early:\n{out}");
}

#[test]
fn condition_hands_over_ten_items() {
    assert!(run("condition").contains("consumer took 10"));
}

#[test]
fn globals_are_per_process_but_a_value_is_shared() {
    let out = run("globals");
    assert!(out.contains("child x: 0"), "{out}");
    assert!(out.contains("main x: 100, shared: 0"), "{out}");
    let out = run("value_array");
    assert!(out.contains("before: num 0 arr [0, 1, 2"), "{out}");
    assert!(out.contains("after: num 2.5 arr [5, 1, 2"), "{out}");
}

#[test]
fn current_process_names_and_exit_codes() {
    let out = run("current_process");
    assert!(out.contains("main: MainProcess"), "{out}");
    for i in 0..2 {
        assert!(out.contains(&format!("child: worker-{i} true")), "{out}");
        assert!(out.contains(&format!("joined worker-{i} 0")), "{out}");
    }
}

#[test]
fn a_daemon_dies_with_its_parent() {
    let out = run("daemon");
    assert!(out.contains("daemon: still here"), "{out}");
    let pid: u32 = out
        .lines()
        .find_map(|l| l.strip_prefix("main: exiting; the daemon "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no daemon pid in:\n{out}"));
    let t0 = Instant::now();
    // Not our child: look until /proc has it gone or a zombie.
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat
            .rsplit(')')
            .next()
            .and_then(|r| r.split_whitespace().next());
        if matches!(state, None | Some("Z" | "X")) {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the daemon outlived main"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn pool_apply_async_runs_three_calls_in_workers() {
    let out = run("pool_apply_async");
    for arg in ["default", "positional", "keyword"] {
        assert_eq!(
            count(&out, &format!("running, argument: {arg}")),
            1,
            "{out}"
        );
    }
    let main = std::process::id().to_string();
    assert!(!out.contains(&format!("({main})")), "{out}");
}

#[test]
fn pool_map_sums_squares_over_chunks() {
    assert_eq!(run("pool_map").trim(), "Total square sum: 385");
}

#[test]
fn pool_files_downloads_then_processes_three_files() {
    let out = run("pool_files");
    assert_eq!(count(&out, "Downloaded "), 3, "{out}");
    assert_eq!(count(&out, "Processed "), 3, "{out}");
    // "contents of file N\n" is 19 bytes, written 1, 2 and 3 times.
    assert!(out.contains("processed bytes: 114"), "{out}");
    // Every download came before every processing (map after starmap).
    let lines: Vec<&str> = out.lines().collect();
    let last_download = lines.iter().rposition(|l| l.starts_with("Downloaded"));
    let first_process = lines.iter().position(|l| l.starts_with("Processed"));
    assert!(last_download < first_process, "{out}");
}

#[test]
fn two_children_return_values_through_a_queue() {
    let out = run("queue_results");
    assert!(out.contains("results [1, 4]"), "{out}");
    let out = run("struct_queue");
    assert!(out.contains("readings 10 sum 10"), "{out}");
}

#[test]
fn a_pipe_carries_ten_buns_then_eof_and_a_child_reports_the_time() {
    let out = run("pipe_eof");
    for i in 0..10 {
        assert!(out.contains(&format!("c1 got bun {i}\n")), "{out}");
    }
    assert!(out.ends_with("main process\n"), "{out}");
    let out = run("pipe_report");
    assert!(out.contains("I see Mike's watch says: "), "{out}");
    assert!(out.contains(" s since 1970"), "{out}");
}

#[test]
fn the_sensor_pipeline_hands_three_frames_to_the_detector() {
    let out = run("sensor_pipeline");
    for f in 0..3u64 {
        let line = format!(
            "frame {f} results: {} {} {} (pixel {f})",
            f + 10,
            f + 20,
            f + 30
        );
        assert!(out.contains(&line), "{out}");
    }
}

#[test]
fn a_spawned_child_attaches_the_queue_by_name() {
    shmkit_testkit::require_exec!("a_spawned_child_attaches_the_queue_by_name");
    let out = run("spawn_queue");
    assert!(out.contains("started a new process: ("), "{out}");
    assert!(out.contains("got Python"), "{out}");
}

#[test]
fn joinable_queue_workers_finish_every_task_before_join_returns() {
    let out = run("joinable_queue");
    for i in 0..10 {
        assert_eq!(count(&out, &format!("worker did {i}")), 1, "{out}");
    }
    assert!(out.ends_with("all tasks done\n"), "{out}");
}
