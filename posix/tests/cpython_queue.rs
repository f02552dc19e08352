//! CPython's `_TestQueue`, `TestSimpleQueue`, `_TestConnection`,
//! `_TestListenerClient`, `_TestPoll` and the dict half of
//! `_TestContainers` (Lib/test/_test_multiprocessing.py, 3.11) ported to
//! shmkit's queues, pipes and shared maps, with real processes. Each test
//! is named after the Python test it ports; `docs/cpython-parity.md` lists
//! what is ported, what differs and what does not apply.

// Test names are `test_<python class>__<python test>`.
#![allow(non_snake_case)]

mod common;

use common::{fork, serial};
use std::time::{Duration, Instant};

use shmkit_posix::map::{SharedByteMap, SharedMap};
use shmkit_posix::message::{DecodeError, EncodeError, Message};
use shmkit_posix::msg_queue::{JoinableQueue, MessageQueue, MessageRecvError, MessageSendError};
use shmkit_posix::pipe::{self, End, Pipe, RecvError};
use shmkit_posix::queue;
use shmkit_posix::sync::Event;

/// Generous bound on anything a child does (a busy 2-vCPU machine).
const LONG: Duration = Duration::from_secs(60);
/// Python's TIMEOUT1 / TIMEOUT3.
const TIMEOUT1: Duration = Duration::from_millis(100);
const TIMEOUT3: Duration = Duration::from_millis(300);

/// Python's `assertTimingAlmostEqual(elapsed, 0)`, with slack.
fn assert_quick(t0: Instant) {
    let e = t0.elapsed();
    assert!(e < Duration::from_secs(5), "took {e:?}");
}

/// Python's `assertTimingAlmostEqual(elapsed, timeout)`: never early,
/// generously late.
fn assert_took(t0: Instant, timeout: Duration) {
    let e = t0.elapsed();
    assert!(e >= timeout, "returned early: {e:?} < {timeout:?}");
    assert!(e < timeout + Duration::from_secs(10), "late: {e:?}");
}

// ---------------------------------------------------------------------
// _TestQueue (Python's Queue of objects: MessageQueue; capacities are
// powers of two, so MAXSIZE is 8 where Python's test uses 6)

const MAXSIZE: usize = 8;

#[test]
fn test_queue__put() {
    let _serial = serial();
    let q = MessageQueue::<u64>::anonymous((MAXSIZE, 8)).unwrap();
    let child_can_start = Event::new().unwrap();
    let parent_can_continue = Event::new().unwrap();
    let proc = fork()
        .daemon(true)
        .spawn({
            let (q, start, cont) = (
                q.clone(),
                child_can_start.clone(),
                parent_can_continue.clone(),
            );
            move || {
                start.wait();
                let mut rx = q.receiver().unwrap();
                for _ in 0..MAXSIZE {
                    rx.recv().unwrap();
                }
                cont.set();
            }
        })
        .unwrap();
    assert!(q.is_empty());
    assert!(!q.is_full());
    assert_eq!(q.capacity(), MAXSIZE);
    let mut tx = q.sender().unwrap();
    tx.send(&1).unwrap(); // put(1), put(2, True), put(3, True, None)
    tx.send(&2).unwrap();
    tx.send_timeout(&3, LONG).unwrap();
    tx.try_send(&4).unwrap(); // put(4, False), put_nowait
    tx.try_send(&5).unwrap();
    tx.try_send(&6).unwrap();
    tx.send(&7).unwrap();
    tx.send(&8).unwrap();
    assert!(!q.is_empty());
    assert!(q.is_full());
    assert_eq!(q.len(), MAXSIZE);

    let t0 = Instant::now();
    assert_eq!(tx.try_send(&9), Err(MessageSendError::Full));
    assert_quick(t0);
    let t0 = Instant::now();
    assert_eq!(
        tx.send_timeout(&9, TIMEOUT1),
        Err(MessageSendError::Timeout)
    );
    assert_took(t0, TIMEOUT1);
    let t0 = Instant::now();
    assert_eq!(
        tx.send_timeout(&9, TIMEOUT3),
        Err(MessageSendError::Timeout)
    );
    assert_took(t0, TIMEOUT3);

    child_can_start.set();
    assert!(parent_can_continue.wait_timeout(LONG));
    assert!(q.is_empty());
    assert!(!q.is_full());
    proc.join().unwrap();
}

