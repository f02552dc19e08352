//! shmkit's queue impls for the benchmark engine.
//!
//! | case | impl | what it runs |
//! |---|---|---|
//! | `busy_rtt` | `shmkit_spsc`, `shmkit_mpmc`, `shmkit_pipe` | a `msg_size`-byte message bounced A→B→A through two queues between two pinned processes, busy-polling `try_` calls; one sample per round trip |
//! | `blocking_rtt` | `shmkit_spsc_blocking`, `shmkit_mpmc_blocking`, `shmkit_pipe_blocking` | the same with blocking calls and `Spin::NONE`, so every receive parks |
//! | `spsc_throughput` | `shmkit_spsc`, `shmkit_spsc_batched` | 8-byte messages one producer → one consumer process, one `try_push` per message or `push_slice`/`pop_into` batches of 64 |
//! | `pipe_bytes` | `shmkit_pipe` | 64 KiB messages through a 1 MiB pipe, producer → consumer process |
//! | `mpmc_pxc` | `shmkit_mpmc` | `producers` × `consumers` processes through one queue of capacity 1024 |
//!
//! Messages for the `Pod` queues are `[u64; W]` with `W` the smallest of
//! 1, 8, 64, 512 words that holds `msg_size` bytes. Samples are taken with
//! `Instant` (≈20–30 ns per read on a VM, included in every sample alike).

use std::time::{Duration, Instant};

use shmkit_core::queue::pipe::{PipeReceiver, PipeRecvError, PipeSender};
use shmkit_core::queue::{TryRecvError, TrySendError};
use shmkit_core::wait::Spin;
use shmkit_core::Pod;
use shmkit_posix::queue::{SharedDuplexPipe, SharedPipe, SharedQueue, SharedRing};

use super::proc::{pin_index, spawn_peer, Scratch};
use super::{Impl, Measurement, Params, RunResult};

/// shmkit's queue impls, as `(case, impl)`.
#[must_use]
pub fn impls() -> Vec<(&'static str, Impl)> {
    let i = |name, run| Impl { name, run };
    vec![
        ("busy_rtt", i("shmkit_spsc", busy_spsc)),
        ("busy_rtt", i("shmkit_mpmc", busy_mpmc)),
        ("busy_rtt", i("shmkit_pipe", busy_pipe)),
        ("blocking_rtt", i("shmkit_spsc_blocking", blocking_spsc)),
        ("blocking_rtt", i("shmkit_mpmc_blocking", blocking_mpmc)),
        ("blocking_rtt", i("shmkit_pipe_blocking", blocking_pipe)),
        ("spsc_throughput", i("shmkit_spsc", throughput_spsc)),
        (
            "spsc_throughput",
            i("shmkit_spsc_batched", throughput_spsc_batched),
        ),
        ("pipe_bytes", i("shmkit_pipe", pipe_bytes)),
        ("mpmc_pxc", i("shmkit_mpmc", mpmc_pxc)),
    ]
}

/// A busy-poll loop gives up after this long without progress (a dead
/// peer), instead of hanging the benchmark.
const STALL: Duration = Duration::from_secs(10);

fn err<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> String {
    move |e| format!("{what}: {e}")
}

/// One direction of a message channel, as the round-trip loops see it.
trait Tx {
    fn try_send(&mut self, msg: &[u8]) -> Result<bool, String>;
    fn send(&mut self, msg: &[u8]) -> Result<(), String>;
}
trait Rx {
    fn try_recv(&mut self, buf: &mut [u8]) -> Result<bool, String>;
    fn recv(&mut self, buf: &mut [u8]) -> Result<(), String>;
}

/// Spins on `f` until it returns `Ok(true)`; an error after [`STALL`].
fn spin(mut f: impl FnMut() -> Result<bool, String>) -> Result<(), String> {
    let mut n = 0u32;
    let mut since: Option<Instant> = None;
    loop {
        if f()? {
            return Ok(());
        }
        n = n.wrapping_add(1);
        if n % 4096 == 0 {
            let t = *since.get_or_insert_with(Instant::now);
            if t.elapsed() > STALL {
                return Err("peer stalled".into());
            }
        }
        std::hint::spin_loop();
    }
}

fn to_words<const W: usize>(msg: &[u8]) -> [u64; W] {
    let mut v = [0u64; W];
    for (w, chunk) in v.iter_mut().zip(msg.chunks(8)) {
        let mut b = [0u8; 8];
        b[..chunk.len()].copy_from_slice(chunk);
        *w = u64::from_le_bytes(b);
    }
    v
}

