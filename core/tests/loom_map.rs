//! loom models of the shared map's reader/writer protocol
//! (`shmkit_core::map`).
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test -p shmkit-core --release
//! --test loom_map`. Each model is a tiny map (two or four buckets, one or
//! two stripes) with a writer and a reader (or a second writer), under a
//! preemption bound.
//!
//! Values are two words (`[u32; 2]`) written with equal halves, so a torn
//! copy is visible. What the models check: a reader never returns a torn
//! value, nor one that was never stored (seqlock: MAP-COMMIT, MAP-SEQ);
//! a reader of an entry whose value is being rewritten gets the old or the
//! new value (the undo record, MAP-UNDO); a reader of an entry that a
//! remove moves back toward its home finds it all along (the walk's range
//! validation); a clear is all or nothing for readers (MAP-EPOCH); two
//! writers of colliding keys both land (stripe locks). What they cannot
//! check: crashes (loom has no dead owners; the forked-child tests in
//! `map.rs` kill writers at every crash point).
//!
//! Every reader/writer model runs twice, the reader on the spawned thread
//! and then on the main one: loom's DPOR remembers only the last access to
//! an atomic, so a reader's load followed by the writer's load and store
//! of the same word hides the race unless the writer goes first in the
//! initial schedule. (Checked: dropping the walk's validation, or the
//! writer's fence after `WRITING`, fails these models.)
#![cfg(loom)]

use std::sync::Arc;

use loom::sync::atomic::AtomicU32;
use loom::thread;
use shmkit_core::map::{hash_bytes, Format, MapControl, MapView, Parts, Shape, Stripe};

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(2);
    b.check(f);
}

/// A map's parts, owned (loom atomics are made with `new`).
struct Owned {
    shape: Shape,
    control: MapControl,
    stripes: Vec<Stripe>,
    counts: Vec<AtomicU32>,
    undo: Vec<AtomicU32>,
    buckets: Vec<AtomicU32>,
}

fn atomics(n: usize) -> Vec<AtomicU32> {
    (0..n).map(|_| AtomicU32::new(0)).collect()
}

type View<'a> = MapView<'a, u32, [u32; 2]>;

impl Owned {
    fn new(capacity: usize, buckets: usize, stripes: usize) -> Arc<Owned> {
        let shape = Shape::custom(
            capacity,
            buckets,
            stripes,
            Format::Fixed(4),
            Format::Fixed(8),
        )
        .unwrap();
        Arc::new(Owned {
            shape,
            control: MapControl::new(),
            stripes: (0..stripes).map(|_| Stripe::new()).collect(),
            counts: atomics(stripes),
            undo: atomics(shape.undo_words()),
            buckets: atomics(shape.bucket_words()),
        })
    }

    fn view(&self) -> View<'_> {
        MapView::from_parts(
            self.shape,
            Parts {
                control: &self.control,
                stripes: &self.stripes,
                counts: &self.counts,
                undo: &self.undo,
                buckets: &self.buckets,
            },
        )
        .unwrap()
    }
}

/// The home bucket of `k` in a map of `buckets` buckets (the hash's high
/// word, masked: as the map computes it).
fn home(k: u32, buckets: usize) -> usize {
    (hash_bytes(&k.to_ne_bytes()) >> 32) as usize & (buckets - 1)
}

/// Two keys with the same home.
fn colliding(buckets: usize) -> (u32, u32) {
    let a = 1;
    let b = (2..)
        .find(|&k| home(k, buckets) == home(a, buckets))
        .unwrap();
    (a, b)
}

fn whole(v: Option<[u32; 2]>) -> Option<u32> {
    v.map(|[x, y]| {
        assert_eq!(x, y, "torn value");
        x
    })
}

