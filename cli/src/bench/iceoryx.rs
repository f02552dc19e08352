//! iceoryx2 0.10 publish-subscribe as a peer (cargo feature
//! `peer-iceoryx2`, off by default: it is a large dependency).
//!
//! | case | impl | what it is |
//! |---|---|---|
//! | `busy_rtt` | `iceoryx2` | two `publish_subscribe::<u64>` services (ping, pong), `send_copy` and a busy-polled `receive` |
//! | `blocking_rtt` | `iceoryx2` | the same plus two event services: `notify` after each send, the receiver sleeps in `Listener::timed_wait` until a sample is there |
//!
//! The parent creates its ports before forking the peer, which then opens
//! the services with a node of its own. A handshake (a sentinel sent until
//! `send_copy` reports a connected subscriber, in each direction) makes sure
//! no measured message goes to a subscriber that does not exist yet.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use iceoryx2::port::listener::Listener;
use iceoryx2::port::notifier::Notifier;
use iceoryx2::port::publisher::Publisher;
use iceoryx2::port::subscriber::Subscriber;
use iceoryx2::prelude::*;

use super::floors::io;
use super::proc::{pin_index, spawn_peer};
use super::timing::{peer_guard, spin_until, time_each, STALL};
use super::{Impl, Measurement, Params, RunResult};

/// The iceoryx2 peers, as `(case, impl)`.
#[must_use]
pub fn impls() -> Vec<(&'static str, Impl)> {
    vec![
        (
            "busy_rtt",
            Impl {
                name: "iceoryx2",
                run: busy,
            },
        ),
        (
            "blocking_rtt",
            Impl {
                name: "iceoryx2",
                run: blocking,
            },
        ),
    ]
}

const SENTINEL: u64 = u64::MAX;

static RUNS: AtomicU32 = AtomicU32::new(0);

fn e<T: std::fmt::Debug>(what: &'static str) -> impl Fn(T) -> String {
    move |x| format!("iceoryx2 {what}: {x:?}")
}

struct Ports {
    publ: Publisher<ipc::Service, u64, ()>,
    sub: Subscriber<ipc::Service, u64, ()>,
    notifier: Option<Notifier<ipc::Service>>,
    listener: Option<Listener<ipc::Service>>,
    // Dropped last: the ports above belong to it.
    _node: Node<ipc::Service>,
}

/// Ports sending on service `tx` and receiving on `rx` (plus their event
/// services when `events`).
fn ports(tag: &str, tx: &str, rx: &str, events: bool) -> Result<Ports, String> {
    set_log_level(LogLevel::Error);
    let node = NodeBuilder::new()
        .signal_handling_mode(SignalHandlingMode::Disabled)
        .create::<ipc::Service>()
        .map_err(e("node"))?;
    let name = |s: &str| -> Result<ServiceName, String> {
        format!("shmkit-bench/{tag}/{s}")
            .as_str()
            .try_into()
            .map_err(e("service name"))
    };
    let svc_tx = node
        .service_builder(&name(tx)?)
        .publish_subscribe::<u64>()
        .open_or_create()
        .map_err(e("publish_subscribe service"))?;
    let svc_rx = node
        .service_builder(&name(rx)?)
        .publish_subscribe::<u64>()
        .open_or_create()
        .map_err(e("publish_subscribe service"))?;
    let (notifier, listener) = if events {
        let ev_tx = node
            .service_builder(&name(&format!("{tx}-event"))?)
            .event()
            .open_or_create()
            .map_err(e("event service"))?;
        let ev_rx = node
            .service_builder(&name(&format!("{rx}-event"))?)
            .event()
            .open_or_create()
            .map_err(e("event service"))?;
        let listener = ev_rx.listener_builder().create().map_err(e("listener"))?;
        let notifier = ev_tx.notifier_builder().create().map_err(e("notifier"))?;
        (Some(notifier), Some(listener))
    } else {
        (None, None)
    };
    let sub = svc_rx
        .subscriber_builder()
        .create()
        .map_err(e("subscriber"))?;
    let publ = svc_tx
        .publisher_builder()
        .create()
        .map_err(e("publisher"))?;
    Ok(Ports {
        publ,
        sub,
        notifier,
        listener,
        _node: node,
    })
}

