//! Python's bank example with real processes: two child processes deposit
//! and withdraw 100 times each from a shared balance under a robust lock
//! (`Value('i', 200, lock=True)`); the balance ends where it started.
//!
//! Run: `cargo run --release --example bank`

use shmkit::locked::LockedValue;

fn child(work: impl FnOnce() -> i32) -> libc::pid_t {
    // SAFETY: the example is single-threaded when it forks; the child runs
    // `work` and exits without unwinding into the parent's state.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let code = work();
        // SAFETY: ends the child immediately.
        unsafe { libc::_exit(code) };
    }
    pid
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // An anonymous segment: children created by fork share it.
    let balance = LockedValue::<i64>::anonymous(200)?;
    let deposit = child(|| {
        for _ in 0..100 {
            match balance.lock() {
                Ok(g) => g.update(|b| *b += 5),
                Err(_) => return 1,
            }
        }
        0
    });
    let withdraw = child(|| {
        for _ in 0..100 {
            match balance.lock() {
                Ok(g) => g.update(|b| *b -= 5),
                Err(_) => return 1,
            }
        }
        0
    });
    for pid in [deposit, withdraw] {
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
    }
    let end = balance.lock().map_err(|e| e.to_string())?.get();
    println!("final balance: {end}");
    assert_eq!(end, 200);
    Ok(())
}
