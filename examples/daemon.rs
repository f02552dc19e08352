//! Python's `daemon=True`: a child that dies with its parent
//! (examples/python/daemon.py).
//!
//! Run: `cargo run --release --example daemon`

use std::time::Duration;

use shmkit::process;

fn heartbeat() {
    loop {
        println!("daemon: still here");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let d = process::Builder::new()
        .name("daemon")
        .daemon(true)
        .spawn(heartbeat)?;
    std::thread::sleep(Duration::from_millis(300));
    println!("main: exiting; the daemon {} dies with me", d.pid());
    Ok(())
}
