//! A named `Array` across two processes: this program creates it,
//! starts a copy of itself that attaches by name and fills it, then prints
//! what the child wrote.
//!
//! Run: `cargo run --release --example shared_array`

use std::process::Command;

use shmkit::Array;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if let Some(name) = std::env::args().nth(1) {
        // Child: attach by name (the element type is checked) and write.
        let arr = Array::<f64>::open(&name)?;
        for i in 0..arr.len() {
            arr.set(i, (i * i) as f64)?;
        }
        return Ok(());
    }
    let name = format!("/shmkit-example-{}", std::process::id());
    let arr = Array::<f64>::create(&name, 8)?;
    let status = Command::new(std::env::current_exe()?).arg(&name).status()?;
    assert!(status.success(), "child failed: {status}");
    println!("child wrote {:?} into {name}", arr.to_vec());
    // `arr` created the segment, so dropping it removes the name.
    Ok(())
}