fn from_words(v: &[u64], buf: &mut [u8]) {
    for (w, chunk) in v.iter().zip(buf.chunks_mut(8)) {
        chunk.copy_from_slice(&w.to_le_bytes()[..chunk.len()]);
    }
}

macro_rules! pod_endpoints {
    ($tx:ty, $rx:ty) => {
        impl<const W: usize> Tx for $tx
        where
            [u64; W]: Pod,
        {
            fn try_send(&mut self, msg: &[u8]) -> Result<bool, String> {
                match self.try_push(to_words(msg)) {
                    Ok(()) => Ok(true),
                    Err(TrySendError::Full(_)) => Ok(false),
                    Err(e) => Err(e.to_string()),
                }
            }
            fn send(&mut self, msg: &[u8]) -> Result<(), String> {
                self.push(to_words(msg)).map_err(|e| e.to_string())
            }
        }
        impl<const W: usize> Rx for $rx
        where
            [u64; W]: Pod,
        {
            fn try_recv(&mut self, buf: &mut [u8]) -> Result<bool, String> {
                match self.try_pop() {
                    Ok(v) => {
                        from_words(&v, buf);
                        Ok(true)
                    }
                    Err(TryRecvError::Empty) => Ok(false),
                    Err(e) => Err(e.to_string()),
                }
            }
            fn recv(&mut self, buf: &mut [u8]) -> Result<(), String> {
                let v = self.pop().map_err(|e| e.to_string())?;
                from_words(&v, buf);
                Ok(())
            }
        }
    };
}

pod_endpoints!(
    shmkit_core::queue::ring::Producer<'_, [u64; W]>,
    shmkit_core::queue::ring::Consumer<'_, [u64; W]>
);
pod_endpoints!(
    shmkit_core::queue::mpmc::QueueProducer<'_, [u64; W]>,
    shmkit_core::queue::mpmc::QueueConsumer<'_, [u64; W]>
);