/// The same for the queue of plain values (`queue::Queue<T>`).
#[test]
fn test_queue__put_pod_queue() {
    let _serial = serial();
    let (tx, rx) = queue::channel::<u64>(MAXSIZE).unwrap();
    assert!(tx.is_empty() && !tx.is_full());
    for i in 0..MAXSIZE as u64 {
        tx.try_send(i).unwrap();
    }
    assert!(tx.is_full() && !rx.is_empty());
    let t0 = Instant::now();
    assert!(matches!(
        tx.try_send(99),
        Err(queue::TrySendError::Full(99))
    ));
    assert_quick(t0);
    let t0 = Instant::now();
    assert!(matches!(
        tx.send_timeout(99, TIMEOUT1),
        Err(queue::SendTimeoutError::Timeout(99))
    ));
    assert_took(t0, TIMEOUT1);
    let child = fork()
        .spawn(move || (0..MAXSIZE).map(|_| rx.recv().unwrap()).sum::<u64>())
        .unwrap();
    assert_eq!(child.join().unwrap(), (0..MAXSIZE as u64).sum::<u64>());
    assert!(tx.is_empty());
}

#[test]
fn test_queue__get() {
    let _serial = serial();
    let q = MessageQueue::<u64>::anonymous((MAXSIZE, 8)).unwrap();
    let child_can_start = Event::new().unwrap();
    let parent_can_continue = Event::new().unwrap();
    let proc = fork()
        .daemon(true)
        .spawn({
            let (q, start, cont) = (
                q.clone(),
                child_can_start.clone(),
                parent_can_continue.clone(),
            );
            move || {
                start.wait();
                let mut tx = q.sender().unwrap();
                for v in 2..=5u64 {
                    tx.send(&v).unwrap();
                }
                cont.set();
            }
        })
        .unwrap();
    assert!(q.is_empty());
    child_can_start.set();
    assert!(parent_can_continue.wait_timeout(LONG));
    assert!(!q.is_empty());
    let mut rx = q.receiver().unwrap();
    assert_eq!(rx.recv().unwrap(), 2); // get(True, None)
    assert_eq!(rx.recv().unwrap(), 3); // get(True)
    assert_eq!(rx.recv_timeout(Duration::from_secs(1)).unwrap(), 4); // get(timeout=1)
    assert_eq!(rx.try_recv().unwrap(), 5); // get_nowait()
    assert!(q.is_empty());

    proc.join().unwrap();
    // The child's sender is gone, so an empty queue now says
    // `Disconnected` (Python keeps waiting): keep a sender to see `Empty`
    // and `Timeout`, as Python's test does while its child lives.
    let _tx = q.sender().unwrap();
    let t0 = Instant::now();
    assert_eq!(rx.try_recv(), Err(MessageRecvError::Empty));
    assert_quick(t0);
    let t0 = Instant::now();
    assert_eq!(rx.recv_timeout(TIMEOUT1), Err(MessageRecvError::Timeout));
    assert_took(t0, TIMEOUT1);
    let t0 = Instant::now();
    assert_eq!(rx.recv_timeout(TIMEOUT3), Err(MessageRecvError::Timeout));
    assert_took(t0, TIMEOUT3);
}

/// Items put before a fork and by the forked child all arrive, in order.
#[test]
fn test_queue__fork() {
    let _serial = serial();
    let q = MessageQueue::<u64>::anonymous((32, 8)).unwrap();
    let mut tx = q.sender().unwrap();
    for i in 0..10 {
        tx.send(&i).unwrap();
    }
    let p = fork()
        .daemon(true)
        .spawn({
            let q = q.clone();
            move || {
                let mut tx = q.sender().unwrap();
                for i in 10..20u64 {
                    tx.send(&i).unwrap();
                }
            }
        })
        .unwrap();
    let mut rx = q.receiver().unwrap();
    for i in 0..20 {
        assert_eq!(rx.recv_timeout(LONG).unwrap(), i);
    }
    assert_eq!(rx.try_recv(), Err(MessageRecvError::Empty));
    p.join().unwrap();
}

