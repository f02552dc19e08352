//! Python's `set_start_method('spawn')` with a `Queue`
//! (examples/python/spawn_queue.py): the child is a fresh run of this
//! program that attaches the parent's queue by name.
//!
//! Run: `cargo run --release --example spawn_queue`

use shmkit::prelude::*;
use shmkit::process::StartMethod;

fn foo(parent: u32) {
    println!("started a new process: ({})", std::process::id());
    let q = Queue::<[u8; 6]>::open(&format!("/spawn-queue-{parent}")).expect("the queue");
    let tx = q.sender().expect("a sender");
    tx.send(*b"Python").expect("sent");
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    process::init(); // in a spawned child: runs `foo`, then exits
    process::set_start_method(StartMethod::Spawn);
    let name = format!("/spawn-queue-{}", std::process::id());
    let rx = Queue::<[u8; 6]>::create(&name, 4)?.receiver()?;
    let mp = process::spawn_fn(foo, std::process::id())?;
    println!("got {}", String::from_utf8_lossy(&rx.recv()?));
    mp.join()?;
    Ok(())
}
