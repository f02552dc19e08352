//! Python's bank account with an `RLock`, the lock taken twice by its
//! holder (examples/python/bank_rlock.py): three processes each try to
//! draw 800 from 900; one succeeds.
//!
//! Run: `cargo run --release --example bank_rlock`

use shmkit::prelude::*;
use shmkit::sync::ReentrantMutex;

fn draw(balance: &ReentrantMutex<i32>, amount: i32) {
    let _outer = balance.lock().expect("the lock");
    let inner = balance.lock().expect("the same lock, again"); // an RLock
    let me = process::current().name;
    if inner.get() >= amount {
        inner.update(|b| *b -= amount);
        println!("{me} drew {amount}");
    } else {
        println!("{me} refused");
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let balance = ReentrantMutex::<i32>::anonymous(900)?;
    let spawn = |n| {
        process::Builder::new()
            .name(n)
            .spawn(|| draw(&balance, 800))
    };
    let children = ["A", "B", "C"].map(spawn);
    for child in children {
        child?.join()?;
    }
    println!("balance {}", balance.lock()?.get());
    Ok(())
}