#[test]
fn test_queue__qsize() {
    let q = MessageQueue::<u64>::anonymous((8, 8)).unwrap();
    let (mut tx, mut rx) = (q.sender().unwrap(), q.receiver().unwrap());
    assert_eq!(q.len(), 0);
    tx.send(&1).unwrap();
    assert_eq!(q.len(), 1);
    tx.send(&5).unwrap();
    assert_eq!(q.len(), 2);
    rx.recv().unwrap();
    assert_eq!(q.len(), 1);
    rx.recv().unwrap();
    assert_eq!(q.len(), 0);
    // The joinable queue has the same qsize/empty/full.
    let j = JoinableQueue::<u64>::anonymous((2, 8)).unwrap();
    let mut jtx = j.sender().unwrap();
    assert!(j.is_empty() && !j.is_full() && j.capacity() == 2);
    jtx.send(&1).unwrap();
    jtx.send(&2).unwrap();
    assert_eq!(j.len(), 2);
    assert!(j.is_full());
}

/// Four worker processes take items and mark each done; `join` returns
/// once all ten are done; a sentinel per worker ends them.
#[test]
fn test_queue__task_done() {
    let _serial = serial();
    const STOP: u64 = u64::MAX;
    let q = JoinableQueue::<u64>::anonymous((16, 8)).unwrap();
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let q = q.clone();
            fork()
                .daemon(true)
                .spawn(move || {
                    let mut rx = q.receiver().unwrap();
                    let mut n = 0u32;
                    while rx.recv().unwrap() != STOP {
                        q.task_done().unwrap();
                        n += 1;
                    }
                    q.task_done().unwrap();
                    n
                })
                .unwrap()
        })
        .collect();
    let mut tx = q.sender().unwrap();
    for i in 0..10 {
        tx.send(&i).unwrap();
    }
    q.join_timeout(LONG).expect("every task was marked done");
    assert_eq!(q.unfinished(), 0);
    for _ in &workers {
        tx.send(&STOP).unwrap();
    }
    let done: u32 = workers.into_iter().map(|w| w.join().unwrap()).sum();
    assert_eq!(done, 10);
}

/// `task_done()` called more times than there were items: Python's
/// `ValueError`, shmkit's `TaskDoneError::TooManyCalls`; the count stays 0.
#[test]
fn test_queue__task_done_too_many() {
    let q = JoinableQueue::<u64>::anonymous((8, 8)).unwrap();
    let (mut tx, mut rx) = (q.sender().unwrap(), q.receiver().unwrap());
    tx.send(&1).unwrap();
    rx.recv().unwrap();
    assert_eq!(q.task_done().unwrap(), 0);
    assert!(matches!(
        q.task_done(),
        Err(shmkit_core::queue::joinable::TaskDoneError::TooManyCalls)
    ));
    assert_eq!(q.unfinished(), 0);
    q.join_timeout(Duration::ZERO).unwrap();
}

#[test]
fn test_queue__timeout() {
    let q = MessageQueue::<u64>::anonymous((8, 8)).unwrap();
    let _tx = q.sender().unwrap();
    let mut rx = q.receiver().unwrap();
    let t0 = Instant::now();
    assert_eq!(
        rx.recv_timeout(Duration::from_millis(200)),
        Err(MessageRecvError::Timeout)
    );
    assert!(t0.elapsed() >= Duration::from_millis(100));
}

/// A message that cannot be encoded (Python: an object whose pickling
/// raises): `Some(0)` here.
struct Picky(u8);

impl Message for Picky {
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        if self.0 == 0 {
            return Err(EncodeError::new("Picky(0) cannot be encoded"));
        }
        out.push(self.0);
        Ok(())
    }

    fn decode(bytes: &[u8]) -> Result<Picky, DecodeError> {
        match bytes {
            [b] => Ok(Picky(*b)),
            _ => Err(DecodeError::new("not one byte")),
        }
    }
}

