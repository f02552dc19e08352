//! shmkit's queue impls for the benchmark engine.
//!
//! | case | impl | what it runs |
//! |---|---|---|
//! | `busy_rtt` | `shmkit_spsc`, `shmkit_mpmc`, `shmkit_pipe` | the floor's ping-pong with a `msg_size`-byte message through two queues: the parent sends and busy-polls for the echo, the peer echoes; one [`time_each`] sample per round trip |
//! | `blocking_rtt` | `shmkit_spsc_blocking`, `shmkit_mpmc_blocking`, `shmkit_pipe_blocking` | [`floors::u32_pingpong`] (the futex floor's protocol) with blocking calls and `Spin::NONE`, so every receive parks |
//! | `spsc_throughput` | `shmkit_spsc` | the raw ring floor's loop: one `try_push` per message in the producer process, one `try_pop` per message in the measuring consumer; each side enters [`spin_until`] only when a call finds the ring full/empty, as the floor does |
//! | `spsc_throughput` | `shmkit_spsc_batched` | the same with `push_slice`/`pop_into` batches of 64 (no floor loop to match) |
//! | `spsc_throughput` | `shmkit_stamped` | the `shmkit_spsc` loop through a stamped ring ([`StampedSpsc`]) |
//! | `busy_rtt` | `shmkit_stamped` | the round trip through two stamped rings |
//! | `blocking_rtt` | `shmkit_stamped_blocking` | the blocking round trip through two stamped rings |
//! | `pipe_bytes` | `shmkit_pipe` | 64 KiB messages through a pipe of [`PIPE_BYTES_CAPACITY`] (16 messages), producer process → measuring consumer |
//! | `pipe_bytes` | `raw_stream` | the same transfer with no pipe: `memcpy` into and out of 16 message slots in shared memory (the cross-core ceiling; see `raw_stream`) |
//! | `delay_sweep_*us` | `pure_spin`, `pure_park`, `adaptive` | a blocking round trip through two SPSC rings whose peer busy-waits the case's delay before each answer, with a fixed spin of (nearly) forever, no spin at all, and the default [`AdaptiveSpin`]; latency per round trip and the measuring process's CPU time per round trip |
//! | `blocking_rtt` | `shmkit_spsc_adaptive` | the `shmkit_spsc_blocking` round trip with the default [`AdaptiveSpin`] instead of `Spin::NONE` |
//! | `mpmc_pxc` | `shmkit_mpmc` | [`floors::pxc`] with the `vyukov` floor's waiting loop around `try_push`/`try_pop`, one queue of capacity 1024 |
//! | `mpmc_pxc` | `shmkit_mpmc_blocking` | the same with blocking `push`/`pop` |
//!
//! Messages for the `Pod` queues are `[u64; W]` with `W` the smallest of
//! 1, 8, 64, 512 words that holds `msg_size` bytes. Every impl uses the
//! clock and, where the floor has one, the loop of its floor
//! ([`time_each`] over rdtsc, [`floors::u32_pingpong`], the rate clock
//! from message `warmup` on), so ratios compare queues, not harnesses.
//! Calls are static (no `dyn`), and busy waits are [`spin_until`], which
//! reads the clock only every 4096 iterations.

use std::cell::RefCell;
use std::time::Instant;

use shmkit_core::object::Object;
use shmkit_core::queue::mpmc::{QueueConsumer, QueueProducer};
use shmkit_core::queue::pipe::{PipeReceiver, PipeRecvError, PipeSendError, PipeSender};
use shmkit_core::queue::ring::{Consumer, Producer};
use shmkit_core::queue::stamped::{StampedConsumer, StampedProducer, StampedSpsc};
use shmkit_core::queue::{
    RecvError, RecvTimeoutError, SendTimeoutError, TryRecvError, TrySendError,
};
use shmkit_core::wait::{AdaptiveSpin, Spin};
use shmkit_core::Pod;
use shmkit_posix::pipe::OneWayPipe;
use shmkit_posix::queue::{Queue, QueueParams};
use shmkit_posix::ring::Ring;
use shmkit_posix::{ObjectSpec, Segment};

use super::floors;
use super::proc::{pin_index, spawn_peer, Scratch};
use super::timing::{peer_guard, spin_until, time_each, STALL};
use super::{Impl, Measurement, Params, RunResult};

