//! Python's queue of records (a namedtuple per reading) as a `#[repr(C)]`
//! struct through a `Queue` (examples/python/struct_queue.py).
//!
//! Run: `cargo run --release --example struct_queue`

use shmkit::prelude::*;

#[derive(Clone, Copy, Pod, Zeroable)]
#[bytemuck(crate = "shmkit::bytemuck")]
#[repr(C)]
struct Reading(u32, u32, f64); // sensor, seq, value

fn sensor(tx: &queue::Sender<Reading>, id: u32) {
    for i in 0..5 {
        tx.send(Reading(id, i, f64::from(i) * 0.5)).expect("sent");
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (tx, rx) = queue::channel::<Reading>(16)?;
    let ps = [0, 1].map(|id| process::spawn(|| sensor(&tx, id)));
    let readings: Vec<Reading> = (0..10).map(|_| rx.recv()).collect::<Result<_, _>>()?;
    for p in ps {
        p?.join()?;
    }
    let sum: f64 = readings.iter().map(|r| r.2).sum();
    println!("readings {} sum {sum}", readings.len());
    Ok(())
}