/// bpo-30414: a message that fails to encode is reported to the sender
/// and leaves the queue working.
#[test]
fn test_queue__queue_feeder_donot_stop_onexc() {
    let q = MessageQueue::<Picky>::anonymous((2, 8)).unwrap();
    let (mut tx, mut rx) = (q.sender().unwrap(), q.receiver().unwrap());
    assert!(matches!(
        tx.send(&Picky(0)),
        Err(MessageSendError::Encode(_))
    ));
    tx.send_timeout(&Picky(1), LONG).unwrap();
    assert_eq!(rx.recv_timeout(LONG).unwrap().0, 1);
    assert!(q.is_empty());
    // Both slots are free again.
    tx.try_send(&Picky(2)).unwrap();
    tx.try_send(&Picky(3)).unwrap();
    assert_eq!(q.len(), 2);
}

/// bpo-33078 exactly: with `maxsize=1`, a put after a put that failed to
/// encode must not block: a message of unknown length is encoded before
/// it takes a slot.
#[test]
fn test_queue__queue_feeder_donot_stop_onexc_maxsize_1() {
    let q = MessageQueue::<Picky>::anonymous((1, 8)).unwrap();
    let (mut tx, mut rx) = (q.sender().unwrap(), q.receiver().unwrap());
    assert!(tx.send(&Picky(0)).is_err());
    tx.send_timeout(&Picky(1), Duration::from_secs(5)).unwrap();
    assert_eq!(q.len(), 1);
    assert_eq!(rx.recv_timeout(LONG).unwrap().0, 1);
    assert!(q.is_empty());
}

// ---------------------------------------------------------------------
// TestSimpleQueue

#[test]
fn test_simple_queue__empty() {
    let _serial = serial();
    let q = MessageQueue::<u8>::anonymous((8, 1)).unwrap();
    let child_can_start = Event::new().unwrap();
    let parent_can_continue = Event::new().unwrap();
    let proc = fork()
        .daemon(true)
        .spawn({
            let (q, start, cont) = (
                q.clone(),
                child_can_start.clone(),
                parent_can_continue.clone(),
            );
            move || {
                start.wait();
                let mut tx = q.sender().unwrap();
                tx.send(&u8::from(q.is_empty())).unwrap();
                tx.send(&u8::from(q.is_empty())).unwrap();
                cont.set();
            }
        })
        .unwrap();
    assert!(q.is_empty());
    child_can_start.set();
    assert!(parent_can_continue.wait_timeout(LONG));
    assert!(!q.is_empty());
    let mut rx = q.receiver().unwrap();
    assert_eq!(rx.recv().unwrap(), 1);
    assert_eq!(rx.recv().unwrap(), 0);
    assert!(q.is_empty());
    proc.join().unwrap();
}

// ---------------------------------------------------------------------
// _TestConnection

/// Python's `_echo`: sends back every message until the empty one.
fn echo(conn: pipe::Connection) {
    while let Ok(msg) = conn.recv_bytes() {
        if msg.is_empty() {
            break;
        }
        conn.send_bytes(&msg).unwrap();
    }
    conn.close();
}

fn i32s(v: &[i32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_ne_bytes()).collect()
}

