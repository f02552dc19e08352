//! Python's `Pool(4).map` of a square sum over chunks of a list, then the
//! total (examples/python/pool_map.py).
//!
//! Run: `cargo run --release --example pool_map`

use shmkit::message::Serde;
use shmkit::process::Pool;

fn square_sum(numbers: Serde<Vec<u64>>) -> u64 {
    numbers.iter().map(|x| x * x).sum()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let numbers: Vec<u64> = (1..=10).collect();
    let num_processes = 4;
    let pool = Pool::new(num_processes)?;
    let chunk_size = numbers.len() / num_processes;
    let chunks = numbers.chunks(chunk_size).map(|c| Serde(c.to_vec()));
    let results = pool.map(square_sum, chunks)?;
    let total_sum: u64 = results.into_iter().sum::<Result<u64, _>>()?;
    println!("Total square sum: {total_sum}");
    pool.close();
    pool.join()?;
    Ok(())
}