/// Runs `writer` and `reader` concurrently on a map made by `setup`, the
/// reader on the spawned thread first, then on the main thread; then
/// `after` with the map.
fn race(
    setup: fn() -> Arc<Owned>,
    writer: fn(&View<'_>),
    reader: fn(&View<'_>),
    after: fn(&View<'_>),
) {
    for reader_spawned in [true, false] {
        model(move || {
            let map = setup();
            let other = map.clone();
            let t = thread::spawn(move || {
                if reader_spawned {
                    reader(&other.view());
                } else {
                    writer(&other.view());
                }
            });
            if reader_spawned {
                writer(&map.view());
            } else {
                reader(&map.view());
            }
            t.join().unwrap();
            after(&map.view());
        });
    }
}

/// An update in place against a reader: old or new, never torn (the
/// reader may copy the bucket, or the undo record while `WRITING` is set).
#[test]
fn update_against_a_reader() {
    race(
        || {
            let map = Owned::new(1, 2, 1);
            map.view().insert(7, [1, 1]).unwrap();
            map
        },
        |v| {
            v.insert(7, [2, 2]).unwrap();
        },
        |v| {
            let got = whole(v.get(&7).unwrap());
            assert!(got == Some(1) || got == Some(2), "{got:?}");
        },
        |v| assert_eq!(whole(v.get(&7).unwrap()), Some(2)),
    );
}

/// Insert, remove, insert against a reader: absent or one of the values,
/// never torn or garbage from the bucket's reuse.
#[test]
fn insert_and_remove_against_a_reader() {
    race(
        || Owned::new(1, 2, 1),
        |v| {
            v.insert(3, [5, 5]).unwrap();
            v.remove(&3).unwrap();
            v.insert(3, [6, 6]).unwrap();
        },
        |v| {
            let got = whole(v.get(&3).unwrap());
            assert!(matches!(got, None | Some(5) | Some(6)), "{got:?}");
        },
        |v| assert_eq!(whole(v.get(&3).unwrap()), Some(6)),
    );
}

/// `a` and `b` share a home; removing `a` moves `b` back into a's bucket.
/// A reader of `b` must find it whatever the interleaving: it was there
/// all along.
#[test]
fn a_moved_entry_is_found_all_along() {
    race(
        || {
            let map = Owned::new(2, 4, 2);
            let (a, b) = colliding(4);
            map.view().insert(a, [1, 1]).unwrap();
            map.view().insert(b, [2, 2]).unwrap();
            map
        },
        |v| {
            v.remove(&colliding(4).0).unwrap();
        },
        |v| assert_eq!(whole(v.get(&colliding(4).1).unwrap()), Some(2)),
        |v| {
            assert_eq!(v.get(&colliding(4).0).unwrap(), None);
            assert_eq!(v.check().unwrap().len, 1);
        },
    );
}

/// A clear against a reader: the entry or nothing, and nothing after.
#[test]
fn clear_against_a_reader() {
    race(
        || {
            let map = Owned::new(1, 2, 1);
            map.view().insert(4, [8, 8]).unwrap();
            map
        },
        |v| v.clear().unwrap(),
        |v| {
            let got = whole(v.get(&4).unwrap());
            assert!(matches!(got, None | Some(8)), "{got:?}");
        },
        |v| {
            assert_eq!(v.get(&4).unwrap(), None);
            assert_eq!(v.len(), 0);
        },
    );
}

/// Two writers of colliding keys in a two-stripe map: both land, once.
#[test]
fn two_writers_of_colliding_keys() {
    race(
        || Owned::new(2, 4, 2),
        |v| {
            v.insert(colliding(4).0, [1, 1]).unwrap();
        },
        |v| {
            v.insert(colliding(4).1, [2, 2]).unwrap();
        },
        |v| {
            let (a, b) = colliding(4);
            assert_eq!(whole(v.get(&a).unwrap()), Some(1));
            assert_eq!(whole(v.get(&b).unwrap()), Some(2));
            assert_eq!(v.check().unwrap().len, 2);
        },
    );
}

/// Two keys in bucket order, `c` before `d`.
fn ordered() -> (u32, u32) {
    let c = (1..).find(|&k| home(k, 4) == 0).unwrap();
    let d = (1..).find(|&k| home(k, 4) == 2).unwrap();
    (c, d)
}

/// A clear is atomic for readers: one that no longer sees the first entry
/// (cleared first) cannot then see the second.
#[test]
fn clear_is_all_or_nothing() {
    race(
        || {
            let map = Owned::new(2, 4, 1);
            let (c, d) = ordered();
            map.view().insert(c, [1, 1]).unwrap();
            map.view().insert(d, [2, 2]).unwrap();
            map
        },
        |v| v.clear().unwrap(),
        |v| {
            let (c, d) = ordered();
            if whole(v.get(&c).unwrap()).is_none() {
                assert_eq!(v.get(&d).unwrap(), None, "half a clear");
            }
        },
        |v| assert_eq!(v.len(), 0),
    );
}