/// shmkit's queue impls, as `(case, impl)`.
#[must_use]
pub fn impls() -> Vec<(&'static str, Impl)> {
    let i = |name, run| Impl { name, run };
    vec![
        ("busy_rtt", i("shmkit_spsc", busy_spsc)),
        ("busy_rtt", i("shmkit_mpmc", busy_mpmc)),
        ("busy_rtt", i("shmkit_pipe", busy_pipe)),
        ("busy_rtt", i("shmkit_stamped", busy_stamped)),
        (
            "blocking_rtt",
            i("shmkit_stamped_blocking", blocking_stamped),
        ),
        ("spsc_throughput", i("shmkit_stamped", throughput_stamped)),
        ("blocking_rtt", i("shmkit_spsc_blocking", blocking_spsc)),
        ("blocking_rtt", i("shmkit_mpmc_blocking", blocking_mpmc)),
        ("blocking_rtt", i("shmkit_pipe_blocking", blocking_pipe)),
        ("spsc_throughput", i("shmkit_spsc", throughput_spsc)),
        (
            "spsc_throughput",
            i("shmkit_spsc_batched", throughput_spsc_batched),
        ),
        ("pipe_bytes", i("shmkit_pipe", pipe_bytes)),
        ("pipe_bytes", i("raw_stream", raw_stream)),
        ("mpmc_pxc", i("shmkit_mpmc", mpmc_pxc)),
        ("delay_sweep", i("pure_spin", delay_pure_spin)),
        ("delay_sweep", i("pure_park", delay_pure_park)),
        ("delay_sweep", i("adaptive", delay_adaptive)),
        (
            "blocking_rtt",
            i("shmkit_spsc_adaptive", blocking_spsc_adaptive),
        ),
        ("mpmc_pxc", i("shmkit_mpmc_blocking", mpmc_pxc_blocking)),
    ]
}

fn err<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> String {
    move |e| format!("{what}: {e}")
}

/// [`spin_until`] on a fallible poll: `Ok` once `f` gives `Ok(true)`, the
/// first error `f` gives, or the stall error.
#[inline]
fn spin_ok(what: &str, mut f: impl FnMut() -> Result<bool, String>) -> Result<(), String> {
    let mut failed = None;
    spin_until(what, || match f() {
        Ok(done) => done,
        Err(e) => {
            failed = Some(e);
            true
        }
    })?;
    failed.map_or(Ok(()), Err)
}

/// The sending half of one direction of a round trip. A message carries a
/// tag (the round-trip number) so the echo can be checked, as the floor
/// checks its counter.
trait Tx {
    /// `Ok(false)`: full, try again.
    fn try_send(&mut self, tag: u64) -> Result<bool, String>;
    fn send(&mut self, tag: u64) -> Result<(), String>;
}

/// The receiving half; returns the tag.
trait Rx {
    /// `Ok(None)`: empty, try again.
    fn try_recv(&mut self) -> Result<Option<u64>, String>;
    fn recv(&mut self) -> Result<u64, String>;
}

#[inline]
fn tagged<const W: usize>(tag: u64) -> [u64; W] {
    let mut v = [0u64; W];
    v[0] = tag;
    v
}

/// `Tx`/`Rx` for a producer/consumer pair of handles with the queue method
/// names (`try_push`, `push_timeout`, `try_pop`, `pop_timeout`): the SPSC
/// ring's and the MPMC queue's.
macro_rules! queue_adapters {
    ($producer:ident, $consumer:ident) => {
        impl<const W: usize> Tx for $producer<'_, [u64; W]>
        where
            [u64; W]: Pod,
        {
            #[inline]
            fn try_send(&mut self, tag: u64) -> Result<bool, String> {
                match self.try_push(tagged(tag)) {
                    Ok(()) => Ok(true),
                    Err(TrySendError::Full(_)) => Ok(false),
                    Err(e) => Err(e.to_string()),
                }
            }
            fn send(&mut self, tag: u64) -> Result<(), String> {
                match self.push_timeout(tagged(tag), STALL) {
                    Ok(()) => Ok(()),
                    Err(SendTimeoutError::Timeout(_)) => Err("peer stalled".into()),
                    Err(e) => Err(e.to_string()),
                }
            }
        }

        impl<const W: usize> Rx for $consumer<'_, [u64; W]>
        where
            [u64; W]: Pod,
        {
            #[inline]
            fn try_recv(&mut self) -> Result<Option<u64>, String> {
                match self.try_pop() {
                    Ok(v) => Ok(Some(v[0])),
                    Err(TryRecvError::Empty) => Ok(None),
                    Err(e) => Err(e.to_string()),
                }
            }
            fn recv(&mut self) -> Result<u64, String> {
                match self.pop_timeout(STALL) {
                    Ok(v) => Ok(v[0]),
                    Err(RecvTimeoutError::Timeout) => Err("peer stalled".into()),
                    Err(e) => Err(e.to_string()),
                }
            }
        }
    };
}

queue_adapters!(Producer, Consumer);
queue_adapters!(QueueProducer, QueueConsumer);
queue_adapters!(StampedProducer, StampedConsumer);

/// A pipe sender with its `msg_size`-byte message; the tag is in the first
/// (up to) 8 bytes, little-endian.
struct PipeTx<'a> {
    tx: PipeSender<'a>,
    msg: Vec<u8>,
}

/// A pipe receiver with its buffer.
struct PipeRx<'a> {
    rx: PipeReceiver<'a>,
    buf: Vec<u8>,
}

impl PipeTx<'_> {
    #[inline]
    fn stamp(&mut self, tag: u64) {
        let k = self.msg.len().min(8);
        self.msg[..k].copy_from_slice(&tag.to_le_bytes()[..k]);
    }
}

impl PipeRx<'_> {
    #[inline]
    fn tag(&self) -> u64 {
        let mut b = [0u8; 8];
        let k = self.buf.len().min(8);
        b[..k].copy_from_slice(&self.buf[..k]);
        u64::from_le_bytes(b)
    }
}

