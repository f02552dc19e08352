//! Python's `JoinableQueue` workers: the producer joins until every task
//! is done (examples/python/joinable_queue.py).
//!
//! Run: `cargo run --release --example joinable_queue`

use shmkit::{prelude::*, JoinableQueue};

fn worker(q: &JoinableQueue<u32>) {
    let mut rx = q.receiver().expect("a receiver");
    while let Ok(item) = rx.recv() {
        println!("worker did {item}");
        q.task_done().expect("one task_done per item");
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let q = JoinableQueue::<u32>::anonymous((16, 4))?; // 16 messages of up to 4 bytes
    for _ in 0..2 {
        process::Builder::new().daemon(true).spawn(|| worker(&q))?;
    }
    let mut tx = q.sender()?;
    for item in 0..10 {
        tx.send(&item)?;
    }
    q.join()?;
    println!("all tasks done");
    Ok(())
}
