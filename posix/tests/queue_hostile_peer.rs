//! A hostile peer *process* keeps rewriting a queue's control words while
//! honest processes use it (issue 8, for the MPMC queue, the byte-message
//! queue and the joinable queue):
//!
//! - the MPMC queue's head and tail hints, slot stamps (plausible ones and
//!   anything) and registry slots;
//! - the byte-message queue's, plus its slots' length words;
//! - the joinable queue's, plus its unfinished-task count.
//!
//! The peer forges in three modes, one run each: stale hints only (states
//! honest handles leave behind: nothing may be reported `Corrupt`), near
//! the truth (hints a few positions off, stamps of neighbouring laps), and
//! anything.
//!
//! Meanwhile one honest process calls the `try_` and timed operations in
//! a loop (each `try_` call must return, each timed one by its deadline
//! plus a hang allowance and, when it reports a time-out, not before
//! it), and two more call the blocking ones (one receives, one sends, a
//! fixed number of calls each). Every error must be one the call
//! documents (the enums are matched exhaustively). No honest process may
//! die by a signal; the try/timed one must finish while the peer runs;
//! the blocking ones must finish within a bound once the peer stops.
//!
//! What the peer does not forge, because an honest process would then
//! legitimately wait for ever (as it would for a genuine peer in that
//! state): claims naming a registry entry a live honest producer holds
//! (the peer names only entries past the honest ones, or anything in a
//! whole garbage stamp); registry words naming a live holder — a presence
//! word of `DETACHING`, or a holder id below the token range, which is a
//! pid and may be a live process's (the peer writes ids in the token
//! range, none of them held, and garbage with a token-range bit set);
//! and the presence counts (forged, they keep a role "present" after
//! every holder left). A joinable queue's `join` without a deadline waits
//! for a forged count as for a dead consumer's task (documented), so only
//! `join_timeout` runs.

mod common;

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use common::Pipe as Signal;
use shmkit_core::queue::joinable::{join_layout, JoinTimeout, TaskDoneError};
use shmkit_core::queue::mpmc::{self, QueueLayout};
use shmkit_core::queue::roles::{BUSY, GONE};
use shmkit_core::queue::{
    RecvError, RecvTimeoutError, SendError, SendTimeoutError, TryRecvError, TrySendError,
};
use shmkit_posix::msg_queue::{JoinableQueue, MessageQueue, MessageRecvError, MessageSendError};
use shmkit_posix::queue::Queue;
use shmkit_posix::{Segment, Value};
use shmkit_testkit::{fork, Child, Exit};

/// Rounds of the try/timed process: at least this many, and until the
/// peer made at least `MIN_WRITES` forged writes.
const ROUNDS: u64 = 1500;
const MIN_WRITES: u64 = 2000;
/// Calls of each blocking process.
const BLOCKING_CALLS: u64 = 300;
/// The timed calls' timeout.
const D: Duration = Duration::from_millis(3);
/// How much longer than its deadline a timed call (or than nothing a
/// `try_` call) may take: a hang check on a busy 2-CPU machine, not a
/// speed target (the calls take microseconds).
const SLACK: Duration = Duration::from_secs(3);
/// How long a process may take to finish its loop.
const BOUND: Duration = Duration::from_secs(120);

const CAPACITY: usize = 8;
const MAX_LEN: usize = 16;
/// Registry entries the honest processes can hold: the try/timed process
/// and one blocking process per role attach one handle of each role they
/// use (the first free entries).
const HONEST_ENTRIES: u64 = 2;

/// A small xorshift generator (no dependency, reproducible).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// A word the peer rewrites, and what it writes there.
#[derive(Clone, Copy, Debug)]
enum Target {
    /// A head or tail hint (u64).
    Hint(usize),
    /// A slot stamp (u64).
    Stamp(usize),
    /// A slot's message length word (u64).
    Len(usize),
    /// A u32 of a registry slot.
    Registry(usize),
    /// The joinable queue's unfinished count (u32).
    Count(usize),
}

/// How the peer forges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Anything: whole garbage words, hints anywhere. The queue soon reads
    /// corrupt for good (nothing honest rewrites a garbage stamp).
    Wild,
    /// Only hints moved back a few positions: stale hints, as honest
    /// handles leave them. Nothing may be reported corrupt.
    Lagging,
    /// Near the truth: hints moved a few positions, stamps of the lap
    /// before, the same or the next one with any state — states honest
    /// calls can meet, pass, or find impossible and report.
    Plausible,
}