impl Tx for PipeSender<'_> {
    fn try_send(&mut self, msg: &[u8]) -> Result<bool, String> {
        match self.try_send_bytes(msg) {
            Ok(()) => Ok(true),
            Err(shmkit_core::queue::pipe::PipeSendError::Full) => Ok(false),
            Err(e) => Err(e.to_string()),
        }
    }
    fn send(&mut self, msg: &[u8]) -> Result<(), String> {
        self.send_bytes(msg).map_err(|e| e.to_string())
    }
}
impl Rx for PipeReceiver<'_> {
    fn try_recv(&mut self, buf: &mut [u8]) -> Result<bool, String> {
        match self.try_recv_bytes_into(buf) {
            Ok(_) => Ok(true),
            Err(PipeRecvError::Empty) => Ok(false),
            Err(e) => Err(e.to_string()),
        }
    }
    fn recv(&mut self, buf: &mut [u8]) -> Result<(), String> {
        self.recv_bytes_into(buf)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// The round-trip protocol: the parent (pinned to `cpus[0]`) sends on
/// `a_tx` and waits on `b_rx`; the peer (`cpus[1]`) echoes. Ends are
/// attached by `attach_parent` / `attach_peer` in their own process.
fn round_trips<P, Q>(
    p: &Params,
    busy: bool,
    attach_parent: impl FnOnce() -> Result<P, String>,
    attach_peer: impl FnOnce() -> Result<Q, String>,
) -> RunResult
where
    P: EndPair,
    Q: EndPair,
{
    let total = p.warmup + p.ops;
    let size = p.msg_size;
    let mut parent = attach_parent()?;
    let peer = spawn_peer(p.cpus.get(1).copied(), move || {
        let Ok(mut ends) = attach_peer() else {
            return 2;
        };
        let mut buf = vec![0u8; size];
        for _ in 0..total {
            let r = if busy {
                spin(|| ends.rx().try_recv(&mut buf))
                    .and_then(|()| spin(|| ends.tx().try_send(&buf)))
            } else {
                ends.rx().recv(&mut buf).and_then(|()| ends.tx().send(&buf))
            };
            if r.is_err() {
                return 3;
            }
        }
        0
    })
    .map_err(err("fork"))?;
    pin_index(&p.cpus, 0).map_err(err("pin"))?;
    let msg = vec![0x5au8; size];
    let mut buf = vec![0u8; size];
    let mut samples = Vec::with_capacity(p.ops as usize);
    for i in 0..total {
        let t0 = Instant::now();
        if busy {
            spin(|| parent.tx().try_send(&msg))?;
            spin(|| parent.rx().try_recv(&mut buf))?;
        } else {
            parent.tx().send(&msg)?;
            parent.rx().recv(&mut buf)?;
        }
        if i >= p.warmup {
            samples.push(t0.elapsed().as_nanos() as u64);
        }
    }
    drop(parent);
    peer.join()?;
    Ok(Measurement::Latencies(samples))
}

/// A process's two ends in a round trip.
trait EndPair {
    fn tx(&mut self) -> &mut dyn Tx;
    fn rx(&mut self) -> &mut dyn Rx;
}
impl<A: Tx, B: Rx> EndPair for (A, B) {
    fn tx(&mut self) -> &mut dyn Tx {
        &mut self.0
    }
    fn rx(&mut self) -> &mut dyn Rx {
        &mut self.1
    }
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
    shmkit_core::queue::ring::Producer<'_, [u64; W]>,
    shmkit_core::queue::ring::Consumer<'_, [u64; W]>,
    shmkit_core::queue::mpmc::QueueProducer<'_, [u64; W]>,
    shmkit_core::queue::mpmc::QueueConsumer<'_, [u64; W]>
);

fn spsc_rtt<const W: usize>(p: &Params, busy: bool) -> RunResult
where
    [u64; W]: Pod,
{
    let a = SharedRing::<[u64; W]>::anonymous(64).map_err(err("ring"))?;
    let b = SharedRing::<[u64; W]>::anonymous(64).map_err(err("ring"))?;
    round_trips(
        p,
        busy,
        || {
            let tx = a.ring().producer().map_err(err("attach"))?;
            let rx = b.ring().consumer().map_err(err("attach"))?;
            Ok((spin_mode(tx, busy), spin_mode(rx, busy)))
        },
        || {
            let tx = b.ring().producer().map_err(err("attach"))?;
            let rx = a.ring().consumer().map_err(err("attach"))?;
            Ok((spin_mode(tx, busy), spin_mode(rx, busy)))
        },
    )
}

fn mpmc_rtt<const W: usize>(p: &Params, busy: bool) -> RunResult
where
    [u64; W]: Pod,
{
    let a = SharedQueue::<[u64; W]>::anonymous(64).map_err(err("queue"))?;
    let b = SharedQueue::<[u64; W]>::anonymous(64).map_err(err("queue"))?;
    round_trips(
        p,
        busy,
        || {
            let tx = a.queue().producer().map_err(err("attach"))?;
            let rx = b.queue().consumer().map_err(err("attach"))?;
            Ok((spin_mode(tx, busy), spin_mode(rx, busy)))
        },
        || {
            let tx = b.queue().producer().map_err(err("attach"))?;
            let rx = a.queue().consumer().map_err(err("attach"))?;
            Ok((spin_mode(tx, busy), spin_mode(rx, busy)))
        },
    )
}

fn pipe_rtt(p: &Params, busy: bool) -> RunResult {
    let cap = (p.msg_size + 4).next_power_of_two().max(4096);
    let d = SharedDuplexPipe::anonymous(cap).map_err(err("pipe"))?;
    let attach = |which| -> Result<_, String> {
        let mut c = d.end(which).map_err(err("attach"))?;
        if !busy {
            c.tx.set_spin(Spin::NONE);
            c.rx.set_spin(Spin::NONE);
        }
        Ok((c.tx, c.rx))
    };
    round_trips(p, busy, || attach(0), || attach(1))
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

/// One producer process → the measuring consumer; the clock runs from the
/// first message after the warm-up to the last.
fn throughput(p: &Params, batched: bool) -> RunResult {
    let ring = SharedRing::<u64>::anonymous(4096).map_err(err("ring"))?;
    let total = p.warmup + p.ops;
    let mut rx = ring.ring().consumer().map_err(err("attach"))?;
    let peer = spawn_peer(p.cpus.get(1).copied(), || {
        let Ok(mut tx) = ring.ring().producer() else {
            return 2;
        };
        let mut next = 0u64;
        let mut batch = [0u64; 64];
        while next < total {
            if batched {
                let n = (total - next).min(64) as usize;
                for (k, b) in batch[..n].iter_mut().enumerate() {
                    *b = next + k as u64;
                }
                match tx.push_slice(&batch[..n]) {
                    Ok(k) => next += k as u64,
                    Err(_) => return 3,
                }
            } else {
                match tx.try_push(next) {
                    Ok(()) => next += 1,
                    Err(TrySendError::Full(_)) => std::hint::spin_loop(),
                    Err(_) => return 3,
                }
            }
        }
        0
    })
    .map_err(err("fork"))?;
    pin_index(&p.cpus, 0).map_err(err("pin"))?;
    let mut got = 0u64;
    let mut t0 = None;
    let mut out = [0u64; 64];
    if p.warmup == 0 {
        t0 = Some(Instant::now());
    }
    while got < total {
        let n = if batched {
            let mut n = 0;
            spin(|| {
                n = rx.pop_into(&mut out).map_err(|e| e.to_string())?;
                Ok(n > 0)
            })?;
            if out[0] != got {
                return Err(format!("out of order: {} != {got}", out[0]));
            }
            n as u64
        } else {
            let mut v = 0;
            spin(|| match rx.try_pop() {
                Ok(x) => {
                    v = x;
                    Ok(true)
                }
                Err(TryRecvError::Empty) => Ok(false),
                Err(e) => Err(e.to_string()),
            })?;
            if v != got {
                return Err(format!("out of order: {v} != {got}"));
            }
            1
        };
        let before = got;
        got += n;
        if before < p.warmup && got >= p.warmup {
            t0 = Some(Instant::now());
        }
    }
    let elapsed = t0.map_or(Duration::ZERO, |t| t.elapsed());
    peer.join()?;
    Ok(Measurement::Rate {
        ops: p.ops,
        bytes_per_op: 8,
        elapsed,
    })
}

fn throughput_spsc(p: &Params) -> RunResult {
    throughput(p, false)
}
fn throughput_spsc_batched(p: &Params) -> RunResult {
    throughput(p, true)
}

/// 64 KiB messages through a 1 MiB pipe, producer process → measuring
/// consumer.
fn pipe_bytes(p: &Params) -> RunResult {
    const MSG: usize = 64 * 1024;
    let pipe = SharedPipe::anonymous(1 << 20).map_err(err("pipe"))?;
    let total = p.warmup + p.ops;
    let mut rx = pipe.pipe().receiver().map_err(err("attach"))?;
    let peer = spawn_peer(p.cpus.get(1).copied(), || {
        let Ok(mut tx) = pipe.pipe().sender() else {
            return 2;
        };
        let msg = vec![7u8; MSG];
        for _ in 0..total {
            if tx.send_bytes(&msg).is_err() {
                return 3;
            }
        }
        0
    })
    .map_err(err("fork"))?;
    pin_index(&p.cpus, 0).map_err(err("pin"))?;
    let mut buf = vec![0u8; MSG];
    let mut t0 = Instant::now();
    for i in 0..total {
        if i == p.warmup {
            t0 = Instant::now();
        }
        rx.recv_bytes_into(&mut buf).map_err(err("recv"))?;
    }
    let elapsed = t0.elapsed();
    peer.join()?;
    Ok(Measurement::Rate {
        ops: p.ops,
        bytes_per_op: MSG as u64,
        elapsed,
    })
}

/// `producers` × `consumers` processes through one queue; producers push
/// `(warmup + ops) / producers` messages each; the clock runs from the
/// start signal until every process is done.
fn mpmc_pxc(p: &Params) -> RunResult {
    let (np, nc) = (p.producers.max(1), p.consumers.max(1));
    let q = SharedQueue::<u64>::anonymous_with(1024, np, nc).map_err(err("queue"))?;
    let per = (p.warmup + p.ops) / np as u64;
    let s = Scratch::new(4096).map_err(err("mmap"))?;
    let (ready, go) = (s.atomic_u32(0), s.atomic_u32(128));
    let n = p.cpus.len().max(1);
    let mut peers = Vec::new();
    for i in 0..np + nc {
        let (q, ready, go) = (&q, ready, go);
        let cpu = p.cpus.get(i % n).copied();
        peers.push(
            spawn_peer(cpu, move || {
                let wait_go = || {
                    ready.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    while go.load(std::sync::atomic::Ordering::Acquire) == 0 {
                        std::thread::yield_now();
                    }
                };
                if i < np {
                    let Ok(mut tx) = q.queue().producer() else {
                        return 2;
                    };
                    wait_go();
                    for k in 0..per {
                        if tx.push(k).is_err() {
                            return 3;
                        }
                    }
                } else {
                    let Ok(mut rx) = q.queue().consumer() else {
                        return 2;
                    };
                    wait_go();
                    while rx.pop().is_ok() {}
                }
                0
            })
            .map_err(err("fork"))?,
        );
    }
    let t_wait = Instant::now();
    while ready.load(std::sync::atomic::Ordering::SeqCst) < (np + nc) as u32 {
        if t_wait.elapsed() > STALL {
            return Err("peers did not start".into());
        }
        std::thread::yield_now();
    }
    let t0 = Instant::now();
    go.store(1, std::sync::atomic::Ordering::Release);
    for peer in peers {
        peer.join()?;
    }
    Ok(Measurement::Rate {
        ops: per * np as u64,
        bytes_per_op: 8,
        elapsed: t0.elapsed(),
    })
}
