//! CPython's `_TestProcess`, `_TestSubclassingProcess`, `TestStartMethod`
//! and `TestForkAwareThreadLock` (Lib/test/_test_multiprocessing.py, 3.11)
//! ported to shmkit's process API, with real processes. Each test is named
//! after the Python test it ports; `docs/cpython-parity.md` lists what is
//! ported, what differs and what does not apply.

// Test names are `test_<python class>__<python test>`.
#![allow(non_snake_case)]

mod common;

use common::{fork, serial};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shmkit_posix::msg_queue::MessageQueue;
use shmkit_posix::process::{self, Builder, JoinError, StartMethod};
use shmkit_posix::{pipe, sync::Event};
use shmkit_testkit::{exec_unavailable, skip};

/// Generous bound on anything a child does (a busy 2-vCPU machine).
const LONG: Duration = Duration::from_secs(60);

/// The entry of children started with `Spawn` or `ForkServer`.
#[test]
#[ignore = "the entry point of spawned children; runs only in them"]
fn cpython_process_spawned_entry() {
    process::init();
    panic!("cpython_process_spawned_entry ran without a task: only spawned children run it");
}

fn fresh_run(method: StartMethod) -> Builder {
    fork().start_method(method).args([
        "cpython_process_spawned_entry",
        "--exact",
        "--include-ignored",
        "--test-threads=1",
        "-q",
    ])
}

fn gettid() -> i64 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::syscall(libc::SYS_gettid) }
}

// ---------------------------------------------------------------------
// _TestProcess

#[test]
fn test_process__current_is_the_main_process() {
    let current = process::current();
    assert_eq!(current.name, "MainProcess");
    assert_eq!(current.pid, std::process::id());
    assert!(
        process::parent().is_none(),
        "the first process has no parent"
    );
}

/// `Process(target=f, args=(q, arg))`: each argument reaches the child
/// intact, whatever its type (here through the child's queue, as in
/// Python, and as the argument of a function under every start method).
#[test]
fn test_process__args_argument() {
    let _serial = serial();
    let q = MessageQueue::<[u64; 2]>::anonymous((8, 16)).unwrap();
    for arg in [[1u64, 0], [u64::MAX, 7], [0, 0]] {
        let mut tx = q.sender().unwrap();
        let child = fork()
            .daemon(true)
            .spawn(move || u8::from(tx.send(&arg).is_ok()))
            .unwrap();
        assert_eq!(q.receiver().unwrap().recv_timeout(LONG).unwrap(), arg);
        assert_eq!(child.join().unwrap(), 1);
    }
    fn echo(a: [u32; 3]) -> [u32; 3] {
        a
    }
    let child = fork().spawn_fn(echo, [1, 2, 3]).unwrap();
    assert_eq!(child.join().unwrap(), [1, 2, 3]);
}

fn report_parent(_: u8) -> [u64; 2] {
    let p = process::parent().expect("a forked child knows its parent");
    [u64::from(p.pid), u64::from(p.name == "MainProcess")]
}

#[test]
fn test_process__parent_process_attributes() {
    let _serial = serial();
    assert!(process::parent().is_none());
    let (rx, tx) = pipe::one_way(4096).unwrap();
    let child = fork()
        .spawn(move || {
            let p = process::parent().expect("a forked child knows its parent");
            tx.send(&u64::from(p.pid)).unwrap();
            tx.send_bytes(p.name.as_bytes()).unwrap();
            u8::from(p.is_alive())
        })
        .unwrap();
    assert_eq!(
        child.join().unwrap(),
        1,
        "the parent is alive while it joins"
    );
    assert_eq!(rx.recv::<u64>().unwrap(), u64::from(std::process::id()));
    assert_eq!(rx.recv_bytes().unwrap(), process::current().name.as_bytes());
    // The same through a function (spawn_fn), and a grandchild's parent is
    // the child, by its given name.
    let child = fork().spawn_fn(report_parent, 0).unwrap();
    assert_eq!(child.join().unwrap(), [u64::from(std::process::id()), 1]);
    let child = fork()
        .name("Middle")
        .spawn(|| {
            let grandchild = Builder::new()
                .spawn(|| {
                    let p = process::parent().unwrap();
                    [u64::from(p.pid), u64::from(p.name == "Middle")]
                })
                .unwrap();
            let [pid, named] = grandchild.join().unwrap();
            u8::from(pid == u64::from(std::process::id()) && named == 1)
        })
        .unwrap();
    assert_eq!(child.join().unwrap(), 1);
}