impl Target {
    /// One forged write, at the address this target names (in a mapping
    /// the peer inherited).
    fn forge(self, rng: &mut Rng, mode: Mode) {
        let r = rng.next();
        let word64 = |at: usize| {
            // SAFETY: `at` is an 8-aligned address inside the queue's
            // payload (computed from its layout), mapped for as long as
            // the peer lives; every access to it is atomic.
            unsafe { AtomicU64::from_ptr(at as *mut u64) }
        };
        let w32 = |at: usize, v: u32| {
            // SAFETY: as above, 4-aligned.
            unsafe { AtomicU32::from_ptr(at as *mut u32) }.store(v, Relaxed);
        };
        // A registry entry no honest producer holds.
        let who = HONEST_ENTRIES + (r >> 20) % 8;
        match (self, mode) {
            (Target::Hint(at), Mode::Wild) => {
                word64(at).store([r, r >> (r % 64), r % 64][(r >> 32) as usize % 3], Relaxed)
            }
            (Target::Hint(at), Mode::Lagging) => {
                let _ = word64(at).fetch_sub(1 + r % 2, Relaxed);
            }
            (Target::Hint(at), Mode::Plausible) => {
                // Mostly back (a stale hint, which honest handles meet and
                // pass), sometimes ahead of every claim (impossible).
                let delta = match r % 4 {
                    0 => 1 + (r >> 8) % 2,
                    _ => 0u64.wrapping_sub(1 + (r >> 8) % 2),
                };
                let _ = word64(at).fetch_add(delta, Relaxed);
            }
            (Target::Stamp(at), Mode::Wild) => word64(at).store(
                match r % 4 {
                    0 => r,
                    _ => mpmc::stamp(r >> 40 & 7, who, r >> 10 & 3),
                },
                Relaxed,
            ),
            (Target::Stamp(at), Mode::Plausible | Mode::Lagging) => {
                let (lap, _, _) = mpmc::decode(word64(at).load(Relaxed));
                let lap = lap.wrapping_add(r % 3).wrapping_sub(1);
                word64(at).store(mpmc::stamp(lap, who, r >> 10 & 3), Relaxed);
            }
            (Target::Len(at), _) => word64(at).store(
                [r % 24, MAX_LEN as u64 + 1, r, u64::MAX][(r >> 8) as usize % 4],
                Relaxed,
            ),
            (Target::Registry(at), _) => {
                // Ids in the token range only: a small number would be a
                // pid, and a live process of that pid would make the
                // entry a live holder (see the module docs).
                let token = (1 << 22) + (r as u32) % ((1 << 30) - 2 - (1 << 22));
                let garbage = (r >> 32) as u32 | 1 << 22;
                w32(
                    at,
                    [0, GONE, BUSY | token, token, garbage][(r >> 8) as usize % 5],
                );
            }
            (Target::Count(at), _) => w32(at, [0, 1, u32::MAX, r as u32][(r >> 8) as usize % 4]),
        }
    }
}

/// The peer's targets in a queue with `layout` at `base`: the hints, every
/// stamp, every registry u32 (`len_words`: and every length word).
fn queue_targets(base: usize, layout: &QueueLayout, len_words: bool) -> Vec<Target> {
    // The hints are the first words of the control block's first two
    // 128-byte lines (tail, then head).
    let mut t = vec![Target::Hint(base), Target::Hint(base + 128)];
    for i in 0..layout.params.capacity {
        t.push(Target::Stamp(base + layout.stamp_at(i)));
        if len_words {
            t.push(Target::Len(
                base + layout.stamp_at(i) + 8 * layout.slot.value_word,
            ));
        }
    }
    let entries =
        |at: usize, n: usize| (0..n * 6).map(move |k| Target::Registry(base + at + 4 * k));
    t.extend(entries(layout.producers_at, layout.params.producers));
    t.extend(entries(layout.consumers_at, layout.params.consumers));
    t
}

fn base_of(seg: &Segment) -> usize {
    seg.payload().as_ptr() as usize
}