/// The tag as it arrives through a `size`-byte pipe message.
fn pipe_tag(tag: u64, size: usize) -> u64 {
    if size >= 8 {
        tag
    } else {
        tag & ((1u64 << (8 * size)) - 1)
    }
}

impl Tx for PipeTx<'_> {
    #[inline]
    fn try_send(&mut self, tag: u64) -> Result<bool, String> {
        self.stamp(tag);
        match self.tx.try_send_bytes(&self.msg) {
            Ok(()) => Ok(true),
            Err(PipeSendError::Full) => Ok(false),
            Err(e) => Err(e.to_string()),
        }
    }
    fn send(&mut self, tag: u64) -> Result<(), String> {
        self.stamp(tag);
        match self.tx.send_bytes_timeout(&self.msg, STALL) {
            Ok(()) => Ok(()),
            Err(PipeSendError::Timeout) => Err("peer stalled".into()),
            Err(e) => Err(e.to_string()),
        }
    }
}

impl Rx for PipeRx<'_> {
    #[inline]
    fn try_recv(&mut self) -> Result<Option<u64>, String> {
        match self.rx.try_recv_bytes_into(&mut self.buf) {
            Ok(_) => Ok(Some(self.tag())),
            Err(PipeRecvError::Empty) => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }
    fn recv(&mut self) -> Result<u64, String> {
        match self.rx.recv_bytes_into_timeout(&mut self.buf, STALL) {
            Ok(_) => Ok(self.tag()),
            Err(PipeRecvError::Timeout) => Err("peer stalled".into()),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// The busy round trip, shaped as the `busy_rtt` floor: the parent
/// (pinned to `cpus[0]`) sends tag `i + 1` on `a` and spins for its echo
/// on `b`; the peer (`cpus[1]`) spins for `i` on `a` and sends it back on
/// `b`. One [`time_each`] sample per round trip. `check` maps a tag to
/// what arrives (the pipe truncates tags of messages under 8 bytes).
fn busy_round_trips<T1: Tx, R1: Rx, T2: Tx, R2: Rx>(
    p: &Params,
    check: fn(u64, usize) -> u64,
    attach_parent: impl FnOnce() -> Result<(T1, R1), String>,
    attach_peer: impl FnOnce() -> Result<(T2, R2), String>,
) -> RunResult {
    let total = p.warmup + p.ops;
    let size = p.msg_size;
    let peer = spawn_peer(p.cpus.get(1).copied(), move || {
        peer_guard();
        let Ok((mut tx, mut rx)) = attach_peer() else {
            return 2;
        };
        for i in 1..=total {
            let mut got = None;
            if spin_ok("busy_rtt peer", || {
                got = rx.try_recv()?;
                Ok(got.is_some())
            })
            .is_err()
                || got != Some(check(i, size))
                || spin_ok("busy_rtt peer", || tx.try_send(i)).is_err()
            {
                return 3;
            }
        }
        0
    })
    .map_err(err("fork"))?;
    let (mut tx, mut rx) = attach_parent()?;
    pin_index(&p.cpus, 0).map_err(err("pin"))?;
    let samples = time_each(p, |i| {
        let i = i + 1;
        spin_ok("busy_rtt", || tx.try_send(i))?;
        let mut got = None;
        spin_ok("busy_rtt", || {
            got = rx.try_recv()?;
            Ok(got.is_some())
        })?;
        if got != Some(check(i, size)) {
            return Err(format!("busy_rtt: echo {got:?}, expected {i}"));
        }
        Ok(())
    })?;
    drop((tx, rx));
    peer.join()?;
    Ok(Measurement::Latencies(samples))
}

/// The blocking round trip: [`floors::u32_pingpong`], the futex floor's
/// protocol, with `signal(d, i)` = a blocking send of `i` on direction `d`
/// and `wait(d, i)` = a blocking receive on it. Each process attaches the
/// ends it uses on first use (after the fork): the parent sends on 0 and
/// receives on 1, the peer the reverse.
fn blocking_round_trips<T: Tx, R: Rx>(
    p: &Params,
    check: fn(u64, usize) -> u64,
    attach_tx: impl Fn(usize) -> Result<T, String>,
    attach_rx: impl Fn(usize) -> Result<R, String>,
) -> RunResult {
    let txs: [RefCell<Option<T>>; 2] = Default::default();
    let rxs: [RefCell<Option<R>>; 2] = Default::default();
    let size = p.msg_size;
    let r = floors::u32_pingpong(
        p,
        |d, i| {
            let mut tx = txs[d].borrow_mut();
            if tx.is_none() {
                *tx = Some(attach_tx(d)?);
            }
            tx.as_mut().map_or(Ok(()), |tx| tx.send(u64::from(i)))
        },
        |d, i| {
            let mut rx = rxs[d].borrow_mut();
            if rx.is_none() {
                *rx = Some(attach_rx(d)?);
            }
            let got = rx.as_mut().map_or(Ok(0), |rx| rx.recv())?;
            if got != check(u64::from(i), size) {
                return Err(format!("blocking_rtt: got {got}, expected {i}"));
            }
            Ok(())
        },
    );
    drop((txs, rxs));
    r
}

fn same(tag: u64, _size: usize) -> u64 {
    tag
}

fn spin_mode<T: HasSpin>(mut x: T, busy: bool) -> T {
    if !busy {
        x.spin_none();
    }
    x
}
trait HasSpin {
    fn spin_none(&mut self);
}
macro_rules! has_spin {
    ($($t:ty),*) => {$(
        impl<const W: usize> HasSpin for $t
        where
            [u64; W]: Pod,
        {
            fn spin_none(&mut self) { self.set_spin(Spin::NONE); }
        }
    )*};
}
has_spin!(
    Producer<'_, [u64; W]>,
    Consumer<'_, [u64; W]>,
    QueueProducer<'_, [u64; W]>,
    QueueConsumer<'_, [u64; W]>,
    StampedProducer<'_, [u64; W]>,
    StampedConsumer<'_, [u64; W]>
);

/// An anonymous segment holding the core object `O`, for structures that
/// have no posix handle (yet): the spec, `init` and the view all come
/// from the object.
pub(super) struct ObjectSegment<O: Object> {
    segment: Segment,
    params: O::Params,
}

impl<O: Object> ObjectSegment<O> {
    pub(super) fn anonymous(params: O::Params) -> Result<Self, String> {
        let len = O::payload_len(&params).map_err(err("layout"))?;
        let spec = ObjectSpec {
            kind: O::KIND,
            fingerprint: O::fingerprint(&params),
            type_name: O::type_name(),
            payload_len: len as u64,
        };
        let segment = Segment::anonymous(&spec, &mut |payload, _| {
            // SAFETY: the fresh, zero-filled payload of `payload_len`
            // bytes, aligned to PAYLOAD_ALIGN, nobody else's yet.
            unsafe { O::init(payload, &params) }
        })
        .map_err(err("segment"))?;
        Ok(ObjectSegment { segment, params })
    }

    pub(super) fn view(&self) -> O::View<'_> {
        // SAFETY: made by `anonymous` with these params (read-write, the
        // length checked by `payload_len`), initialised, mapped while
        // `self` lives, accessed only atomically.
        unsafe { O::attach(self.segment.payload(), &self.params) }
    }
}

/// Ring capacity (messages) of the round-trip impls (the Vyukov floor's).
const RTT_CAPACITY: usize = floors::RTT_CAPACITY;

/// `$name(p, busy)`: two `$handle`s of [`RTT_CAPACITY`] (one per
/// direction), their ends attached through `.$view()` in the process that
/// uses them, bounced by [`busy_round_trips`] or [`blocking_round_trips`].
macro_rules! rtt_impl {
    ($name:ident, $handle:ident, $view:ident, $what:literal) => {
        fn $name<const W: usize>(p: &Params, busy: bool) -> RunResult
        where
            [u64; W]: Pod,
        {
            let q = [
                $handle::<[u64; W]>::anonymous(RTT_CAPACITY).map_err(err($what))?,
                $handle::<[u64; W]>::anonymous(RTT_CAPACITY).map_err(err($what))?,
            ];
            let tx = |d: usize| {
                let tx = q[d].$view().producer().map_err(err("attach"))?;
                Ok(spin_mode(tx, busy))
            };
            let rx = |d: usize| {
                let rx = q[d].$view().consumer().map_err(err("attach"))?;
                Ok(spin_mode(rx, busy))
            };
            if busy {
                busy_round_trips(p, same, || Ok((tx(0)?, rx(1)?)), || Ok((tx(1)?, rx(0)?)))
            } else {
                blocking_round_trips(p, same, tx, rx)
            }
        }
    };
}

rtt_impl!(spsc_rtt, Ring, view, "ring");
rtt_impl!(mpmc_rtt, Queue, view, "queue");

/// [`rtt_impl`]'s shape for the stamped ring (no posix handle: an
/// [`ObjectSegment`]).
fn stamped_rtt<const W: usize>(p: &Params, busy: bool) -> RunResult
where
    [u64; W]: Pod,
{
    let q = [
        ObjectSegment::<StampedSpsc<[u64; W]>>::anonymous(RTT_CAPACITY)?,
        ObjectSegment::<StampedSpsc<[u64; W]>>::anonymous(RTT_CAPACITY)?,
    ];
    let tx = |d: usize| {
        let tx = q[d].view().producer().map_err(err("attach"))?;
        Ok(spin_mode(tx, busy))
    };
    let rx = |d: usize| {
        let rx = q[d].view().consumer().map_err(err("attach"))?;
        Ok(spin_mode(rx, busy))
    };
    if busy {
        busy_round_trips(p, same, || Ok((tx(0)?, rx(1)?)), || Ok((tx(1)?, rx(0)?)))
    } else {
        blocking_round_trips(p, same, tx, rx)
    }
}

fn pipe_rtt(p: &Params, busy: bool) -> RunResult {
    let size = p.msg_size;
    let cap = (size + 4).next_power_of_two().max(4096);
    // Pipe 0 carries parent → peer, pipe 1 the echo (a duplex pipe is
    // the same two rings in one segment).
    let q = [
        OneWayPipe::anonymous(cap).map_err(err("pipe"))?,
        OneWayPipe::anonymous(cap).map_err(err("pipe"))?,
    ];
    let tx = |dir: usize| -> Result<PipeTx<'_>, String> {
        let mut tx = q[dir].view().sender().map_err(err("attach"))?;
        if !busy {
            tx.set_spin(Spin::NONE);
        }
        Ok(PipeTx {
            tx,
            msg: vec![0x5a; size],
        })
    };
    let rx = |dir: usize| -> Result<PipeRx<'_>, String> {
        let mut rx = q[dir].view().receiver().map_err(err("attach"))?;
        if !busy {
            rx.set_spin(Spin::NONE);
        }
        Ok(PipeRx {
            rx,
            buf: vec![0; size],
        })
    };
    if busy {
        busy_round_trips(
            p,
            pipe_tag,
            || Ok((tx(0)?, rx(1)?)),
            || Ok((tx(1)?, rx(0)?)),
        )
    } else {
        blocking_round_trips(p, pipe_tag, tx, rx)
    }
}

