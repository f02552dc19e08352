//! The byte `Pipe`: frames (a length word, then the bytes, possibly
//! wrapping) over a byte ring; and the duplex `Connection` over two.

use std::mem::size_of;
use std::ptr::NonNull;

use shmkit_core::header::PAYLOAD_ALIGN;
use shmkit_core::queue::pipe::{Connection, Pipe, PipeReceiver, PipeRecvError, PipeSender};
use shmkit_core::queue::ring::RingControl;
use shmkit_core::wait::{Deadline, Spin};

use super::{Fifo, HONEST};
use crate::{Clock, Input, Region, MAX_OPS};

const CONTROL: usize = size_of::<RingControl>();

/// Runs one input. Setup bits 1..4 choose the capacity (8 to 256 bytes);
/// bit 4 makes it a duplex pipe (two rings, attached as two
/// `Connection` ends).
pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let setup = input.u8();
    let capacity = 8u32 << ((setup >> 1) % 6);
    let duplex = setup & 0x10 != 0;
    let stride = (CONTROL + capacity as usize).next_multiple_of(PAYLOAD_ALIGN);
    let rings = if duplex { 2 } else { 1 };
    let region = Region::new(stride * rings);
    if setup & HONEST == 0 {
        region.fill(input.bytes(region.len()));
    }
    // All-zero control blocks are fresh rings: nothing else to initialise.
    let pipe_at = |which: usize| {
        // SAFETY: ring `which` (< rings) is a RingControl at a multiple of
        // the stride (128-aligned) followed by `capacity` bytes, inside
        // the region, only accessed atomically while `region` lives.
        unsafe {
            let base = region.base().as_ptr().add(which * stride);
            let ctl: &RingControl = region.object(which * stride);
            Pipe::from_raw(ctl, NonNull::new_unchecked(base.add(CONTROL)), capacity)
        }
        .expect("a power of two from 8")
    };
    let pipes = [pipe_at(0), pipe_at(rings - 1)];
    let mut ends = Ends {
        fifo: [Fifo::new(setup), Fifo::new(setup)],
        clock: Clock::new(),
        tx: [None, None],
        rx: [None, None],
    };
    for _ in 0..MAX_OPS {
        if input.is_empty() {
            break;
        }
        let op = input.u8() % 16;
        // Which direction (duplex only): pipe 0 or pipe 1.
        let d = if duplex {
            usize::from(input.u8() & 1)
        } else {
            0
        };
        match op {
            0 => {
                if ends.tx[d].is_none() {
                    ends.tx[d] = pipes[d].sender().ok();
                }
            }
            1 => {
                if ends.rx[d].is_none() {
                    ends.rx[d] = pipes[d].receiver().ok();
                }
            }
            2 => ends.tx[d] = None,
            3 => ends.rx[d] = None,
            4 if duplex => {
                // Attach a whole end: sends on pipe d, receives on the other.
                if ends.tx[d].is_none() && ends.rx[1 - d].is_none() {
                    if let Ok(Connection { tx, rx }) = Connection::attach(pipes, d) {
                        ends.tx[d] = Some(tx);
                        ends.rx[1 - d] = Some(rx);
                    }
                }
            }
            14 | 15 => {
                region.scribble(&mut input);
                ends.fifo.iter_mut().for_each(Fifo::scribbled);
            }
            _ => ends.step(op, d, &mut input, capacity),
        }
    }
}

/// The handles attached in this process, per direction, and what each
/// direction must deliver.
struct Ends<'a> {
    fifo: [Fifo<Vec<u8>>; 2],
    clock: Clock,
    tx: [Option<PipeSender<'a>>; 2],
    rx: [Option<PipeReceiver<'a>>; 2],
}

impl Ends<'_> {
    fn step(&mut self, op: u8, d: usize, input: &mut Input<'_>, capacity: u32) {
        let fifo = &mut self.fifo[d];
        if let Some(tx) = self.tx[d].as_mut() {
            match op {
                5 => {
                    let msg = message(input, capacity);
                    if tx.try_send_bytes(&msg).is_ok() {
                        fifo.sent(msg);
                    }
                }
                6 => {
                    let msg = message(input, capacity);
                    let t = self.clock.timeout(input);
                    let r = Clock::timed(t, "PipeSender::send_bytes_timeout", || {
                        tx.send_bytes_timeout(&msg, t)
                    });
                    if r.is_ok() {
                        fifo.sent(msg);
                    }
                }
                7 => {
                    let _ = tx.max_message_len();
                    tx.set_spin(Spin {
                        iterations: u32::from(input.u8()),
                    });
                }
                _ => {}
            }
        }
        if let Some(rx) = self.rx[d].as_mut() {
            match op {
                8 => {
                    if let Ok(n) = rx.try_peek_len() {
                        check_len(fifo, n);
                    }
                }
                9 => {
                    let _ = rx.poll();
                }
                10 => {
                    let t = self.clock.timeout(input);
                    let _ = Clock::timed(t, "PipeReceiver::poll_timeout", || rx.poll_timeout(t));
                }
                11 => {
                    let t = self.clock.timeout(input);
                    let r = Clock::timed(t, "PipeReceiver::wait_len", || {
                        rx.wait_len(Some(Deadline::after(t)))
                    });
                    if let Ok(n) = r {
                        check_len(fifo, n);
                    }
                }
                12 => {
                    let mut buf = vec![0u8; usize::from(input.u16()) % (capacity as usize + 8)];
                    let r = rx.try_recv_bytes_into(&mut buf);
                    received(fifo, r, &buf);
                }
                13 => {
                    let mut buf = vec![0u8; usize::from(input.u16()) % (capacity as usize + 8)];
                    let t = self.clock.timeout(input);
                    let r = Clock::timed(t, "PipeReceiver::recv_bytes_into_timeout", || {
                        rx.recv_bytes_into_timeout(&mut buf, t)
                    });
                    received(fifo, r, &buf);
                }
                7 => {
                    let _ = rx.max_message_len();
                    rx.set_spin(Spin {
                        iterations: u32::from(input.u8()),
                    });
                }
                _ => {}
            }
        }
    }
}

/// A message of up to a few bytes more than the pipe carries (to reach
/// `TooLarge`), from the input.
fn message(input: &mut Input<'_>, capacity: u32) -> Vec<u8> {
    let len = usize::from(input.u16()) % (capacity as usize + 4);
    let mut msg = input.bytes(len).to_vec();
    msg.resize(len, 0xa5);
    msg
}

/// A peeked length must be the next honest message's.
fn check_len(fifo: &Fifo<Vec<u8>>, n: usize) {
    if let Some(front) = fifo.front() {
        assert_eq!(front.len(), n, "an honest pipe announced another length");
    }
}

/// What a receive into `buf` returned, checked against the model.
fn received(fifo: &mut Fifo<Vec<u8>>, r: Result<usize, PipeRecvError>, buf: &[u8]) {
    match r {
        Ok(n) => {
            assert!(n <= buf.len(), "received {n} bytes into {}", buf.len());
            fifo.received(&buf[..n].to_vec());
        }
        Err(PipeRecvError::BufferTooSmall { needed }) => {
            assert!(
                needed > buf.len(),
                "BufferTooSmall for {needed} <= {}",
                buf.len()
            );
            check_len(fifo, needed);
        }
        Err(_) => {}
    }
}
