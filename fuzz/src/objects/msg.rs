//! The byte-message queue (`ByteQueue`: the MPMC queue's stamps and
//! registries, plus a length word and `max_len` bytes per slot), laid out
//! and attached by the core object ([`MsgQueue`]) as in a segment. The
//! joinable queue's target ([`super::joinable`]) runs the same operations
//! over its own producers, with its task count beside them.

use shmkit_core::queue::joinable::{JoinableProducer, JoinableSendError};
use shmkit_core::queue::msg::{
    ByteConsumer, ByteProducer, ByteQueue, MsgParams, MsgQueue, MsgRecvError, MsgSendError,
    SlotWriter, TooLong,
};
use shmkit_core::wait::{Deadline, Spin};

use super::{attach, object_region, Fifo};
use crate::{Clock, Input, MAX_OPS};

/// Longest messages the setup byte chooses from (1 byte to just over a
/// word, and a few words).
const MAX_LENS: [usize; 6] = [1, 3, 8, 9, 16, 40];

/// The queue's shape from the input: setup bits 1..3 choose the capacity
/// (1 to 16), the next byte the registry sizes (1 to 4 each, bits 0..3)
/// and `max_len` (bits 4..7).
pub fn params(setup: u8, input: &mut Input<'_>) -> MsgParams {
    let shape = input.u8();
    let capacity = 1 << ((setup >> 1) % 5);
    let producers = 1 + usize::from(shape % 4);
    let consumers = 1 + usize::from((shape >> 2) % 4);
    let max_len = MAX_LENS[usize::from(shape >> 4) % MAX_LENS.len()];
    MsgParams::new(capacity, max_len).with_registry(producers, consumers)
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let setup = input.u8();
    let params = params(setup, &mut input);
    let region =
        object_region::<MsgQueue>(&params, setup, &mut input).expect("valid queue parameters");
    let queue: ByteQueue<'_> = attach::<MsgQueue>(&region, &params);
    run_ops(
        setup,
        &queue,
        &mut input,
        || queue.producer(),
        &mut NoHooks,
        &|input| region.scribble(input),
    );
}

