//! Python's `current_process().name` and `.pid`, and `exitcode`
//! (examples/python/current_process.py).
//!
//! Run: `cargo run --release --example current_process`

use shmkit::process;

fn whoami() {
    let me = process::current();
    println!("child: {} {}", me.name, me.pid == std::process::id());
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("main: {}", process::current().name);
    let children: Vec<_> = (0..2)
        .map(|i| {
            process::Builder::new()
                .name(format!("worker-{i}"))
                .spawn(whoami)
        })
        .collect::<Result<_, _>>()?;
    for mut child in children {
        let (name, _) = (
            child.name().to_owned(),
            child.join_timeout(std::time::Duration::MAX),
        );
        println!("joined {name} {:?}", child.exitcode());
    }
    Ok(())
}