/// Dispatches on the message size: `[u64; W]` with the smallest W that fits.
macro_rules! by_size {
    ($f:ident, $p:expr, $busy:expr) => {
        match $p.msg_size {
            0..=8 => $f::<1>($p, $busy),
            9..=64 => $f::<8>($p, $busy),
            65..=512 => $f::<64>($p, $busy),
            513..=4096 => $f::<512>($p, $busy),
            n => Err(format!(
                "msg_size {n} is above the 4096 bytes the Pod queue impls support"
            )),
        }
    };
}

fn busy_spsc(p: &Params) -> RunResult {
    by_size!(spsc_rtt, p, true)
}
fn busy_mpmc(p: &Params) -> RunResult {
    by_size!(mpmc_rtt, p, true)
}
fn busy_pipe(p: &Params) -> RunResult {
    pipe_rtt(p, true)
}
fn blocking_spsc(p: &Params) -> RunResult {
    by_size!(spsc_rtt, p, false)
}
fn blocking_mpmc(p: &Params) -> RunResult {
    by_size!(mpmc_rtt, p, false)
}
fn blocking_pipe(p: &Params) -> RunResult {
    pipe_rtt(p, false)
}
fn busy_stamped(p: &Params) -> RunResult {
    by_size!(stamped_rtt, p, true)
}
fn blocking_stamped(p: &Params) -> RunResult {
    by_size!(stamped_rtt, p, false)
}