#[test]
fn test_connection__connection() {
    let _serial = serial();
    // 16 MiB messages need a 32 MiB ring (a message holds capacity - 4).
    let (conn, child_conn) = pipe::duplex(32 << 20).unwrap();
    let p = fork().daemon(true).spawn(move || echo(child_conn)).unwrap();

    let seq = [1.0f64, 2.25, f64::NAN];
    conn.send(&seq).unwrap();
    let back: [f64; 3] = conn.recv().unwrap();
    assert_eq!(back[..2], seq[..2]);
    assert!(back[2].is_nan());

    let msg = b"hello world".to_vec();
    let longmsg = msg.repeat(10);
    conn.send_bytes(&msg).unwrap();
    assert_eq!(conn.recv_bytes().unwrap(), msg);

    // recv_bytes_into: the whole buffer, then at an offset of 3 items.
    let arr = i32s(&[0, 1, 2, 3]);
    let mut buffer = [0u8; 40];
    conn.send_bytes(&arr).unwrap();
    assert_eq!(conn.recv_bytes_into(&mut buffer).unwrap(), arr.len());
    assert_eq!(buffer.to_vec(), i32s(&[0, 1, 2, 3, 0, 0, 0, 0, 0, 0]));
    let mut buffer = [0u8; 40];
    conn.send_bytes(&arr).unwrap();
    assert_eq!(conn.recv_bytes_into(&mut buffer[12..]).unwrap(), arr.len());
    assert_eq!(buffer.to_vec(), i32s(&[0, 0, 0, 0, 1, 2, 3, 0, 0, 0]));

    // BufferTooShort: shmkit says how long the message is and keeps it.
    let mut small = [b' '; 40];
    conn.send_bytes(&longmsg).unwrap();
    assert_eq!(
        conn.recv_bytes_into(&mut small),
        Err(RecvError::BufferTooSmall {
            needed: longmsg.len()
        })
    );
    assert_eq!(small, [b' '; 40], "the buffer was written");
    assert_eq!(conn.recv_bytes().unwrap(), longmsg);

    // poll
    let t0 = Instant::now();
    assert!(!conn.poll(Duration::ZERO).unwrap());
    assert_quick(t0);
    let t0 = Instant::now();
    assert!(!conn.poll(TIMEOUT1).unwrap());
    assert_took(t0, TIMEOUT1);
    conn.send(&0u8).unwrap();
    let t0 = Instant::now();
    assert!(conn.poll(LONG).unwrap());
    assert!(t0.elapsed() < Duration::from_secs(10));
    let t0 = Instant::now();
    assert!(conn.poll(TIMEOUT1).unwrap(), "still ready");
    assert_quick(t0);
    assert_eq!(conn.recv::<u8>().unwrap(), 0);

    let really_big_msg = vec![b'X'; 16 << 20];
    conn.send_bytes(&really_big_msg).unwrap();
    assert!(conn.recv_bytes().unwrap() == really_big_msg);

    conn.send_bytes(b"").unwrap(); // tell the child to quit
    p.join().unwrap();
    // The only copy of the other end is gone: EOF, and for good.
    assert!(conn.recv::<u8>().unwrap_err().is_eof());
    assert_eq!(conn.recv_bytes(), Err(RecvError::Eof));
    assert!(conn.poll(Duration::ZERO).unwrap(), "poll says EOF is ready");
    assert_eq!(conn.send_bytes(b"x"), Err(pipe::SendError::Disconnected));
}

#[test]
fn test_connection__duplex_false() {
    let (reader, writer) = pipe::one_way(4096).unwrap();
    writer.send(&1u32).unwrap();
    assert_eq!(reader.recv::<u32>().unwrap(), 1);
    // `reader.send`, `writer.recv` and `writer.poll` do not exist: the
    // types have no such methods (Python raises OSError at run time).
}

/// The parent's copy of the child's end is gone right after the start
/// (moved into the child); the pipe works all the same.
#[test]
fn test_connection__spawn_close() {
    let _serial = serial();
    let (conn, child_conn) = pipe::duplex(4096).unwrap();
    let p = fork().daemon(true).spawn(move || echo(child_conn)).unwrap();
    conn.send_bytes(b"hello").unwrap();
    assert_eq!(conn.recv_bytes().unwrap(), b"hello");
    conn.send_bytes(b"").unwrap();
    conn.close();
    p.join().unwrap();
}

/// `send_bytes(buf, offset, size)`: in Rust, a slice of `buf`; an offset
/// or size out of range is refused by `get` (Python's ValueError) before
/// anything reaches the pipe.
#[test]
fn test_connection__sendbytes() {
    let msg = b"abcdefghijklmnopqrstuvwxyz";
    let (a, b) = pipe::duplex(4096).unwrap();
    a.send_bytes(msg).unwrap();
    assert_eq!(b.recv_bytes().unwrap(), msg);
    a.send_bytes(&msg[5..]).unwrap();
    assert_eq!(b.recv_bytes().unwrap(), &msg[5..]);
    a.send_bytes(&msg[7..7 + 8]).unwrap();
    assert_eq!(b.recv_bytes().unwrap(), &msg[7..15]);
    a.send_bytes(&msg[26..]).unwrap();
    assert_eq!(b.recv_bytes().unwrap(), b"");
    a.send_bytes(&msg[26..26]).unwrap();
    assert_eq!(b.recv_bytes().unwrap(), b"");
    assert!(msg.get(27..).is_none());
    assert!(msg.get(22..22 + 5).is_none());
    assert!(msg.get(26..27).is_none());
    // A message the pipe can never carry is refused, nothing sent.
    let (a, b) = pipe::duplex(64).unwrap();
    assert_eq!(
        a.send_bytes(&[0; 61]),
        Err(pipe::SendError::TooLarge { len: 61, max: 60 })
    );
    assert!(!b.poll(Duration::ZERO).unwrap());
}