/// A grandchild sees its parent (the child) alive, then, once the test
/// terminates the child, not alive: `parent_process().join(timeout)`
/// returns when the parent ends.
#[test]
fn test_process__parent_process() {
    let _serial = serial();
    let (rx, tx) = pipe::one_way(4096).unwrap();
    let mut child = fork()
        .spawn(move || {
            let grandchild = Builder::new()
                .spawn(move || {
                    let parent = process::parent().unwrap();
                    tx.send(&u8::from(parent.is_alive())).unwrap();
                    let ended = parent.join_timeout(LONG);
                    tx.send(&u8::from(parent.is_alive())).unwrap();
                    u8::from(ended)
                })
                .unwrap();
            // Wait for the terminate (an event nobody sets).
            Event::new().unwrap().wait();
            drop(grandchild);
            0u8
        })
        .unwrap();
    assert!(rx.poll(LONG).unwrap(), "the grandchild never reported");
    assert_eq!(rx.recv::<u8>().unwrap(), 1, "alive");
    child.terminate();
    assert!(child.join_timeout(LONG).is_some());
    assert!(rx.poll(LONG).unwrap(), "the grandchild never reported");
    assert_eq!(rx.recv::<u8>().unwrap(), 0, "not alive");
}

/// `test_process`: a named child is alive and listed in
/// `active_children()` while it runs, sends back its name and pid, exits
/// with 0, and is no longer listed once joined.
#[test]
fn test_process__process() {
    let _serial = serial();
    let q = MessageQueue::<u64>::anonymous((8, 8)).unwrap();
    let names = pipe::one_way(4096).unwrap();
    let (name_rx, name_tx) = names;
    let go = Event::new().unwrap();
    let mut tx = q.sender().unwrap();
    let mut p = fork()
        .name("SomeProcess")
        .daemon(true)
        .spawn({
            let go = go.clone();
            move || {
                go.wait();
                name_tx
                    .send_bytes(process::current().name.as_bytes())
                    .unwrap();
                tx.send(&u64::from(process::current().pid)).unwrap();
            }
        })
        .unwrap();
    assert_eq!(p.exitcode(), None);
    assert!(p.is_alive());
    assert!(process::active_children().contains(&p.pid()));
    assert_eq!(p.name(), "SomeProcess");
    go.set();
    assert_eq!(name_rx.recv_bytes().unwrap(), b"SomeProcess");
    assert_eq!(
        q.receiver().unwrap().recv_timeout(LONG).unwrap(),
        u64::from(p.pid())
    );
    assert_eq!(p.wait().unwrap(), 0);
    assert_eq!(p.exitcode(), Some(0));
    assert!(!p.is_alive());
    assert!(!process::active_children().contains(&p.pid()));
}

#[test]
fn test_process__process_mainthread_native_id() {
    let _serial = serial();
    let child = fork().spawn(gettid).unwrap();
    let theirs = child.join().unwrap();
    assert_ne!(theirs, gettid());
}

/// Python's `_kill_process`: `join(0)` returns at once while the child
/// runs; after `meth(p)` the join returns, the child is no longer alive or
/// listed, and its exit code is `-signal`.
fn kill_process(meth: impl FnOnce(&process::Child<u8>)) -> i32 {
    let mut p = fork()
        .daemon(true)
        .spawn(|| -> u8 {
            Event::new().unwrap().wait(); // sleeps "forever"
            0
        })
        .unwrap();
    assert!(p.is_alive());
    assert!(process::active_children().contains(&p.pid()));
    assert_eq!(p.exitcode(), None);
    let t0 = Instant::now();
    assert!(p.join_timeout(Duration::ZERO).is_none());
    assert!(t0.elapsed() < Duration::from_secs(5), "join(0) waited");
    assert!(p.is_alive());
    meth(&p);
    let t0 = Instant::now();
    let r = p.join_timeout(LONG).expect("the join returns");
    assert!(t0.elapsed() < Duration::from_secs(30));
    assert!(r.is_err());
    assert!(!p.is_alive());
    assert!(!process::active_children().contains(&p.pid()));
    p.exitcode().unwrap()
}