/// Ring capacity (messages) of `spsc_throughput`: the raw floor's.
const THROUGHPUT_CAPACITY: usize = 1024;

/// `spsc_throughput` batched: the peer produces `0..warmup + ops` with
/// `push_slice` of up to 64, spinning while full; the parent consumes with
/// `pop_into` of up to 64, spinning while empty, checks each batch, and
/// times from the batch that crosses `warmup` to the last.
fn throughput_batched(p: &Params) -> RunResult {
    let ring = Ring::<u64>::anonymous(THROUGHPUT_CAPACITY).map_err(err("ring"))?;
    let total = p.warmup + p.ops;
    let peer = spawn_peer(p.cpus.get(1).copied(), || {
        peer_guard();
        let Ok(mut tx) = ring.view().producer() else {
            return 2;
        };
        let mut batch = [0u64; 64];
        let mut next = 0u64;
        while next < total {
            let n = (total - next).min(64) as usize;
            for (k, b) in batch[..n].iter_mut().enumerate() {
                *b = next + k as u64;
            }
            let r = spin_ok("spsc producer", || {
                let k = tx.push_slice(&batch[..n]).map_err(|e| e.to_string())?;
                next += k as u64;
                Ok(k > 0)
            });
            if r.is_err() {
                return 3;
            }
        }
        0
    })
    .map_err(err("fork"))?;
    let mut rx = ring.view().consumer().map_err(err("attach"))?;
    pin_index(&p.cpus, 0).map_err(err("pin"))?;
    let mut out = [0u64; 64];
    let mut got = 0u64;
    // (clock start, messages received before it): batches may step over
    // `warmup`.
    let mut start = None;
    while got < total {
        if start.is_none() && got >= p.warmup {
            start = Some((Instant::now(), got));
        }
        let mut n = 0;
        spin_ok("spsc consumer", || {
            n = rx.pop_into(&mut out).map_err(|e| e.to_string())?;
            Ok(n > 0)
        })?;
        if out[0] != got || out[n - 1] != got + n as u64 - 1 {
            return Err(format!("spsc: read {}, expected {got}", out[0]));
        }
        got += n as u64;
    }
    let (start, got0) = start.ok_or("spsc: no measured messages")?;
    let elapsed = start.elapsed();
    drop(rx);
    peer.join()?;
    Ok(Measurement::Rate {
        ops: total - got0,
        bytes_per_op: 8,
        elapsed,
    })
}