impl Ports {
    /// Sends `v`; the number of subscribers it reached.
    fn send(&self, v: u64) -> Result<usize, String> {
        let n = self.publ.send_copy(v).map_err(e("send"))?;
        if let Some(nt) = &self.notifier {
            nt.notify().map_err(e("notify"))?;
        }
        Ok(n)
    }

    /// The next sample: busy-polled, or sleeping on the listener.
    fn recv(&self) -> Result<u64, String> {
        let mut got: Option<Result<u64, String>> = None;
        match &self.listener {
            None => spin_until("iceoryx2 receive", || match self.sub.receive() {
                Ok(Some(s)) => {
                    got = Some(Ok(*s));
                    true
                }
                Ok(None) => false,
                Err(x) => {
                    got = Some(Err(format!("iceoryx2 receive: {x:?}")));
                    true
                }
            })?,
            Some(l) => {
                let start = Instant::now();
                while got.is_none() {
                    match self.sub.receive() {
                        Ok(Some(s)) => got = Some(Ok(*s)),
                        Ok(None) => {
                            // A short timeout only matters if a
                            // notification is lost; normally it wakes us.
                            l.timed_wait(|_| {}, Duration::from_millis(100))
                                .map_err(e("wait"))?;
                            if start.elapsed() > STALL {
                                return Err("iceoryx2: peer stalled".into());
                            }
                        }
                        Err(x) => got = Some(Err(format!("iceoryx2 receive: {x:?}"))),
                    }
                }
            }
        }
        got.unwrap_or_else(|| Err("iceoryx2: no sample".into()))
    }

    /// Sends the sentinel until a subscriber receives it.
    fn announce(&self) -> Result<(), String> {
        let start = Instant::now();
        while self.send(SENTINEL)? == 0 {
            if start.elapsed() > STALL {
                return Err("iceoryx2: peer never subscribed".into());
            }
            std::thread::yield_now();
        }
        Ok(())
    }

    /// Waits for the sentinel, then drains stale notifications.
    fn await_sentinel(&self) -> Result<(), String> {
        while self.recv()? != SENTINEL {}
        if let Some(l) = &self.listener {
            l.try_wait(|_| {}).map_err(e("wait"))?;
        }
        Ok(())
    }
}

fn rtt(p: &Params, events: bool) -> RunResult {
    let tag = format!(
        "{}-{}",
        std::process::id(),
        RUNS.fetch_add(1, Ordering::Relaxed)
    );
    let mine = ports(&tag, "ping", "pong", events)?;
    let total = p.warmup + p.ops;
    let peer = spawn_peer(p.cpus.get(1).copied(), || {
        peer_guard();
        let run = || -> Result<(), String> {
            let theirs = ports(&tag, "pong", "ping", events)?;
            theirs.await_sentinel()?;
            theirs.announce()?;
            for _ in 0..total {
                let v = theirs.recv()?;
                theirs.send(v)?;
            }
            Ok(())
        };
        i32::from(run().is_err())
    })
    .map_err(io("fork"))?;
    pin_index(&p.cpus, 0).map_err(io("pin"))?;
    mine.announce()?;
    mine.await_sentinel()?;
    let samples = time_each(p, |i| {
        mine.send(i)?;
        let v = mine.recv()?;
        if v == i {
            Ok(())
        } else {
            Err(format!("iceoryx2: got {v}, expected {i}"))
        }
    })?;
    peer.join()?;
    Ok(Measurement::Latencies(samples))
}

fn busy(p: &Params) -> RunResult {
    rtt(p, false)
}

fn blocking(p: &Params) -> RunResult {
    rtt(p, true)
}