/// `with a, b:` closes both: `close` consumes an end, so a use after it
/// does not compile; the peer then sees EOF.
#[test]
fn test_connection__context() {
    let (a, b) = pipe::duplex(4096).unwrap();
    a.send(&1729u32).unwrap();
    assert_eq!(b.recv::<u32>().unwrap(), 1729);
    a.close();
    assert_eq!(b.recv_bytes(), Err(RecvError::Eof));
    assert_eq!(b.send_bytes(b"x"), Err(pipe::SendError::Disconnected));
}

// ---------------------------------------------------------------------
// _TestListenerClient: shmkit has no sockets; a named pipe is the
// rendezvous (the listener creates it, the client opens it by name).

#[test]
fn test_listener_client__listener_client() {
    let _serial = serial();
    let name = shmkit_testkit::unique_name("listener");
    let listener = Pipe::create(&name, 4096).unwrap();
    let p = fork()
        .daemon(true)
        .spawn({
            let name = name.clone();
            move || {
                let client = Pipe::open(&name).unwrap().end(End::B).unwrap();
                client.send_bytes(b"hello").unwrap();
                client.close();
            }
        })
        .unwrap();
    let conn = listener.end(End::A).unwrap();
    assert_eq!(conn.recv_bytes().unwrap(), b"hello");
    p.join().unwrap();
    assert_eq!(conn.recv_bytes(), Err(RecvError::Eof));
}

#[test]
fn test_listener_client__issue16955() {
    let name = shmkit_testkit::unique_name("issue16955");
    let l = Pipe::create(&name, 4096).unwrap();
    let c = Pipe::open(&name).unwrap().end(End::B).unwrap();
    let a = l.end(End::A).unwrap();
    a.send_bytes(b"hello").unwrap();
    assert!(c.poll(Duration::from_secs(1)).unwrap());
}

// ---------------------------------------------------------------------
// _TestPoll

#[test]
fn test_poll__empty_string() {
    let (a, b) = pipe::duplex(4096).unwrap();
    assert!(!a.poll(Duration::ZERO).unwrap());
    b.send_bytes(b"").unwrap();
    assert!(a.poll(Duration::ZERO).unwrap());
    assert!(a.poll(Duration::ZERO).unwrap());
    assert_eq!(a.recv_bytes().unwrap(), b"");
}

const STRINGS: [&[u8]; 8] = [b"hello", b"", b"a", b"b", b"", b"bye", b"", b"lop"];

#[test]
fn test_poll__strings() {
    let _serial = serial();
    let (a, b) = pipe::duplex(4096).unwrap();
    let p = fork()
        .spawn(move || {
            for s in STRINGS {
                std::thread::sleep(Duration::from_millis(10)); // the pace, not a synchronisation
                b.send_bytes(s).unwrap();
            }
            b.close();
        })
        .unwrap();
    for s in STRINGS {
        assert!(a.poll(LONG).unwrap());
        assert_eq!(a.recv_bytes().unwrap(), s);
    }
    p.join().unwrap();
}

/// A child polling a copy of the reading end does not take (any part of)
/// a message.
#[test]
fn test_poll__boundaries() {
    let _serial = serial();
    let (r, w) = pipe::one_way(4096).unwrap();
    let started = Event::new().unwrap();
    let p = fork()
        .spawn({
            let (r, started) = (&r, started.clone());
            move || {
                started.set();
                u8::from(r.poll(LONG).unwrap())
            }
        })
        .unwrap();
    assert!(started.wait_timeout(LONG));
    for obj in [&b"first"[..], b"second"] {
        w.send_bytes(obj).unwrap();
    }
    w.close();
    assert_eq!(p.join().unwrap(), 1);
    assert_eq!(r.recv_bytes().unwrap(), b"first");
    assert_eq!(r.recv_bytes().unwrap(), b"second");
    assert_eq!(r.recv_bytes(), Err(RecvError::Eof));
}

