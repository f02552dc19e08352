//! Python's "a child reports through a `Pipe`"
//! (`parent_conn, child_conn = Pipe()`; examples/python/pipe_report.py).
//!
//! Run: `cargo run --release --example pipe_report`

use shmkit::message::Serde;
use shmkit::prelude::*;

fn watch(owner: &str, conn: Connection) {
    println!("{owner}({}) is looking at the watch", std::process::id());
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    let now = format!("{} s since 1970", now.map_or(0, |d| d.as_secs()));
    conn.send(&Serde(now)).expect("the parent listens");
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("I({}) am asking the time", std::process::id());
    let (conn_for_me, conn_for_mike) = pipe::duplex(4096)?;
    let p = process::spawn(move || watch("Mike", conn_for_mike))?;
    p.join()?;
    let Serde(now) = conn_for_me.recv::<Serde<String>>()?;
    println!("I see Mike's watch says: {now}");
    Ok(())
}
