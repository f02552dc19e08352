//! Python's restaurant: 20 processes through a `Semaphore(10)`, at most
//! ten eating at once (examples/python/restaurant.py).
//!
//! Run: `cargo run --release --example restaurant`

use std::time::Duration;

use shmkit::prelude::*;

fn dining(s: &Semaphore, i: u64) {
    let _table = s.acquire(); // released when dropped
    println!("{} acquire", process::current().name);
    std::thread::sleep(Duration::from_millis(i * 2));
    println!("{} release", process::current().name);
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let s = Semaphore::anonymous(10)?; // at most ten at once
    let diners: Vec<_> = (0..20).map(|i| process::spawn(|| dining(&s, i))).collect();
    for diner in diners {
        diner?.join()?;
    }
    Ok(())
}
