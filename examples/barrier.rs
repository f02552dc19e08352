//! Python's `Barrier(3)`: three processes meet, one is the leader
//! (examples/python/barrier.py).
//!
//! Run: `cargo run --release --example barrier`

use shmkit::prelude::*;

fn worker(barrier: &Barrier, i: u32) {
    println!("worker {i} before the barrier");
    if barrier.wait().expect("a whole round").is_leader() {
        println!("worker {i} is the leader");
    }
    println!("worker {i} after the barrier");
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let barrier = Barrier::anonymous(3)?;
    let workers: Vec<_> = (0..3)
        .map(|i| process::spawn(|| worker(&barrier, i)))
        .collect();
    for w in workers {
        w?.join()?;
    }
    Ok(())
}