#[test]
fn test_process__terminate() {
    let _serial = serial();
    assert_eq!(kill_process(process::Child::terminate), -libc::SIGTERM);
}

#[test]
fn test_process__kill() {
    let _serial = serial();
    assert_eq!(kill_process(process::Child::kill), -libc::SIGKILL);
}

#[test]
fn test_process__active_children() {
    let _serial = serial();
    let go = Event::new().unwrap();
    let mut p = fork()
        .daemon(true)
        .spawn({
            let go = go.clone();
            move || go.wait()
        })
        .unwrap();
    assert!(process::active_children().contains(&p.pid()));
    go.set();
    p.wait().unwrap();
    assert!(!process::active_children().contains(&p.pid()));
}

/// An id in the recursion tree: `[depth, first, second]`.
fn recurse(q: &MessageQueue<[u8; 3]>, id: [u8; 3]) {
    q.sender().unwrap().send(&id).unwrap();
    if id[0] < 2 {
        for i in 0..2 {
            let mut next = id;
            next[0] += 1;
            next[usize::from(id[0]) + 1] = i;
            let child = Builder::new()
                .allow_threads(true)
                .spawn(|| recurse(q, next))
                .unwrap();
            child.join().unwrap();
        }
    }
}

/// Children start grandchildren, each reporting its id, in the order of a
/// depth-first walk. Python writes through one `Pipe(duplex=False)` end
/// shared by every process; a shmkit pipe end is single-producer (its
/// write position is private to the handle, so copies used by several
/// processes overwrite each other: see
/// `cpython_queue::a_pipe_sender_used_by_two_processes_in_turn_loses_nothing`),
/// so the processes share a message queue, each attaching its own sender.
#[test]
fn test_process__recursion() {
    let _serial = serial();
    let q = MessageQueue::<[u8; 3]>::anonymous((16, 3)).unwrap();
    recurse(&q, [0, 0, 0]);
    let mut rx = q.receiver().unwrap();
    let mut got = Vec::new();
    while !q.is_empty() {
        got.push(rx.try_recv().unwrap());
    }
    let want = [
        [0, 0, 0],
        [1, 0, 0],
        [2, 0, 0],
        [2, 0, 1],
        [1, 1, 0],
        [2, 1, 0],
        [2, 1, 1],
    ];
    assert_eq!(got, want);
}

/// Python's `sentinel` is a descriptor that becomes ready when the child
/// ends; shmkit's equivalent is `join_timeout(ZERO)` (not ready while the
/// child waits) and a bounded `join_timeout` (ready once it ended).
#[test]
fn test_process__sentinel() {
    let _serial = serial();
    let event = Event::new().unwrap();
    let mut p = fork()
        .spawn({
            let event = event.clone();
            move || u8::from(event.wait_timeout(Duration::from_secs(10)))
        })
        .unwrap();
    assert!(p.join_timeout(Duration::ZERO).is_none());
    event.set();
    assert_eq!(p.join_timeout(LONG).expect("ended").unwrap(), 1);
}

#[test]
fn test_process__many_processes() {
    let _serial = serial();
    const N: usize = 100;
    let procs: Vec<_> = (0..N).map(|_| fork().spawn(|| 0u8).unwrap()).collect();
    for mut p in procs {
        assert_eq!(p.wait().unwrap(), 0);
    }
    let never = Event::new().unwrap();
    let procs: Vec<_> = (0..N)
        .map(|_| {
            let never = never.clone();
            fork().spawn(move || never.wait()).unwrap()
        })
        .collect();
    for p in &procs {
        p.terminate();
    }
    for mut p in procs {
        assert_eq!(p.wait().unwrap(), -libc::SIGTERM);
    }
}

/// The parent keeps no reference to the target: what the closure captured
/// is dropped in the parent once the child is started.
#[test]
fn test_process__lose_target_ref() {
    let _serial = serial();
    let c = Arc::new(5u64);
    let weak = Arc::downgrade(&c);
    let child = fork().spawn(move || *c).unwrap();
    assert!(
        weak.upgrade().is_none(),
        "the parent still holds the target"
    );
    assert_eq!(child.join().unwrap(), 5);
}

