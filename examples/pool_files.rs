//! A pool "downloading" files (`starmap` over `(url, filename)` pairs) and
//! then "processing" them (`map` over file names), from the seed tutorial
//! (examples/python/pool_files.py). The "server" is a directory of files
//! the program creates, so it runs offline.
//!
//! Run: `cargo run --release --example pool_files`

use shmkit::message::Serde;
use shmkit::process::Pool;

fn download_file(url: Serde<String>, filename: Serde<String>) {
    std::fs::copy(&*url, &*filename).unwrap();
    println!("Downloaded {} from {}", *filename, *url);
}

fn process_file(filename: Serde<String>) -> u64 {
    let text = std::fs::read_to_string(&*filename).unwrap();
    std::fs::write(format!("{}.processed", *filename), text.to_uppercase()).unwrap();
    println!("Processed {}", *filename);
    text.len() as u64
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let tmp = std::env::temp_dir().join(format!("pool_files-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    let path = |name: String| tmp.join(name).to_string_lossy().into_owned();
    for i in 1..=3 {
        std::fs::write(
            path(format!("remote{i}.txt")),
            format!("contents of file {i}\n").repeat(i),
        )?;
    }
    let urls: Vec<_> = (1..=3)
        .map(|i| (path(format!("remote{i}.txt")), path(format!("file{i}.txt"))))
        .collect();
    let pool = Pool::new(urls.len())?;
    pool.starmap(
        download_file,
        urls.iter()
            .map(|(u, f)| (Serde(u.clone()), Serde(f.clone()))),
    )?;
    let sizes = pool.map(process_file, urls.into_iter().map(|(_, f)| Serde(f)))?;
    println!(
        "processed bytes: {}",
        sizes.into_iter().sum::<Result<u64, _>>()?
    );
    pool.close();
    pool.join()?;
    std::fs::remove_dir_all(&tmp)?;
    Ok(())
}
