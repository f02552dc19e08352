//! Python's sensor pipeline (examples/python/sensor_pipeline.py): image,
//! lidar and anchor processes fill a shared dict (`Manager().dict()`), and
//! the parent hands each frame's results to a detector process through a
//! `Queue`. Here the dict is a `SharedMap` (no manager process), the big
//! payload (the image) stays in a shared `Array`, and only a small record
//! crosses the queue: zero copies of the big data.
//!
//! Run: `cargo run --release --example sensor_pipeline`

use shmkit::prelude::*;

const PIXELS: usize = 640 * 480;

#[derive(Clone, Copy, Pod, Zeroable)]
#[bytemuck(crate = "shmkit::bytemuck")]
#[repr(C)]
struct Frame([u64; 4]); // frame, image, lidar, anchor

fn sense(key: u64, frame: u64, image: &Array<u8>, results: &SharedMap<u64, u64>) {
    if key == 1 {
        let pixels = vec![frame as u8; PIXELS]; // an image, captured
        image
            .write_from(frame as usize * PIXELS, &pixels)
            .expect("in range");
    }
    results
        .insert(key, frame + 10 * key)
        .expect("room in the map");
}

fn detect(rx: queue::Receiver<Frame>, image: &Array<u8>) {
    for Frame([frame, img, lidar, anchor]) in rx.iter() {
        let pixel = image.get(frame as usize * PIXELS).unwrap_or(0);
        println!("frame {frame} results: {img} {lidar} {anchor} (pixel {pixel})");
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let frames = 3;
    let image = Array::<u8>::anonymous(vec![0; frames as usize * PIXELS])?;
    let results = SharedMap::<u64, u64>::anonymous(16)?;
    let (tx, rx) = queue::channel::<Frame>(4)?;
    let img = &image;
    let detector = process::spawn(move || detect(rx, img))?;
    for frame in 0..frames {
        let sensors = [1, 2, 3].map(|key| process::spawn(|| sense(key, frame, &image, &results)));
        for s in sensors {
            s?.join()?;
        }
        let got = |key| results.get(&key).ok().flatten().unwrap_or(0);
        tx.send(Frame([frame, got(1), got(2), got(3)]))?;
    }
    tx.close(); // the detector drains the queue, then its loop ends
    detector.join()?;
    Ok(())
}
