//! Python's `Value('d', 0.0)` and `Array('i', range(10))` modified by a
//! child process (examples/python/value_array.py).
//!
//! Run: `cargo run --release --example value_array`

use shmkit::prelude::*;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let num = Value::<f64>::anonymous(0.0)?;
    let arr = Array::<i32>::anonymous((0..10).collect::<Vec<_>>())?;
    println!("before: num {} arr {:?}", num.get(), arr.to_vec());
    process::spawn(|| {
        num.set(2.5);
        arr.set(0, 5).unwrap();
    })?
    .join()?;
    println!("after: num {} arr {:?}", num.get(), arr.to_vec());
    Ok(())
}