/// What the try/timed process got, printed for the record (how often the
/// forgeries were met, and how often messages still got through).
#[derive(Debug, Default)]
struct Tally {
    sent: u64,
    received: u64,
    corrupt: u64,
    timed_out: u64,
    other: u64,
}

impl Tally {
    fn sent<E>(
        &mut self,
        r: &Result<(), E>,
        corrupt: impl Fn(&E) -> bool,
        timeout: impl Fn(&E) -> bool,
    ) {
        match r {
            Ok(()) => self.sent += 1,
            Err(e) => self.error(corrupt(e), timeout(e)),
        }
    }

    fn received<T, E>(
        &mut self,
        r: &Result<T, E>,
        corrupt: impl Fn(&E) -> bool,
        timeout: impl Fn(&E) -> bool,
    ) {
        match r {
            Ok(_) => self.received += 1,
            Err(e) => self.error(corrupt(e), timeout(e)),
        }
    }

    fn error(&mut self, corrupt: bool, timeout: bool) {
        if corrupt {
            self.corrupt += 1;
        } else if timeout {
            self.timed_out += 1;
        } else {
            self.other += 1;
        }
    }
}

/// Where the honest processes meet before the peer starts.
struct Gate {
    ready: Signal,
    go: Signal,
    /// The peer's forged writes so far.
    writes: Value<u64>,
    mode: Mode,
}

impl Gate {
    /// A call reported `Corrupt`: `Err` if nothing was corrupt (the peer
    /// only left stale hints).
    fn corrupt(&self, what: &str) -> Result<(), String> {
        if self.mode == Mode::Lagging {
            return Err(format!("{what}: Corrupt, with only stale hints"));
        }
        Ok(())
    }

    /// Attached: wait until everybody is and the peer runs.
    fn arrive(&self) {
        self.ready.release(1);
        assert!(self.go.take(), "the parent went away");
    }

    /// The try/timed process's rounds: `ROUNDS`, and on until the peer
    /// made `MIN_WRITES` writes (it runs until this process ends).
    fn rounds(&self) -> impl Iterator<Item = u64> + '_ {
        (0..).take_while(|&i| i < ROUNDS || self.writes.get() < MIN_WRITES)
    }
}

/// A call's time, checked: `Err` if it took longer than `limit + SLACK`.
fn timed<R>(
    what: &str,
    limit: Duration,
    call: impl FnOnce() -> R,
) -> Result<(R, Duration), String> {
    let t0 = Instant::now();
    let r = call();
    let took = t0.elapsed();
    if took > limit + SLACK {
        return Err(format!("{what} took {took:?} (limit {limit:?})"));
    }
    Ok((r, took))
}

/// A time-out reported before the deadline is a failure.
fn not_early(what: &str, took: Duration) -> Result<(), String> {
    if took < D {
        return Err(format!("{what} reported a time-out after {took:?} < {D:?}"));
    }
    Ok(())
}

/// Runs one child body, turning an `Err` into exit code 1 (with the
/// message on stderr).
fn child(body: impl FnOnce() -> Result<(), String>) -> impl FnOnce() -> i32 {
    || match body() {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("honest process: {e}");
            1
        }
    }
}

