//! The fuzzer binary's `kill(2)` refuses to signal other processes (see
//! the crate docs): a forged owner id must never make shmkit signal anyone.

/// Forks a child that runs `body` and exits 0; returns its pid.
fn fork(body: impl FnOnce()) -> libc::pid_t {
    // SAFETY: the child only runs `body` and `_exit`s.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        body();
        // SAFETY: ends the child without running the parent's destructors.
        unsafe { libc::_exit(0) };
    }
    pid
}

/// How `pid` ended: `Ok(code)` or `Err(signal)`.
fn wait(pid: libc::pid_t) -> Result<i32, i32> {
    let mut status = 0;
    // SAFETY: waits for our own child; `status` is writable.
    let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(rc, pid, "waitpid: {}", std::io::Error::last_os_error());
    if libc::WIFEXITED(status) {
        Ok(libc::WEXITSTATUS(status))
    } else {
        Err(libc::WTERMSIG(status))
    }
}

#[test]
fn signalling_another_process_aborts_and_probing_does_not() {
    // Make sure the interposed symbol is linked in.
    let _ = shmkit_fuzz::kill as unsafe extern "C" fn(libc::pid_t, libc::c_int) -> libc::c_int;
    // SAFETY: pause only waits for a signal.
    let victim = fork(|| unsafe {
        libc::pause();
    });
    let prober = fork(|| {
        // SAFETY: signal 0 only probes.
        assert_eq!(unsafe { libc::kill(victim, 0) }, 0);
    });
    assert_eq!(wait(prober), Ok(0), "kill(pid, 0) must go through");
    let signaller = fork(|| {
        // SAFETY: a plain kill; the interposer must abort before it.
        unsafe { libc::kill(victim, libc::SIGTERM) };
    });
    assert_eq!(
        wait(signaller),
        Err(libc::SIGABRT),
        "kill(other, SIGTERM) must abort"
    );
    // The victim was never signalled: it still lives. End it with the raw
    // system call (libc's kill would abort this test).
    // SAFETY: signal 0 only probes.
    assert_eq!(
        unsafe { libc::kill(victim, 0) },
        0,
        "the victim was signalled"
    );
    // SAFETY: SIGKILL to our own child.
    unsafe { libc::syscall(libc::SYS_kill, victim, libc::SIGKILL) };
    assert_eq!(wait(victim), Err(libc::SIGKILL));
}