/// `spsc_throughput` one message per call, in the raw ring floor's exact
/// shape: the attempt is inline and [`spin_ok`] (its closure, its stall
/// clock) is entered only when the ring is full/empty, as the floor enters
/// [`spin_until`] only when its cached index says so. Running every
/// message through `spin_ok` (its closure, `Result<bool, String>` and stall
/// clock set up per message, in one loop shared with the batched variant)
/// made this impl ≈1.4× slower than the same ring in the floor's loop
/// (40–55 vs 57–80 M msg/s here): it measured the loop, not the ring.
fn throughput_single<P: PushEnd, C: PopEnd>(
    p: &Params,
    attach_tx: impl FnOnce() -> Option<P>,
    attach_rx: impl FnOnce() -> Result<C, String>,
) -> RunResult {
    let total = p.warmup + p.ops;
    let peer = spawn_peer(p.cpus.get(1).copied(), || {
        peer_guard();
        let Some(mut tx) = attach_tx() else {
            return 2;
        };
        for i in 0..total {
            match tx.try_push(i) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => {
                    if spin_ok("spsc producer", || match tx.try_push(i) {
                        Ok(()) => Ok(true),
                        Err(TrySendError::Full(_)) => Ok(false),
                        Err(e) => Err(e.to_string()),
                    })
                    .is_err()
                    {
                        return 3;
                    }
                }
                Err(_) => return 3,
            }
        }
        0
    })
    .map_err(err("fork"))?;
    let mut rx = attach_rx()?;
    pin_index(&p.cpus, 0).map_err(err("pin"))?;
    let mut start = Instant::now();
    for i in 0..total {
        if i == p.warmup {
            start = Instant::now();
        }
        let v = match rx.try_pop() {
            Ok(v) => v,
            Err(TryRecvError::Empty) => {
                let mut v = 0;
                spin_ok("spsc consumer", || match rx.try_pop() {
                    Ok(x) => {
                        v = x;
                        Ok(true)
                    }
                    Err(TryRecvError::Empty) => Ok(false),
                    Err(e) => Err(e.to_string()),
                })?;
                v
            }
            Err(e) => return Err(e.to_string()),
        };
        if v != i {
            return Err(format!("spsc: read {v}, expected {i}"));
        }
    }
    let elapsed = start.elapsed();
    drop(rx);
    peer.join()?;
    Ok(Measurement::Rate {
        ops: p.ops,
        bytes_per_op: 8,
        elapsed,
    })
}

/// The pushing end of a `u64` SPSC ring, with the core error type (no
/// adapter in between: [`throughput_single`] must compile to the floor's
/// loop around the ring's own inlined `try_push`).
trait PushEnd {
    fn try_push(&mut self, v: u64) -> Result<(), TrySendError<u64>>;
}
/// The popping end, likewise.
trait PopEnd {
    fn try_pop(&mut self) -> Result<u64, TryRecvError>;
}
macro_rules! spsc_ends {
    ($producer:ident, $consumer:ident) => {
        impl PushEnd for $producer<'_, u64> {
            #[inline(always)]
            fn try_push(&mut self, v: u64) -> Result<(), TrySendError<u64>> {
                $producer::try_push(self, v)
            }
        }
        impl PopEnd for $consumer<'_, u64> {
            #[inline(always)]
            fn try_pop(&mut self) -> Result<u64, TryRecvError> {
                $consumer::try_pop(self)
            }
        }
    };
}
spsc_ends!(Producer, Consumer);
spsc_ends!(StampedProducer, StampedConsumer);

fn throughput_spsc(p: &Params) -> RunResult {
    let ring = Ring::<u64>::anonymous(THROUGHPUT_CAPACITY).map_err(err("ring"))?;
    throughput_single(
        p,
        || ring.view().producer().ok(),
        || ring.view().consumer().map_err(err("attach")),
    )
}
/// `spsc_throughput` / `shmkit_stamped`: [`throughput_single`] through a
/// [`StampedSpsc`] ring of the same capacity.
fn throughput_stamped(p: &Params) -> RunResult {
    let ring = ObjectSegment::<StampedSpsc<u64>>::anonymous(THROUGHPUT_CAPACITY)?;
    throughput_single(
        p,
        || ring.view().producer().ok(),
        || ring.view().consumer().map_err(err("attach")),
    )
}
fn throughput_spsc_batched(p: &Params) -> RunResult {
    throughput_batched(p)
}

/// Message size of `pipe_bytes` (the memcpy floor copies as much).
const PIPE_MSG: usize = 64 * 1024;

/// Ring capacity of `pipe_bytes`: 16 messages (1 MiB). A ring that holds
/// only one message makes the two processes alternate instead of copying
/// at the same time (≈0.14× memcpy here at 128 KiB, ≈0.38× at 4 messages,
/// ≈0.44× from 8 messages on).
pub const PIPE_BYTES_CAPACITY: usize = 16 * PIPE_MSG;

/// 64 KiB messages through a pipe, producer process → measuring consumer;
/// the rate clock runs from message `warmup` to the last, as the memcpy
/// floor's.
fn pipe_bytes(p: &Params) -> RunResult {
    let pipe = OneWayPipe::anonymous(PIPE_BYTES_CAPACITY).map_err(err("pipe"))?;
    let total = p.warmup + p.ops;
    let peer = spawn_peer(p.cpus.get(1).copied(), || {
        peer_guard();
        let Ok(mut tx) = pipe.view().sender() else {
            return 2;
        };
        let msg = vec![7u8; PIPE_MSG];
        for _ in 0..total {
            if tx.send_bytes_timeout(&msg, STALL).is_err() {
                return 3;
            }
        }
        0
    })
    .map_err(err("fork"))?;
    let mut rx = pipe.view().receiver().map_err(err("attach"))?;
    pin_index(&p.cpus, 0).map_err(err("pin"))?;
    let mut buf = vec![0u8; PIPE_MSG];
    let mut start = Instant::now();
    for i in 0..total {
        if i == p.warmup {
            start = Instant::now();
        }
        let n = rx
            .recv_bytes_into_timeout(&mut buf, STALL)
            .map_err(err("recv"))?;
        if n != PIPE_MSG {
            return Err(format!("pipe_bytes: got {n} bytes, expected {PIPE_MSG}"));
        }
    }
    let elapsed = start.elapsed();
    std::hint::black_box(&buf);
    drop(rx);
    peer.join()?;
    Ok(Measurement::Rate {
        ops: p.ops,
        bytes_per_op: PIPE_MSG as u64,
        elapsed,
    })
}