/// The shape of every case: the try/timed process, the blocking receiver
/// and sender, all attached before the peer starts rewriting `targets`.
fn run_case(
    what: &str,
    mode: Mode,
    targets: Vec<Target>,
    try_timed: impl FnOnce(&Gate) -> Result<(), String>,
    blocking_recv: impl FnOnce(&Gate) -> Result<(), String>,
    blocking_send: impl FnOnce(&Gate) -> Result<(), String>,
) {
    let gate = Gate {
        ready: Signal::new(),
        go: Signal::new(),
        writes: Value::<u64>::anonymous(0).unwrap(),
        mode,
    };
    let targets: Vec<Target> = match mode {
        Mode::Lagging => targets
            .into_iter()
            .filter(|t| matches!(t, Target::Hint(_)))
            .collect(),
        _ => targets,
    };
    let writes = &gate.writes;
    let t = fork(child(|| try_timed(&gate)));
    let r = fork(child(|| blocking_recv(&gate)));
    let s = fork(child(|| blocking_send(&gate)));
    for _ in 0..3 {
        assert!(
            gate.ready.take_within(BOUND),
            "{what}: an honest process did not attach"
        );
    }
    let peer = fork(|| {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ u64::from(std::process::id()));
        let (mut n, mut started) = (0u64, false);
        loop {
            // Bursts of a few writes with a short pause between them (a
            // rate limit, not a synchronisation: nobody waits for it), so
            // that honest calls also meet states between forgeries,
            // including ones they repair or pass.
            for _ in 0..1 + rng.next() % 4 {
                let i = rng.next() as usize % targets.len();
                targets[i].forge(&mut rng, mode);
                n += 1;
            }
            writes.set(n);
            if !started {
                started = true;
                gate.ready.release(1);
            }
            std::thread::sleep(Duration::from_micros(50));
        }
    });
    assert!(
        gate.ready.take_within(BOUND),
        "{what}: the peer did not start"
    );
    gate.go.release(3);

    let exit = t.wait_timeout(BOUND);
    assert_eq!(
        exit,
        Some(Exit::Code(0)),
        "{what}: the try/timed process ended with {exit:?} while the peer ran"
    );
    stop(peer, what);
    let forged = writes.get();
    for (role, p) in [("receiving", r), ("sending", s)] {
        let exit = p.wait_timeout(BOUND);
        assert_eq!(
            exit,
            Some(Exit::Code(0)),
            "{what}: the blocking {role} process ended with {exit:?} (None: still blocked {BOUND:?} after the peer stopped)"
        );
    }
    assert!(
        forged >= MIN_WRITES,
        "{what}: the peer made only {forged} writes"
    );
    eprintln!("{what}, {mode:?}: the peer made {forged} forged writes");
}

/// Kills the peer (it loops until then) and checks it did not crash
/// first.
fn stop(peer: Child, what: &str) {
    peer.kill9();
    let exit = peer.wait();
    assert_eq!(
        exit,
        Exit::Signal(libc::SIGKILL),
        "{what}: the peer ended by itself"
    );
}

#[test]
fn mpmc_queue_survives_a_peer_rewriting_its_control_words() {
    for mode in [Mode::Lagging, Mode::Plausible, Mode::Wild] {
        let q = Queue::<u64>::anonymous(CAPACITY).unwrap();
        let layout = QueueLayout::new(q.params(), 8, 8).unwrap();
        let targets = queue_targets(base_of(q.segment()), &layout, false);
        run_case(
            "mpmc",
            mode,
            targets,
            |gate| {
                let (tx, rx) = (q.sender().unwrap(), q.receiver().unwrap());
                gate.arrive();
                let mut tally = Tally::default();
                for i in gate.rounds() {
                    let (r, _) = timed("try_send", Duration::ZERO, || tx.try_send(i))?;
                    tally.sent(&r, |e| matches!(e, TrySendError::Corrupt(_)), |_| false);
                    match r {
                        Ok(())
                        | Err(
                            TrySendError::Full(_)
                            | TrySendError::Disconnected(_)
                            | TrySendError::Corrupt(_),
                        ) => {}
                    }
                    let (r, _) = timed("try_recv", Duration::ZERO, || rx.try_recv())?;
                    tally.received(&r, |e| *e == TryRecvError::Corrupt, |_| false);
                    match r {
                        Ok(_)
                        | Err(
                            TryRecvError::Empty
                            | TryRecvError::Disconnected
                            | TryRecvError::Corrupt,
                        ) => {}
                    }
                    let (r, took) = timed("send_timeout", D, || tx.send_timeout(i, D))?;
                    tally.sent(
                        &r,
                        |e| matches!(e, SendTimeoutError::Corrupt(_)),
                        |e| matches!(e, SendTimeoutError::Timeout(_)),
                    );
                    match r {
                        Err(SendTimeoutError::Timeout(_)) => not_early("send_timeout", took)?,
                        Ok(())
                        | Err(SendTimeoutError::Disconnected(_) | SendTimeoutError::Corrupt(_)) => {
                        }
                    }
                    let (r, took) = timed("recv_timeout", D, || rx.recv_timeout(D))?;
                    tally.received(
                        &r,
                        |e| *e == RecvTimeoutError::Corrupt,
                        |e| *e == RecvTimeoutError::Timeout,
                    );
                    match r {
                        Err(RecvTimeoutError::Timeout) => not_early("recv_timeout", took)?,
                        Ok(_) | Err(RecvTimeoutError::Disconnected | RecvTimeoutError::Corrupt) => {
                        }
                    }
                }
                eprintln!("mpmc, {:?}, try/timed calls: {tally:?}", gate.mode);
                if tally.corrupt > 0 {
                    gate.corrupt("try/timed calls")?;
                }
                Ok(())
            },
            |gate| {
                let rx = q.receiver().unwrap();
                gate.arrive();
                for _ in 0..BLOCKING_CALLS {
                    match rx.recv() {
                        Err(RecvError::Disconnected) => break,
                        Err(RecvError::Corrupt) => gate.corrupt("recv")?,
                        Ok(_) => {}
                    }
                }
                Ok(())
            },
            |gate| {
                let tx = q.sender().unwrap();
                gate.arrive();
                for i in 0..BLOCKING_CALLS {
                    match tx.send(i) {
                        Err(SendError::Disconnected(_)) => break,
                        Err(SendError::Corrupt(_)) => gate.corrupt("send")?,
                        Ok(()) => {}
                    }
                }
                Ok(())
            },
        );
    }
}