fn fd_count_then_wait(event_name: [u8; 64]) -> u64 {
    let n = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count()) as u64;
    let len = event_name.iter().position(|&b| b == 0).unwrap_or(64);
    let name = std::str::from_utf8(&event_name[..len]).unwrap();
    let event = Event::open(name).unwrap();
    assert!(event.wait_timeout(Duration::from_secs(60)));
    n
}

/// Under `Spawn` (not `Fork`, which inherits every descriptor by design),
/// a child's descriptor count does not grow with the number of children
/// running.
#[test]
fn test_process__child_fd_inflation() {
    let _serial = serial();
    if let Some(why) = exec_unavailable() {
        skip("test_process__child_fd_inflation", &why);
        return;
    }
    let name = shmkit_testkit::unique_name("fdinfl");
    let event = Event::create(&name, ()).unwrap();
    let mut arg = [0u8; 64];
    arg[..name.len()].copy_from_slice(name.as_bytes());
    let procs: Vec<_> = (0..5)
        .map(|_| {
            fresh_run(StartMethod::Spawn)
                .spawn_fn(fd_count_then_wait, arg)
                .unwrap()
        })
        .collect();
    event.set();
    let counts: Vec<u64> = procs.into_iter().map(|p| p.join().unwrap()).collect();
    assert!(counts.iter().all(|&c| c == counts[0]), "{counts:?}");
}

/// A child whose standard streams are closed still exits with 0 (and a
/// panicking one with 1, its message still reaching the parent).
#[test]
fn test_process__error_on_stdio_flush() {
    let _serial = serial();
    for fd in [1, 2] {
        let event = Event::new().unwrap();
        let p = fork()
            .spawn({
                let event = event.clone();
                move || {
                    // SAFETY: closes a standard stream of this child only.
                    unsafe { libc::close(fd) };
                    println!("to a closed stream");
                    eprintln!("to a closed stream");
                    event.set();
                }
            })
            .unwrap();
        let mut p = p;
        assert_eq!(p.wait().unwrap(), 0);
        assert!(event.is_set());
        let p = fork()
            .spawn(move || -> u8 {
                // SAFETY: closes a standard stream of this child only.
                unsafe { libc::close(fd) };
                panic!("with fd {fd} closed")
            })
            .unwrap();
        match p.join() {
            Err(JoinError::Panicked { message }) => {
                assert_eq!(message, format!("with fd {fd} closed"));
            }
            other => panic!("{other:?}"),
        }
    }
}

fn set_after(ms: u64) -> u8 {
    std::thread::sleep(Duration::from_millis(ms));
    0
}

fn parent_pid(_: u8) -> u32 {
    // SAFETY: getppid has no preconditions.
    unsafe { libc::getppid() as u32 }
}

