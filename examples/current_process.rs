//! Python's `current_process().name` and `.pid`, and `exitcode`
//! (examples/python/current_process.py).
//!
//! Run: `cargo run --release --example current_process`

use shmkit::process::{self, Builder};

fn whoami() {
    let me = process::current();
    println!("child: {} {}", me.name, me.pid == std::process::id());
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("main: {}", process::current().name);
    let spawn = |i| Builder::new().name(format!("worker-{i}")).spawn(whoami);
    let children: Vec<_> = (0..2).map(spawn).collect::<Result<_, _>>()?;
    for mut child in children {
        let code = child.wait()?;
        println!("joined {} {code}", child.name());
    }
    Ok(())
}