/// The try/timed body of both message queue kinds.
fn message_try_timed(
    what: &str,
    gate: &Gate,
    tx: &mut shmkit_posix::MessageSender<[u8; MAX_LEN]>,
    rx: &mut shmkit_posix::MessageReceiver<[u8; MAX_LEN]>,
    mut between: impl FnMut() -> Result<(), String>,
) -> Result<(), String> {
    let mut tally = Tally::default();
    let corrupt_send = |e: &MessageSendError| *e == MessageSendError::Corrupt;
    let timeout_send = |e: &MessageSendError| *e == MessageSendError::Timeout;
    let corrupt_recv = |e: &MessageRecvError| *e == MessageRecvError::Corrupt;
    let timeout_recv = |e: &MessageRecvError| *e == MessageRecvError::Timeout;
    for i in gate.rounds() {
        let msg = [i as u8; MAX_LEN];
        let (r, _) = timed("try_send", Duration::ZERO, || tx.try_send(&msg))?;
        tally.sent(&r, corrupt_send, timeout_send);
        send_ok("try_send", r, Duration::ZERO)?;
        let (r, _) = timed("try_recv", Duration::ZERO, || rx.try_recv())?;
        tally.received(&r, corrupt_recv, timeout_recv);
        recv_ok("try_recv", r, Duration::ZERO)?;
        let (r, took) = timed("send_timeout", D, || tx.send_timeout(&msg, D))?;
        tally.sent(&r, corrupt_send, timeout_send);
        send_ok("send_timeout", r, took)?;
        let (r, took) = timed("recv_timeout", D, || rx.recv_timeout(D))?;
        tally.received(&r, corrupt_recv, timeout_recv);
        recv_ok("recv_timeout", r, took)?;
        between()?;
    }
    eprintln!("{what}, {:?}, try/timed calls: {tally:?}", gate.mode);
    if tally.corrupt > 0 {
        gate.corrupt("try/timed calls")?;
    }
    Ok(())
}

/// A message send's documented outcomes (`took`: a timed call's time).
fn send_ok(what: &str, r: Result<(), MessageSendError>, took: Duration) -> Result<(), String> {
    match r {
        Err(MessageSendError::Timeout) => not_early(what, took),
        Ok(())
        | Err(
            MessageSendError::Full
            | MessageSendError::Disconnected
            | MessageSendError::Corrupt
            | MessageSendError::TooManyTasks,
        ) => Ok(()),
        // The message is exactly `max_len` bytes and encodes.
        Err(e @ (MessageSendError::TooLong { .. } | MessageSendError::Encode(_))) => {
            Err(format!("{what}: {e}"))
        }
    }
}

/// A message receive's documented outcomes.
fn recv_ok(
    what: &str,
    r: Result<[u8; MAX_LEN], MessageRecvError>,
    took: Duration,
) -> Result<(), String> {
    match r {
        Err(MessageRecvError::Timeout) => not_early(what, took),
        // A forged length word gives a message of another length, which
        // does not decode as an array of `MAX_LEN` bytes.
        Ok(_)
        | Err(
            MessageRecvError::Empty
            | MessageRecvError::Disconnected
            | MessageRecvError::Corrupt
            | MessageRecvError::Decode(_),
        ) => Ok(()),
    }
}