/// bpo-31308: once the forkserver is killed, new children still start
/// (the server is started again), and a child started before the kill
/// still reports an outcome instead of hanging.
fn forkserver_death(signal: libc::c_int) {
    if let Some(why) = exec_unavailable() {
        skip("test_process__forkserver_death", &why);
        return;
    }
    // A forkserver child's parent is the server.
    let server = fresh_run(StartMethod::ForkServer)
        .spawn_fn(parent_pid, 0)
        .unwrap()
        .join()
        .unwrap();
    let mut first = fresh_run(StartMethod::ForkServer)
        .spawn_fn(set_after, 500)
        .unwrap();
    // SAFETY: pidfd_open takes a pid and flags.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, server as libc::pid_t, 0) };
    assert!(pidfd >= 0, "{}", std::io::Error::last_os_error());
    // SAFETY: the server is our child (not reaped: the pidfd names it).
    assert_eq!(unsafe { libc::kill(server as libc::pid_t, signal) }, 0);
    // Wait for the server to be gone, without reaping it.
    let mut pfd = libc::pollfd {
        fd: pidfd as libc::c_int,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let ready = unsafe { libc::poll(&mut pfd, 1, 60_000) };
    // SAFETY: our descriptor.
    unsafe { libc::close(pidfd as libc::c_int) };
    assert_eq!(ready, 1, "the forkserver did not die");
    let second = fresh_run(StartMethod::ForkServer)
        .spawn_fn(set_after, 0)
        .unwrap();
    assert_eq!(second.join().unwrap(), 0);
    let again = fresh_run(StartMethod::ForkServer)
        .spawn_fn(parent_pid, 0)
        .unwrap()
        .join()
        .unwrap();
    assert_ne!(again, server, "a new server was started");
    // The child started before the kill: an outcome, in bounded time.
    assert!(first.join_timeout(LONG).is_some());
}

#[test]
fn test_process__forkserver_sigint() {
    let _serial = serial();
    forkserver_death(libc::SIGINT);
}

#[test]
fn test_process__forkserver_sigkill() {
    let _serial = serial();
    forkserver_death(libc::SIGKILL);
}

/// Found while porting the two tests above: the forkserver died with the
/// *thread* that started it (`PR_SET_PDEATHSIG` follows the forking
/// thread), so a later request from another thread failed ("the
/// forkserver sent no pid") or silently started a new server. It now lives
/// as long as the process that started it.
#[test]
fn forkserver_survives_the_thread_that_started_it() {
    let _serial = serial();
    if let Some(why) = exec_unavailable() {
        skip("forkserver_survives_the_thread_that_started_it", &why);
        return;
    }
    let (server, tid) = std::thread::spawn(|| {
        let server = fresh_run(StartMethod::ForkServer)
            .spawn_fn(parent_pid, 0)
            .unwrap()
            .join()
            .unwrap();
        (server, gettid())
    })
    .join()
    .unwrap();
    // Wait until the thread is fully gone (its exit has been processed:
    // a parent-death signal, if any, has been sent).
    let t0 = Instant::now();
    while std::path::Path::new(&format!("/proc/self/task/{tid}")).exists() {
        assert!(t0.elapsed() < LONG, "the thread never went away");
        std::thread::sleep(Duration::from_millis(1));
    }
    let again = fresh_run(StartMethod::ForkServer)
        .spawn_fn(parent_pid, 0)
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(again, server, "the forkserver was replaced");
}

// ---------------------------------------------------------------------
// _TestSubclassingProcess

/// Python's `_UpperCaser`: a child serving requests over a duplex pipe
/// until it gets the sentinel (here an empty message).
#[test]
fn test_subclassing_process__subclassing() {
    let _serial = serial();
    let (parent_conn, child_conn) = pipe::duplex(4096).unwrap();
    let uppercaser = fork()
        .daemon(true)
        .spawn(move || {
            while let Ok(s) = child_conn.recv_bytes() {
                if s.is_empty() {
                    break;
                }
                child_conn.send_bytes(&s.to_ascii_uppercase()).unwrap();
            }
            child_conn.close();
        })
        .unwrap();
    let submit = |s: &[u8]| {
        parent_conn.send_bytes(s).unwrap();
        parent_conn.recv_bytes().unwrap()
    };
    assert_eq!(submit(b"hello"), b"HELLO");
    assert_eq!(submit(b"world"), b"WORLD");
    parent_conn.send_bytes(b"").unwrap();
    uppercaser.join().unwrap();
    // The child closed its end: EOF.
    assert_eq!(parent_conn.recv_bytes(), Err(pipe::RecvError::Eof));
}

/// Python flushes the child's stderr with the traceback; shmkit gives the
/// panic message back to the parent in `JoinError::Panicked`.
#[test]
fn test_subclassing_process__stderr_flush() {
    let _serial = serial();
    let p = fork()
        .spawn(|| -> u32 {
            let zero = std::hint::black_box(0u32);
            1 / zero // MARKER
        })
        .unwrap();
    match p.join() {
        Err(JoinError::Panicked { message }) => assert!(message.contains("divide by zero")),
        other => panic!("{other:?}"),
    }
}

/// `sys.exit(n)` in the child: its code is the exit code (and a panic's
/// is 1, as an uncaught exception's).
#[test]
fn test_subclassing_process__sys_exit() {
    let _serial = serial();
    for code in [1, 0, 8] {
        let mut p = fork()
            .daemon(true)
            .spawn(move || -> u8 { std::process::exit(code) })
            .unwrap();
        assert_eq!(p.wait().unwrap(), code);
    }
    let mut p = fork().spawn(|| -> u8 { panic!("reason") }).unwrap();
    assert_eq!(p.wait().unwrap(), 1);
}

// ---------------------------------------------------------------------
// TestStartMethod

fn who_am_i(_: u8) -> u32 {
    std::process::id()
}

/// `set_start_method` / `get_start_method` round-trip, and a child started
/// with each method runs (`check_context`).
#[test]
fn test_start_method__set_get() {
    let _serial = serial();
    let old = process::start_method();
    assert_eq!(old, StartMethod::Fork, "Fork is the default on Linux");
    let methods = if exec_unavailable().is_some() {
        vec![StartMethod::Fork]
    } else {
        vec![
            StartMethod::Fork,
            StartMethod::Spawn,
            StartMethod::ForkServer,
        ]
    };
    for method in methods {
        process::set_start_method(method);
        assert_eq!(process::start_method(), method);
        let child = fresh_run(method).spawn_fn(who_am_i, 0).unwrap();
        let pid = child.pid();
        assert_eq!(child.join().unwrap(), pid);
    }
    process::set_start_method(old);
    assert_eq!(process::start_method(), old);
}

/// gh-108520: a child can pass what it got on to a grandchild it starts.
#[test]
fn test_start_method__nested_startmethod() {
    let _serial = serial();
    let q = MessageQueue::<u8>::anonymous((8, 1)).unwrap();
    let child = fork()
        .spawn({
            let q = q.clone();
            move || {
                q.sender().unwrap().send(&2).unwrap();
                let grandchild = Builder::new()
                    .spawn(move || u8::from(q.sender().unwrap().send(&1).is_ok()))
                    .unwrap();
                grandchild.join().unwrap()
            }
        })
        .unwrap();
    assert_eq!(child.join().unwrap(), 1);
    let mut rx = q.receiver().unwrap();
    let mut got = Vec::new();
    while !q.is_empty() {
        got.push(rx.try_recv().unwrap());
    }
    got.sort_unstable();
    assert_eq!(got, [1, 2]);
}

/// Selected by `test_no_fork_bomb__noforkbomb` in a fresh run that skips
/// `init`: starting another fresh run from here must be refused.
#[test]
#[ignore = "runs only in a fresh run started by test_no_fork_bomb__noforkbomb"]
fn cpython_process_bomb_entry() {
    // No `process::init()` here, on purpose.
    match fresh_bomb().spawn_fn(who_am_i, 0) {
        Err(process::SpawnError::Bootstrapping) => {}
        Ok(child) => {
            child.kill();
            panic!("a fresh run that skipped init started another");
        }
        Err(e) => panic!("{e}"),
    }
}

fn fresh_bomb() -> Builder {
    fork().start_method(StartMethod::Spawn).args([
        "cpython_process_bomb_entry",
        "--exact",
        "--include-ignored",
        "--test-threads=1",
        "-q",
    ])
}

/// `TestNoForkBomb`: a fresh run whose `main` does not call `init` and
/// starts children itself is refused (Python's RuntimeError about the
/// bootstrapping phase) instead of re-running `main` without end: the
/// child runs the test above, which passes (exit 0, no task run).
#[test]
fn test_no_fork_bomb__noforkbomb() {
    let _serial = serial();
    if let Some(why) = exec_unavailable() {
        skip("test_no_fork_bomb__noforkbomb", &why);
        return;
    }
    let mut child = fresh_bomb().spawn_fn(who_am_i, 0).unwrap();
    // 0: the child's test passed (its start was refused); 101: it failed.
    assert_eq!(child.wait().unwrap(), 0);
    match child.join() {
        Err(JoinError::NotStarted) => {}
        other => panic!("{other:?}"),
    }
}

// ---------------------------------------------------------------------
// TestForkAwareThreadLock

/// Issue 17555: per-process bookkeeping must not grow with each generation
/// of forks. shmkit's is the registry of children: five generations deep,
/// each child starts with none listed, and the deepest reports how many
/// it has (none).
fn generation(n: u32, tx: &pipe::PipeSender) -> u64 {
    let inherited = process::active_children().len() as u64;
    if n > 1 {
        let child = Builder::new().spawn(|| generation(n - 1, tx)).unwrap();
        inherited + child.join().unwrap()
    } else {
        tx.send(&inherited).unwrap();
        inherited
    }
}

#[test]
fn test_fork_aware_thread_lock__lock() {
    let _serial = serial();
    let (rx, tx) = pipe::one_way(4096).unwrap();
    let p = fork().spawn(move || generation(5, &tx)).unwrap();
    assert_eq!(rx.recv::<u64>().unwrap(), 0);
    assert_eq!(p.join().unwrap(), 0, "a generation inherited children");
}
