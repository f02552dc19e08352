//! A child's global is not the parent's; a shared `Value` is the same for
//! both (examples/python/globals.py).
//!
//! Run: `cargo run --release --example globals`

use std::sync::atomic::{AtomicI32, Ordering};

use shmkit::prelude::*;

static X: AtomicI32 = AtomicI32::new(100);

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let shared = Value::<i32>::anonymous(100)?;
    let child = process::spawn(|| {
        X.store(0, Ordering::Relaxed);
        shared.set(0);
        println!("child x: {}", X.load(Ordering::Relaxed));
    })?;
    child.join()?;
    println!(
        "main x: {}, shared: {}",
        X.load(Ordering::Relaxed),
        shared.get()
    );
    Ok(())
}
