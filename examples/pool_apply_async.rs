//! Python's `Pool(4).apply_async(f, args, kwds)`, then `close()` and
//! `join()` (examples/python/pool_apply_async.py). Rust has no keyword
//! arguments: a task takes one struct, whose field names are the keywords
//! (`Action { name }`), so Python's three calls — the default, a
//! positional and a keyword argument — are one call with three values.
//!
//! Run: `cargo run --release --example pool_apply_async`

use shmkit::message::Serde;
use shmkit::process::{Pool, PoolError};

#[derive(serde::Serialize, serde::Deserialize)]
struct Action {
    name: String,
}

fn action(Serde(Action { name }): Serde<Action>) {
    println!("({}) running, argument: {name}", std::process::id());
    std::thread::sleep(std::time::Duration::from_millis(300));
}

fn main() -> Result<(), PoolError> {
    let pool = Pool::new(4)?;
    for name in ["default", "positional", "keyword"].map(String::from) {
        pool.apply_async(action, Serde(Action { name }))?;
    }
    pool.close();
    pool.join()
}
