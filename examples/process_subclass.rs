//! Python's `Process` subclass with a `run()` method
//! (examples/python/process_subclass.py): in Rust, a type with a `run`
//! method, started in a child process.
//!
//! Run: `cargo run --release --example process_subclass`

use shmkit::process;

struct SubProcess {
    text: String,
}

impl SubProcess {
    fn run(&self) {
        println!("child pid: {} {}", std::process::id(), self.text);
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let workers = (1..=3).map(|i| SubProcess {
        text: format!("this is process {i}"),
    });
    let children: Vec<_> = workers.map(|w| process::spawn(move || w.run())).collect();
    println!("main pid: {}", std::process::id());
    for child in children {
        child?.join()?;
    }
    Ok(())
}
