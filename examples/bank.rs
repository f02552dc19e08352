//! Python's bank account: `Process`, `Lock` and `Value('i', 100)`. One
//! process withdraws 1 a hundred times, another deposits 1 a hundred times,
//! each holding the lock for its whole run; the balance ends at 100.
//!
//! Run: `cargo run --release --example bank`

use shmkit::prelude::*;

fn transfer(balance: &Mutex<i32>, delta: i32) -> i32 {
    let account = balance.lock().expect("the lock"); // lock.acquire()
    for _ in 0..100 {
        account.update(|b| *b += delta);
    }
    account.get() // lock.release() when `account` drops
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let balance = Mutex::<i32>::anonymous(100)?; // Value('i', 100) and its Lock
    let get = process::spawn(|| transfer(&balance, -1))?;
    let put = process::spawn(|| transfer(&balance, 1))?;
    get.join()?;
    put.join()?;
    println!("{}", balance.lock()?.get());
    assert_eq!(balance.lock()?.get(), 100);
    Ok(())
}