/// The blocking bodies of both message queue kinds.
fn message_blocking_recv(
    gate: &Gate,
    rx: &mut shmkit_posix::MessageReceiver<[u8; MAX_LEN]>,
) -> Result<(), String> {
    for _ in 0..BLOCKING_CALLS {
        match rx.recv() {
            Err(MessageRecvError::Disconnected) => break,
            Err(MessageRecvError::Corrupt) => gate.corrupt("recv")?,
            Ok(_)
            | Err(MessageRecvError::Decode(_))
            // Not from a blocking receive, but documented for the type.
            | Err(MessageRecvError::Empty | MessageRecvError::Timeout) => {}
        }
    }
    Ok(())
}

fn message_blocking_send(
    gate: &Gate,
    tx: &mut shmkit_posix::MessageSender<[u8; MAX_LEN]>,
) -> Result<(), String> {
    for i in 0..BLOCKING_CALLS {
        match tx.send(&[i as u8; MAX_LEN]) {
            Err(MessageSendError::Disconnected) => break,
            Err(MessageSendError::Corrupt) => gate.corrupt("send")?,
            Ok(()) | Err(MessageSendError::TooManyTasks) => {}
            Err(e) => return Err(format!("send: {e}")),
        }
    }
    Ok(())
}

#[test]
fn message_queue_survives_a_peer_rewriting_its_control_and_length_words() {
    for mode in [Mode::Lagging, Mode::Plausible, Mode::Wild] {
        let q = MessageQueue::<[u8; MAX_LEN]>::anonymous((CAPACITY, MAX_LEN)).unwrap();
        let layout = q.params().layout().unwrap();
        let targets = queue_targets(base_of(q.segment()), &layout, true);
        run_case(
            "message queue",
            mode,
            targets,
            |gate| {
                let (mut tx, mut rx) = (q.sender().unwrap(), q.receiver().unwrap());
                gate.arrive();
                message_try_timed("message queue", gate, &mut tx, &mut rx, || {
                    let _ = q.len();
                    Ok(())
                })
            },
            |gate| {
                let mut rx = q.receiver().unwrap();
                gate.arrive();
                message_blocking_recv(gate, &mut rx)
            },
            |gate| {
                let mut tx = q.sender().unwrap();
                gate.arrive();
                message_blocking_send(gate, &mut tx)
            },
        );
    }
}

#[test]
fn joinable_queue_survives_a_peer_rewriting_its_words_and_unfinished_count() {
    for mode in [Mode::Lagging, Mode::Plausible, Mode::Wild] {
        let q = JoinableQueue::<[u8; MAX_LEN]>::anonymous((CAPACITY, MAX_LEN)).unwrap();
        let layout = q.params().layout().unwrap();
        let base = base_of(q.segment());
        let mut targets = queue_targets(base, &layout, true);
        let (count_at, _) = join_layout(q.params()).unwrap();
        // The count is the block's first word: give it as many writes as the
        // rest of the queue together.
        let n = targets.len();
        targets.extend(std::iter::repeat_n(Target::Count(base + count_at), n));
        run_case(
            "joinable queue",
            mode,
            targets,
            |gate| {
                let (mut tx, mut rx) = (q.sender().unwrap(), q.receiver().unwrap());
                gate.arrive();
                let mut round = 0u32;
                message_try_timed("joinable queue", gate, &mut tx, &mut rx, || {
                    let (r, _) = timed("task_done", Duration::ZERO, || q.task_done())?;
                    match r {
                        Ok(_) | Err(TaskDoneError::TooManyCalls) => {}
                    }
                    // Not every round: it mostly waits its whole timeout.
                    round += 1;
                    if round % 32 == 0 {
                        let (r, took) = timed("join_timeout", D, || q.join_timeout(D))?;
                        if let Err(JoinTimeout { .. }) = r {
                            not_early("join_timeout", took)?;
                        }
                    }
                    let _ = q.unfinished();
                    Ok(())
                })
            },
            |gate| {
                let mut rx = q.receiver().unwrap();
                gate.arrive();
                message_blocking_recv(gate, &mut rx)
            },
            |gate| {
                let mut tx = q.sender().unwrap();
                gate.arrive();
                message_blocking_send(gate, &mut tx)
            },
        );
    }
}