/// `pipe_bytes`/`raw_stream`: what moving 64 KiB messages between two
/// processes costs with no pipe at all: a ring of 16 message-sized slots
/// in shared memory, `memcpy` in (producer process) and `memcpy` out
/// (measuring consumer), one Release index store per message per side.
/// Sound only because both sides are this honest code (the indices order
/// every copy); it shows how far below single-core `memcpy` the
/// cross-core transfer alone puts any pipe.
fn raw_stream(p: &Params) -> RunResult {
    const SLOTS: u64 = 16;
    let s = Scratch::new(256 + SLOTS as usize * PIPE_MSG).map_err(err("mmap"))?;
    let (head, tail) = (s.atomic_u64(0), s.atomic_u64(128));
    let slot = |i: u64| {
        // SAFETY: slot `i % SLOTS` lies inside the mapping.
        unsafe { s.ptr().as_ptr().add(256 + (i % SLOTS) as usize * PIPE_MSG) }
    };
    let total = p.warmup + p.ops;
    let peer = spawn_peer(p.cpus.get(1).copied(), || {
        peer_guard();
        let msg = vec![7u8; PIPE_MSG];
        for i in 0..total {
            // SYNC POINT: Acquire pairs with the consumer's Release of
            // `head`: it finished reading the slot we overwrite.
            if spin_until("raw_stream producer", || {
                i - head.load(std::sync::atomic::Ordering::Acquire) < SLOTS
            })
            .is_err()
            {
                return 1;
            }
            // SAFETY: the slot is ours until we publish `tail` (above);
            // `msg` is private and PIPE_MSG bytes long.
            unsafe { std::ptr::copy_nonoverlapping(msg.as_ptr(), slot(i), PIPE_MSG) };
            // SYNC POINT: Release publishes the slot.
            tail.store(i + 1, std::sync::atomic::Ordering::Release);
        }
        0
    })
    .map_err(err("fork"))?;
    pin_index(&p.cpus, 0).map_err(err("pin"))?;
    let mut buf = vec![0u8; PIPE_MSG];
    let mut start = Instant::now();
    for i in 0..total {
        if i == p.warmup {
            start = Instant::now();
        }
        // SYNC POINT: Acquire pairs with the producer's Release of `tail`.
        spin_until("raw_stream consumer", || {
            tail.load(std::sync::atomic::Ordering::Acquire) > i
        })?;
        // SAFETY: the producer published the slot and will not touch it
        // until we release it below; `buf` is private.
        unsafe { std::ptr::copy_nonoverlapping(slot(i), buf.as_mut_ptr(), PIPE_MSG) };
        std::hint::black_box(&mut buf);
        head.store(i + 1, std::sync::atomic::Ordering::Release);
    }
    let elapsed = start.elapsed();
    peer.join()?;
    Ok(Measurement::Rate {
        ops: p.ops,
        bytes_per_op: PIPE_MSG as u64,
        elapsed,
    })
}

/// `mpmc_pxc` / `shmkit_mpmc`: [`floors::pxc`], the Vyukov floor's
/// protocol and waiting loop ([`floors::spin_yield_until`] around
/// `try_push`/`try_pop`), over one queue of [`floors::PXC_CAPACITY`];
/// consumers stop at `Disconnected` (every producer dropped its handle).
fn mpmc_pxc(p: &Params) -> RunResult {
    let (np, nc) = (p.producers.max(1), p.consumers.max(1));
    let q = Queue::<u64>::anonymous(QueueParams::new(floors::PXC_CAPACITY).with_registry(np, nc))
        .map_err(err("queue"))?;
    floors::pxc(
        p,
        |start, per| {
            let Ok(mut tx) = q.view().producer() else {
                return false;
            };
            start();
            (0..per).all(|k| {
                let mut failed = false;
                floors::spin_yield_until("shmkit_mpmc producer", || match tx.try_push(k) {
                    Ok(()) => true,
                    Err(TrySendError::Full(_)) => false,
                    Err(_) => {
                        failed = true;
                        true
                    }
                })
                .is_ok()
                    && !failed
            })
        },
        |start| {
            let Ok(mut rx) = q.view().consumer() else {
                return false;
            };
            start();
            // As the floor's consumer: one wait per message (a fresh
            // spin-then-yield count each time), until the end.
            loop {
                let mut end = None;
                if floors::spin_yield_until("shmkit_mpmc consumer", || match rx.try_pop() {
                    Ok(_) => true,
                    Err(TryRecvError::Empty) => false,
                    Err(TryRecvError::Disconnected) => {
                        end = Some(true);
                        true
                    }
                    Err(_) => {
                        end = Some(false);
                        true
                    }
                })
                .is_err()
                {
                    return false;
                }
                if let Some(ok) = end {
                    return ok;
                }
            }
        },
        || Ok(()),
    )
}

