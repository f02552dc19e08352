//! Python's "two children return values through a `Queue`"
//! (examples/python/queue_results.py).
//!
//! Run: `cargo run --release --example queue_results`

use shmkit::prelude::*;

fn job(tx: queue::Sender<u64>, a: u64) {
    tx.send(a * a).expect("the parent receives");
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (tx, rx) = queue::channel::<u64>(16)?;
    let p1 = process::spawn({
        let tx = tx.clone();
        move || job(tx, 1)
    })?;
    let p2 = process::spawn(move || job(tx, 2))?;
    p1.join()?;
    p2.join()?;
    let mut results = [rx.recv()?, rx.recv()?];
    results.sort();
    println!("results {results:?}");
    Ok(())
}
