//! Python's `Event`: two processes wait for it, a third waits with a
//! timeout and then sets it (examples/python/event.py).
//!
//! Run: `cargo run --release --example event`

use std::time::Duration;

use shmkit::prelude::*;

fn wait_for_event(e: &Event) {
    println!("wait_for_event: starting");
    e.wait();
    println!("wait_for_event: e.is_set()-> {}", e.is_set());
}

fn wait_for_event_timeout(e: &Event, t: Duration) {
    println!("wait_for_event_timeout: starting");
    let _set = e.wait_timeout(t); // false: timed out
    println!("wait_for_event_timeout: e.is_set()-> {}", e.is_set());
    e.set();
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let e = Event::new()?;
    println!("begin, e.is_set() {}", e.is_set());
    let w1 = process::Builder::new()
        .name("block")
        .spawn(|| wait_for_event(&e))?;
    let w2 = process::Builder::new()
        .name("block")
        .spawn(|| wait_for_event(&e))?;
    let w3 = process::Builder::new()
        .name("nonblock")
        .spawn(|| wait_for_event_timeout(&e, Duration::from_millis(200)))?;
    println!("main: waiting before calling Event.set()");
    for w in [w1, w2, w3] {
        w.join()?;
    }
    println!("main: event is set");
    Ok(())
}