/// `mpmc_pxc` / `shmkit_mpmc_blocking`: the same with the blocking
/// `push`/`pop` (spin, then sleep on the queue's futexes).
fn mpmc_pxc_blocking(p: &Params) -> RunResult {
    let (np, nc) = (p.producers.max(1), p.consumers.max(1));
    let q = Queue::<u64>::anonymous(QueueParams::new(floors::PXC_CAPACITY).with_registry(np, nc))
        .map_err(err("queue"))?;
    floors::pxc(
        p,
        |start, per| {
            let Ok(mut tx) = q.view().producer() else {
                return false;
            };
            start();
            (0..per).all(|k| tx.push(k).is_ok())
        },
        |start| {
            let Ok(mut rx) = q.view().consumer() else {
                return false;
            };
            start();
            loop {
                match rx.pop() {
                    Ok(_) => {}
                    Err(RecvError::Disconnected) => return true,
                    Err(_) => return false,
                }
            }
        },
        || Ok(()),
    )
}

/// CPU time this process has used so far.
fn cpu_now() -> Result<std::time::Duration, String> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer.
    if unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) } != 0 {
        return Err("clock_gettime(CLOCK_PROCESS_CPUTIME_ID) failed".into());
    }
    Ok(std::time::Duration::new(
        ts.tv_sec as u64,
        ts.tv_nsec as u32,
    ))
}

/// A blocking round trip through two SPSC rings of [`RTT_CAPACITY`]: the
/// parent pushes `i` and pops the answer, the peer pops `i`, busy-waits
/// `p.delay` (the time a server takes to answer), and pushes it back;
/// every blocking call of both sides waits with `spin`. One sample per
/// round trip, and the parent's CPU time over the measured ones.
fn delayed_round_trips(p: &Params, spin: AdaptiveSpin) -> RunResult {
    let q = [
        Ring::<u64>::anonymous(RTT_CAPACITY).map_err(err("ring"))?,
        Ring::<u64>::anonymous(RTT_CAPACITY).map_err(err("ring"))?,
    ];
    let total = p.warmup + p.ops;
    let delay = p.delay;
    let peer = spawn_peer(p.cpus.get(1).copied(), || {
        peer_guard();
        let (Ok(mut rx), Ok(mut tx)) = (q[0].view().consumer(), q[1].view().producer()) else {
            return 2;
        };
        rx.set_spin(spin);
        tx.set_spin(spin);
        for i in 1..=total {
            if rx.pop_timeout(STALL) != Ok(i) {
                return 3;
            }
            if !delay.is_zero() {
                let t = Instant::now();
                while t.elapsed() < delay {
                    std::hint::spin_loop();
                }
            }
            if tx.push_timeout(i, STALL).is_err() {
                return 3;
            }
        }
        0
    })
    .map_err(err("fork"))?;
    let mut tx = q[0].view().producer().map_err(err("attach"))?;
    let mut rx = q[1].view().consumer().map_err(err("attach"))?;
    tx.set_spin(spin);
    rx.set_spin(spin);
    pin_index(&p.cpus, 0).map_err(err("pin"))?;
    let mut cpu0 = None;
    let samples = time_each(p, |i| {
        if i == p.warmup {
            cpu0 = Some(cpu_now()?);
        }
        let i = i + 1;
        tx.push_timeout(i, STALL).map_err(err("push"))?;
        match rx.pop_timeout(STALL) {
            Ok(v) if v == i => Ok(()),
            Ok(v) => Err(format!("delay_sweep: echo {v}, expected {i}")),
            Err(e) => Err(format!("delay_sweep: {e}")),
        }
    })?;
    let cpu = cpu_now()?.saturating_sub(cpu0.ok_or("delay_sweep: no measured round trip")?);
    drop((tx, rx));
    peer.join()?;
    Ok(Measurement::LatenciesCpu {
        cpu_ns_per_op: cpu.as_nanos() as f64 / p.ops.max(1) as f64,
        samples,
    })
}

fn delay_pure_spin(p: &Params) -> RunResult {
    delayed_round_trips(
        p,
        AdaptiveSpin::fixed(Spin {
            iterations: u32::MAX,
        }),
    )
}
fn delay_pure_park(p: &Params) -> RunResult {
    delayed_round_trips(p, AdaptiveSpin::fixed(Spin::NONE))
}
fn delay_adaptive(p: &Params) -> RunResult {
    delayed_round_trips(p, AdaptiveSpin::new())
}
/// `blocking_rtt` / `shmkit_spsc_adaptive`: the delay-sweep round trip
/// with no delay and the default policy.
fn blocking_spsc_adaptive(p: &Params) -> RunResult {
    delayed_round_trips(
        &Params {
            delay: std::time::Duration::ZERO,
            ..p.clone()
        },
        AdaptiveSpin::new(),
    )
}
