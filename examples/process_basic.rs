//! Python's `Process(target=f, args=(...))`, started and joined three
//! times (examples/python/process_basic.py).
//!
//! Run: `cargo run --release --example process_basic`

use shmkit::process;

fn fun_1(text: &str) {
    println!("child pid: {} {text}", std::process::id());
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let children = [
        "this is process 1",
        "this is process 2",
        "this is process 3",
    ]
    .map(|text| process::spawn(move || fun_1(text)));
    println!("main pid: {}", std::process::id());
    for child in children {
        child?.join()?;
    }
    Ok(())
}