/// What a target adds to the common operations.
pub trait Hooks {
    /// The target's own operation `op` (11 or 12).
    fn op(&mut self, op: u8, input: &mut Input<'_>);
    /// A message was sent (committed).
    fn sent(&mut self);
    /// A peer wrote: stop checking models.
    fn scribbled(&mut self);
}

/// The byte queue's: nothing more.
struct NoHooks;

impl Hooks for NoHooks {
    fn op(&mut self, _: u8, _: &mut Input<'_>) {}
    fn sent(&mut self) {}
    fn scribbled(&mut self) {}
}

/// What a target's producers are: the byte queue's own, or the joinable
/// queue's (which count a task per message).
pub trait Producer {
    /// `try_send_with`, its error mapped to the byte queue's.
    fn try_send_with_(
        &mut self,
        encode: impl FnOnce(&mut SlotWriter<'_>) -> Result<(), TooLong>,
    ) -> Result<(), MsgSendError<TooLong>>;
    /// `send_with_deadline`, likewise.
    fn send_with_deadline_(
        &mut self,
        encode: impl FnOnce(&mut SlotWriter<'_>) -> Result<(), TooLong>,
        deadline: Option<Deadline>,
    ) -> Result<(), MsgSendError<TooLong>>;
    /// `try_send` (bytes, checked against `max_len` first).
    fn try_send_(&mut self, bytes: &[u8]) -> Result<(), MsgSendError<TooLong>>;
    fn set_spin_(&mut self, spin: Spin);
    fn max_len_(&self) -> usize;
}

impl Producer for ByteProducer<'_> {
    fn try_send_with_(
        &mut self,
        encode: impl FnOnce(&mut SlotWriter<'_>) -> Result<(), TooLong>,
    ) -> Result<(), MsgSendError<TooLong>> {
        self.try_send_with(encode)
    }
    fn send_with_deadline_(
        &mut self,
        encode: impl FnOnce(&mut SlotWriter<'_>) -> Result<(), TooLong>,
        deadline: Option<Deadline>,
    ) -> Result<(), MsgSendError<TooLong>> {
        self.send_with_deadline(encode, deadline)
    }
    fn try_send_(&mut self, bytes: &[u8]) -> Result<(), MsgSendError<TooLong>> {
        self.try_send(bytes)
    }
    fn set_spin_(&mut self, spin: Spin) {
        self.set_spin(spin);
    }
    fn max_len_(&self) -> usize {
        self.max_len()
    }
}

/// The joinable producer's errors as the byte queue's, `TooManyTasks`
/// (a forged count at its limit) as `Full`: nothing was sent.
fn unjoin(e: JoinableSendError<TooLong>) -> MsgSendError<TooLong> {
    use shmkit_core::queue::joinable::JoinableEncodeError as J;
    match e {
        MsgSendError::Full | MsgSendError::Encode(J::TooManyTasks) => MsgSendError::Full,
        MsgSendError::Timeout => MsgSendError::Timeout,
        MsgSendError::Disconnected => MsgSendError::Disconnected,
        MsgSendError::Corrupt => MsgSendError::Corrupt,
        MsgSendError::Encode(J::Encode(e)) => MsgSendError::Encode(e),
    }
}

impl Producer for JoinableProducer<'_> {
    fn try_send_with_(
        &mut self,
        encode: impl FnOnce(&mut SlotWriter<'_>) -> Result<(), TooLong>,
    ) -> Result<(), MsgSendError<TooLong>> {
        self.try_send_with(encode).map_err(unjoin)
    }
    fn send_with_deadline_(
        &mut self,
        encode: impl FnOnce(&mut SlotWriter<'_>) -> Result<(), TooLong>,
        deadline: Option<Deadline>,
    ) -> Result<(), MsgSendError<TooLong>> {
        self.send_with_deadline(encode, deadline).map_err(unjoin)
    }
    fn try_send_(&mut self, bytes: &[u8]) -> Result<(), MsgSendError<TooLong>> {
        self.try_send(bytes).map_err(unjoin)
    }
    fn set_spin_(&mut self, spin: Spin) {
        self.set_spin(spin);
    }
    fn max_len_(&self) -> usize {
        self.max_len()
    }
}

/// A message from the input: up to a few bytes past `max_len`.
fn message(input: &mut Input<'_>, max_len: usize) -> Vec<u8> {
    let len = usize::from(input.u8()) % (max_len + 4);
    let mut msg = input.bytes(len).to_vec();
    msg.resize(len, 0xa5);
    msg
}

/// A receive buffer: usually `max_len` or more, sometimes too short.
fn buffer(input: &mut Input<'_>, max_len: usize) -> Vec<u8> {
    let len = match input.u8() % 4 {
        0 => usize::from(input.u8()) % (max_len + 1),
        1 => max_len + 5,
        _ => max_len,
    };
    vec![0u8; len]
}

/// Checks what a receive into a buffer of `buf_len` bytes gave.
///
/// # Panics
/// A length longer than `max_len` or than the buffer, or a too-short
/// buffer not reported as such.
fn check_recv(r: &Result<usize, MsgRecvError>, buf_len: usize, max_len: usize) {
    match r {
        Ok(n) => assert!(*n <= max_len && *n <= buf_len, "received {n} bytes"),
        Err(MsgRecvError::BufferTooSmall { needed }) => {
            assert!(buf_len < max_len && *needed == max_len);
        }
        Err(_) => assert!(buf_len >= max_len, "a short buffer must be refused first"),
    }
}

/// The operations of both message queue targets: `producer` attaches one
/// (of the byte queue or the joinable queue), `hooks` adds the target's
/// own operations and models, and `scribble` is the peer.
pub fn run_ops<P: Producer>(
    setup: u8,
    queue: &ByteQueue<'_>,
    input: &mut Input<'_>,
    producer: impl Fn() -> Result<P, shmkit_core::queue::roles::AttachError>,
    hooks: &mut dyn Hooks,
    scribble: &dyn Fn(&mut Input<'_>),
) {
    let max_len = queue.max_len();
    let mut fifo: Fifo<Vec<u8>> = Fifo::new(setup);
    let mut clock = Clock::new();
    let mut txs: Vec<P> = Vec::new();
    let mut rxs: Vec<ByteConsumer<'_>> = Vec::new();
    for _ in 0..MAX_OPS {
        if input.is_empty() {
            break;
        }
        let op = input.u8() % 16;
        match op {
            0 => {
                if let Ok(p) = producer() {
                    assert_eq!(p.max_len_(), max_len);
                    txs.push(p);
                }
            }
            1 => {
                if let Ok(c) = queue.consumer() {
                    rxs.push(c);
                }
            }
            2 => {
                let i = input.u8();
                if !txs.is_empty() {
                    txs.remove(usize::from(i) % txs.len());
                }
            }
            3 => {
                let i = input.u8();
                if !rxs.is_empty() {
                    rxs.remove(usize::from(i) % rxs.len());
                }
            }
            4 => {
                let (i, msg) = (input.u8(), message(input, max_len));
                if let Some(p) = pick(&mut txs, i) {
                    let r = p.try_send_(&msg);
                    if msg.len() > max_len {
                        assert!(
                            matches!(r, Err(MsgSendError::Encode(TooLong { .. }))),
                            "{} bytes into a queue of max_len {max_len}: {r:?}",
                            msg.len()
                        );
                    }
                    if r.is_ok() {
                        fifo.sent(msg);
                        hooks.sent();
                    }
                }
            }
            5 => {
                // A message written in pieces, by an encoder that may fail
                // half-way (nothing is sent then: the slot is given up).
                let (i, msg, t) = (input.u8(), message(input, max_len), clock.timeout(input));
                let (cut, fail) = (usize::from(input.u8()), input.u8().is_multiple_of(4));
                let timed = input.u8().is_multiple_of(2);
                if let Some(p) = pick(&mut txs, i) {
                    let encode = |w: &mut SlotWriter<'_>| {
                        let cut = cut % (msg.len() + 1);
                        w.write(&msg[..cut])?;
                        let _ = (w.len(), w.is_empty(), w.remaining());
                        if fail {
                            return Err(TooLong { len: 0, max_len: 0 });
                        }
                        w.write(&msg[cut..])
                    };
                    let r = if timed {
                        Clock::timed(t, "ByteProducer::send_with_deadline", || {
                            p.send_with_deadline_(encode, Some(Deadline::after(t)))
                        })
                    } else {
                        p.try_send_with_(encode)
                    };
                    if r.is_ok() {
                        assert!(!fail && msg.len() <= max_len);
                        fifo.sent(msg);
                        hooks.sent();
                    }
                }
            }
            6 | 7 => {
                let (i, mut buf) = (input.u8(), buffer(input, max_len));
                let t = clock.timeout(input);
                if let Some(c) = pick(&mut rxs, i) {
                    let r = if op == 6 {
                        c.try_recv_into(&mut buf)
                    } else {
                        Clock::timed(t, "ByteConsumer::recv_into_timeout", || {
                            c.recv_into_timeout(&mut buf, t)
                        })
                    };
                    check_recv(&r, buf.len(), max_len);
                    if let Ok(n) = r {
                        fifo.received(&buf[..n].to_vec());
                    }
                }
            }
            8 => {
                // Empty receives in a row: every 4096th asks about peers'
                // liveness and may skip positions of dead claimers.
                if let Some(c) = pick(&mut rxs, input.u8()) {
                    let mut buf = vec![0u8; max_len];
                    for _ in 0..1024 {
                        let r = c.try_recv_into(&mut buf);
                        check_recv(&r, max_len, max_len);
                        if let Ok(n) = r {
                            fifo.received(&buf[..n].to_vec());
                        }
                    }
                }
            }
            9 => {
                if let Some(c) = pick(&mut rxs, input.u8()) {
                    let mut buf = vec![0u8; max_len];
                    let r = c.try_recv_with(&mut buf, <[u8]>::to_vec);
                    if let Ok(msg) = r {
                        assert!(msg.len() <= max_len);
                        fifo.received(&msg);
                    }
                }
            }
            10 => {
                let _ = (
                    queue.len(),
                    queue.is_empty(),
                    queue.capacity(),
                    queue.max_len(),
                    queue.raw().control_positions(),
                );
                let spin = Spin {
                    iterations: u32::from(input.u8()),
                };
                txs.iter_mut().for_each(|p| p.set_spin_(spin));
                rxs.iter_mut().for_each(|c| c.set_spin(spin));
            }
            11..=12 => hooks.op(op, input),
            _ => {
                scribble(input);
                fifo.scribbled();
                hooks.scribbled();
            }
        }
    }
    drop(rxs);
    drop(txs);
}

fn pick<H>(handles: &mut [H], i: u8) -> Option<&mut H> {
    if handles.is_empty() {
        return None;
    }
    let n = handles.len();
    handles.get_mut(usize::from(i) % n)
}
