//! Python's `Condition`: a producer process adds ten items under the
//! condition and notifies; a consumer process waits for each
//! (examples/python/condition.py).
//!
//! Run: `cargo run --release --example condition`

use shmkit::prelude::*;

fn producer(cond: &Condition<i32>) {
    for _ in 0..10 {
        cond.lock().expect("the lock").update(|n| *n += 1);
        cond.notify_one();
    }
}

fn consumer(cond: &Condition<i32>) -> i32 {
    let mut taken = 0;
    while taken < 10 {
        let items = cond.wait_while(cond.lock().unwrap(), |n| *n == 0).unwrap();
        items.update(|n| *n -= 1);
        taken += 1;
    }
    println!("consumer took {taken}");
    taken
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cond = Condition::<i32>::anonymous(0)?; // its lock and the item count
    let c = process::spawn(|| consumer(&cond))?;
    let p = process::spawn(|| producer(&cond))?;
    c.join()?;
    p.join()?;
    Ok(())
}