#[test]
fn test_poll__dont_merge() {
    let _serial = serial();
    let (a, b) = pipe::duplex(4096).unwrap();
    assert!(!a.poll(Duration::ZERO).unwrap());
    assert!(!a.poll(TIMEOUT1).unwrap());
    let p = fork()
        .spawn(move || {
            b.send_bytes(b"a").unwrap();
            b.send_bytes(b"b").unwrap();
            b.send_bytes(b"cd").unwrap();
        })
        .unwrap();
    assert_eq!(a.recv_bytes().unwrap(), b"a");
    assert!(a.poll(Duration::from_secs(1)).unwrap());
    assert!(a.poll(Duration::from_secs(1)).unwrap());
    assert_eq!(a.recv_bytes().unwrap(), b"b");
    assert!(a.poll(Duration::from_secs(1)).unwrap());
    assert!(a.poll(Duration::from_secs(1)).unwrap());
    assert!(a.poll(Duration::ZERO).unwrap());
    assert_eq!(a.recv_bytes().unwrap(), b"cd");
    p.join().unwrap();
}

/// Python's pipe ends may be written by several processes in turn (the
/// writer of `test_recursion`): each copy takes up where the last left off.
#[test]
fn a_pipe_sender_used_by_two_processes_in_turn_loses_nothing() {
    let _serial = serial();
    let (rx, tx) = pipe::one_way(4096).unwrap();
    tx.send_bytes(b"p1").unwrap();
    let child = fork()
        .spawn(|| {
            tx.send_bytes(b"c1").unwrap();
        })
        .unwrap();
    child.join().unwrap();
    tx.send_bytes(b"p2").unwrap();
    let mut got = Vec::new();
    while rx.poll(Duration::ZERO).unwrap() {
        got.push(rx.recv_bytes().unwrap());
    }
    assert_eq!(got, [&b"p1"[..], b"c1", b"p2"]);
}

// ---------------------------------------------------------------------
// _TestContainers (the dict part: `Manager().dict()` is `SharedMap` for
// `Pod` keys and values, `SharedByteMap` for `str -> bytes`)

#[test]
fn test_containers__dict() {
    let _serial = serial();
    let d = SharedMap::<u32, u32>::anonymous(16).unwrap();
    let indices: Vec<u32> = (65..70).collect();
    // Filled by another process, read here.
    let child = fork()
        .spawn({
            let d = d.clone();
            move || {
                for i in 65..70u32 {
                    d.insert(i, i).unwrap();
                }
            }
        })
        .unwrap();
    child.join().unwrap();
    let mut keys = d.keys().unwrap();
    keys.sort_unstable();
    assert_eq!(keys, indices);
    let mut values = d.values().unwrap();
    values.sort_unstable();
    assert_eq!(values, indices);
    let mut items = d.items().unwrap();
    items.sort_unstable();
    assert_eq!(items, indices.iter().map(|&i| (i, i)).collect::<Vec<_>>());
    assert_eq!(d.len(), 5);

    // `d[i] = chr(i)` with str values: the byte map.
    let b = SharedByteMap::anonymous((16, 8, 8)).unwrap();
    for i in 65..70u8 {
        b.insert(i.to_string(), [i]).unwrap();
    }
    let mut items = b.items().unwrap();
    items.sort();
    let want: Vec<(Vec<u8>, Vec<u8>)> = (65..70u8)
        .map(|i| (i.to_string().into_bytes(), vec![i]))
        .collect();
    assert_eq!(items, want);
}

/// Iterating: `keys()` is a snapshot (a `Vec`), so the map changing
/// afterwards (Python's "dictionary changed size during iteration") does
/// not disturb it; the map itself is then empty.
#[test]
fn test_containers__dict_iter() {
    let d = SharedMap::<u32, u8>::anonymous(16).unwrap();
    for i in 65..70u32 {
        d.insert(i, i as u8).unwrap();
    }
    let mut it = d.keys().unwrap().into_iter();
    d.clear().unwrap();
    let mut seen: Vec<u32> = it.by_ref().collect();
    seen.sort_unstable();
    assert_eq!(seen, (65..70).collect::<Vec<_>>());
    assert_eq!(it.next(), None, "exhausted");
    assert!(d.is_empty());
    assert!(d.keys().unwrap().is_empty());
}
