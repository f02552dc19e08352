//! Python's `Pipe` producer/consumer: the parent sends 0..9 and closes its
//! end; the consumer reads until EOF (examples/python/pipe_eof.py).
//!
//! Run: `cargo run --release --example pipe_eof`

use shmkit::prelude::*;

fn consumer(right: Connection, name: &str) {
    // Err(Eof) once the producer closed its end and the pipe is drained.
    while let Ok(baozi) = right.recv::<i32>() {
        println!("{name} got bun {baozi}");
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (left, right) = pipe::duplex(4096)?;
    let c1 = process::spawn(move || consumer(right, "c1"))?; // our copy of `right` is dropped
    for i in 0..10 {
        left.send(&i)?;
    }
    left.close(); // EOF for the consumer, whose inherited copy of `left` is unused
    c1.join()?;
    println!("main process");
    Ok(())
}
