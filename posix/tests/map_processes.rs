//! The shared map across real processes: many writers and readers at
//! once, a writer SIGKILLed at random points, hostile bytes over the whole
//! payload, a full map, timeouts.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{Junk, Pipe, Rng, CHILD_TIMEOUT};
use shmkit_posix::map::{ByteMapInit, MapError, SharedByteMap, SharedMap};
use shmkit_posix::Array;
use shmkit_testkit::{fork, unique_name, Exit};

/// Values are four equal words: a torn copy shows.
type V = [u64; 4];

fn whole(v: V) -> Option<u64> {
    v.iter().all(|&x| x == v[0]).then_some(v[0])
}

/// Four processes insert their own keys, bump shared counters atomically
/// and read everything, all at once; the map ends with exactly the
/// expected contents, and no read was ever torn.
#[test]
fn many_processes_insert_update_and_read_at_once() {
    let name = unique_name("map-many");
    let map = SharedMap::<u64, V>::create(&name, 1000).unwrap();
    let start = common::StartLine::new(4);
    let per = 150u64;
    let bumps = 2000u64;
    let children: Vec<_> = (0..4u64)
        .map(|p| {
            let (name, start) = (name.clone(), &start);
            fork(move || {
                let Ok(map) = SharedMap::<u64, V>::open(&name) else {
                    return 2;
                };
                start.arrive(p as usize);
                for i in 0..bumps {
                    if i < per {
                        let k = 100 + p * per + i;
                        if map.insert(k, [k * 3; 4]) != Ok(None) {
                            return 3;
                        }
                    }
                    if map
                        .update_or_insert(i % 8, [0; 4], |v| *v = [v[0] + 1; 4])
                        .is_err()
                    {
                        return 4;
                    }
                    // Read anyone's keys: absent or exactly k * 3, whole.
                    let k = 100 + (i * 7 + p) % (4 * per);
                    match map.get(&k) {
                        Ok(None) => {}
                        Ok(Some(v)) if whole(v) == Some(k * 3) => {}
                        _ => return 5,
                    }
                    match map.get(&(i % 8)) {
                        Ok(Some(v)) if whole(v).is_some() => {}
                        _ => return 6,
                    }
                }
                0
            })
        })
        .collect();
    start.release();
    for c in children {
        assert_eq!(c.wait_timeout(CHILD_TIMEOUT), Some(Exit::Code(0)));
    }
    let mut expected: HashMap<u64, V> = (100..100 + 4 * per).map(|k| (k, [k * 3; 4])).collect();
    for k in 0..8 {
        expected.insert(k, [4 * bumps / 8; 4]);
    }
    let items: HashMap<u64, V> = map.items().unwrap().into_iter().collect();
    assert_eq!(items, expected);
    assert_eq!(map.len(), expected.len());
    assert_eq!(map.check().unwrap().len, expected.len());
    assert_eq!(map.repairs(), 0);
}

// ------------------------------------------------------------------- kills

/// One operation of the killed writer's deterministic stream.
#[derive(Clone, Copy, Debug)]
enum Op {
    Insert(u64, u64),
    Remove(u64),
    Update(u64),
    Upsert(u64, u64),
    Clear,
}

const KEYS: u64 = 96;
const CAPACITY: usize = 64;

/// The writer's operations: a function of the seed alone, so the parent
/// can replay them.
fn ops(seed: u64) -> impl Iterator<Item = Op> {
    let mut rng = Junk(seed | 1);
    std::iter::repeat_with(move || {
        let k = rng.next() % KEYS;
        let x = rng.next() % 1_000_000;
        match rng.next() % 400 {
            0 => Op::Clear,
            1..=159 => Op::Insert(k, x),
            160..=279 => Op::Remove(k),
            280..=339 => Op::Update(k),
            _ => Op::Upsert(k, x),
        }
    })
}

fn apply(model: &mut HashMap<u64, u64>, op: Op) {
    let room = |m: &HashMap<u64, u64>, k| m.len() < CAPACITY || m.contains_key(&k);
    match op {
        Op::Insert(k, x) if room(model, k) => {
            model.insert(k, x);
        }
        Op::Remove(k) => {
            model.remove(&k);
        }
        Op::Update(k) => {
            if let Some(v) = model.get_mut(&k) {
                *v += 1;
            }
        }
        Op::Upsert(k, x) if room(model, k) => {
            let v = model.entry(k).or_insert(x);
            *v += 1;
        }
        Op::Clear => model.clear(),
        Op::Insert(..) | Op::Upsert(..) => {} // full
    }
}

fn run(map: &SharedMap<u64, V>, op: Op) -> Result<(), MapError> {
    let full = |r: Result<(), MapError>| match r {
        Err(MapError::Full { .. }) => Ok(()),
        r => r,
    };
    match op {
        Op::Insert(k, x) => full(map.insert(k, [x; 4]).map(drop)),
        Op::Remove(k) => map.remove(&k).map(drop),
        Op::Update(k) => map.update(&k, |v| *v = [v[0] + 1; 4]).map(drop),
        Op::Upsert(k, x) => full(map.update_or_insert(k, [x; 4], |v| *v = [v[0] + 1; 4])),
        Op::Clear => map.clear(),
    }
}

fn model_after(seed: u64, n: usize) -> HashMap<u64, u64> {
    let mut m = HashMap::new();
    for op in ops(seed).take(n) {
        apply(&mut m, op);
    }
    m
}

fn trials() -> usize {
    if common::long() {
        1000
    } else {
        100
    }
}

/// A writer SIGKILLed at a random point of a random operation stream,
/// while a reader checks every value it reads: no read is ever torn, the
/// map as readers see it right after the kill is the state before or
/// after the writer's last operation, and once the next writer (here
/// `check`, which locks every stripe) has repaired it, it is exactly that
/// state, with every invariant holding.
#[test]
fn a_writer_killed_at_random_points() {
    let mut rng = Rng::new();
    let mut repaired = 0;
    for trial in 0..trials() {
        let seed = rng.next();
        let map = SharedMap::<u64, V>::anonymous(CAPACITY).unwrap();
        // [completed ops, reader stop flag]
        let shared = Array::<u64>::anonymous(2).unwrap();
        let writer = fork(|| {
            for (i, op) in ops(seed).enumerate().take(10_000_000) {
                if run(&map, op).is_err() {
                    return 3;
                }
                let _ = shared.set(0, i as u64 + 1);
            }
            0
        });
        let reader = fork(|| {
            while shared.get(1) != Some(1) {
                for k in 0..KEYS {
                    match map.get(&k) {
                        Ok(None) => {}
                        Ok(Some(v)) if whole(v).is_some() => {}
                        Ok(Some(_)) => return 4, // torn
                        Err(_) => return 5,
                    }
                }
            }
            0
        });
        let target = 1 + rng.below(3000);
        let t0 = Instant::now();
        while shared.get(0).unwrap_or(0) < target {
            assert!(
                t0.elapsed() < CHILD_TIMEOUT,
                "trial {trial}: the writer stalled"
            );
            std::thread::yield_now();
        }
        writer.kill9();
        assert_eq!(
            writer.wait_timeout(CHILD_TIMEOUT),
            Some(Exit::Signal(libc::SIGKILL))
        );
        let n = shared.get(0).unwrap() as usize;
        let (before, after) = (model_after(seed, n), model_after(seed, n + 1));
        // Readers, before any repair: the committed state.
        let seen: HashMap<u64, u64> = (0..KEYS)
            .filter_map(|k| {
                let v = map
                    .get(&k)
                    .unwrap_or_else(|e| panic!("trial {trial}: {e}"))?;
                Some((
                    k,
                    whole(v).unwrap_or_else(|| panic!("trial {trial}: torn {v:?}")),
                ))
            })
            .collect();
        assert!(
            seen == before || seen == after,
            "trial {trial} (seed {seed}, {n} ops, then {:?}): readers saw {seen:?}",
            ops(seed).nth(n)
        );
        let _ = shared.set(1, 1);
        assert_eq!(
            reader.wait_timeout(CHILD_TIMEOUT),
            Some(Exit::Code(0)),
            "trial {trial}"
        );
        // The next writer repairs; the map is exactly one of the two.
        let repairs = map.repairs();
        let stats = map.check().unwrap_or_else(|e| panic!("trial {trial}: {e}"));
        repaired += usize::from(map.repairs() > repairs);
        let items: HashMap<u64, u64> = map
            .items()
            .unwrap()
            .into_iter()
            .map(|(k, v)| (k, whole(v).unwrap()))
            .collect();
        assert_eq!(
            items, seen,
            "trial {trial}: the repair changed what readers saw"
        );
        assert_eq!(stats.len, items.len());
        assert_eq!(map.len(), items.len());
        // And the map works on.
        let k = items.keys().next().copied().unwrap_or(0);
        map.remove(&k).unwrap();
        assert_eq!(map.insert(k, [1; 4]), Ok(None));
        map.check().unwrap();
    }
    // The writer is inside a lock nearly all the time: most kills leave a
    // stripe to repair.
    eprintln!("{repaired} of {} trials repaired a stripe", trials());
    assert!(repaired > trials() / 4, "only {repaired} repairs");
}

// ----------------------------------------------------------------- hostile

/// Garbage over the whole payload of a named map, many times: every
/// operation answers within its timeout (often with an error) and the
/// process never crashes.
#[test]
fn hostile_bytes_over_the_whole_payload() {
    let rounds = if common::long() { 300 } else { 40 };
    let mut junk = Junk(0x5eed_0fba_5e00);
    for (i, bytes) in [false, true].into_iter().enumerate() {
        let name = unique_name("map-hostile");
        let (seg_len, check): (u64, Box<dyn Fn(Duration) -> usize>) = if bytes {
            let map = SharedByteMap::create(&name, ByteMapInit::new(40, 12, 24)).unwrap();
            let len = map.segment().payload_len() as u64;
            let m = map.clone();
            (
                len,
                Box::new(move |d| {
                    let v = m.with_timeout(d);
                    let mut buf = [0u8; 24];
                    let mut errors = 0;
                    for k in 0..8u8 {
                        let key = [k; 5];
                        errors += usize::from(v.get_into(&key, &mut buf).is_err());
                        errors += usize::from(v.insert(&key, &[k; 9], None).is_err());
                        errors +=
                            usize::from(v.update_in(&key, Some(b"d"), &mut buf, |_, l| l).is_err());
                        errors += usize::from(v.remove(&key, None).is_err());
                    }
                    errors += usize::from(v.for_each(|e| e.read_key(&mut buf)).is_err());
                    errors += usize::from(v.check().is_err());
                    errors += usize::from(v.clear().is_err());
                    let _ = v.len();
                    errors
                }),
            )
        } else {
            let map = SharedMap::<u64, V>::create(&name, 40).unwrap();
            let len = map.segment().payload_len() as u64;
            let m = map.clone();
            (
                len,
                Box::new(move |d| {
                    let v = m.with_timeout(d);
                    let mut errors = 0;
                    for k in 0..8u64 {
                        errors += usize::from(v.get(&k).is_err());
                        errors += usize::from(v.insert(k, [k; 4]).is_err());
                        errors +=
                            usize::from(v.update_or_insert(k, [1; 4], |x| x[0] += 1).is_err());
                        errors += usize::from(v.remove(&k).is_err());
                    }
                    errors += usize::from(v.for_each(|_, _| ()).is_err());
                    errors += usize::from(v.check().is_err());
                    errors += usize::from(v.clear().is_err());
                    let _ = v.len();
                    errors
                }),
            )
        };
        let mut errors = 0;
        for round in 0..rounds {
            let garbage = junk.bytes(seg_len as usize);
            common::poke(&name, shmkit_core::header::HEADER_LEN as u64, &garbage);
            if round % 2 == 1 {
                // Free locks and an even epoch, so operations reach the
                // garbage buckets.
                common::poke(
                    &name,
                    shmkit_core::header::HEADER_LEN as u64,
                    &vec![0; 128 * 65],
                );
            }
            let d = Duration::from_millis(20);
            let t0 = Instant::now();
            errors += check(d);
            // 35 operations, each bounded by the 20 ms timeout: only a
            // hang fails this.
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "map {i}, round {round}: {:?}",
                t0.elapsed()
            );
        }
        assert!(errors > 0, "map {i}: garbage never reported");
    }
}

// ------------------------------------------------------------ full, timeout

#[test]
fn a_full_map_is_an_error() {
    let map = SharedMap::<u32, u32>::anonymous(8).unwrap();
    for k in 0..8 {
        map.insert(k, k).unwrap();
    }
    assert_eq!(map.insert(8, 8), Err(MapError::Full { capacity: 8 }));
    assert_eq!(map.get_or_insert(8, 8), Err(MapError::Full { capacity: 8 }));
    assert_eq!(map.insert(3, 30), Ok(Some(3)), "existing keys still change");
    assert_eq!(map.remove(&0), Ok(Some(0)));
    assert_eq!(map.insert(8, 8), Ok(None));
    assert_eq!(map.len(), 8);
    let bytes = SharedByteMap::anonymous((2, 4, 4)).unwrap();
    bytes.insert("a", "1").unwrap();
    bytes.insert("b", "2").unwrap();
    assert_eq!(bytes.insert("c", "3"), Err(MapError::Full { capacity: 2 }));
    assert_eq!(
        bytes.insert("abcde", "1"),
        Err(MapError::KeyTooLong { len: 5, max: 4 })
    );
    assert_eq!(
        bytes.update("a", |v| v.extend_from_slice(b"2345")),
        Err(MapError::ValueTooLong { len: 5, max: 4 })
    );
    assert_eq!(bytes.get("a").unwrap().as_deref(), Some(&b"1"[..]));
    let msg = MapError::Full { capacity: 2 }.to_string();
    assert!(msg.contains("full") && msg.contains("larger map"), "{msg}");
}

/// A child holds a writer lock (inside an `update`): the parent's reads do
/// not wait; its writes to that stripe time out, never early; when the
/// child is killed holding the lock, the parent's next write takes it over
/// and the value is untouched.
#[test]
fn timeouts_are_never_early_and_a_dead_holder_is_taken_over() {
    let map = SharedMap::<u64, u64>::anonymous(16).unwrap();
    map.insert(1, 10).unwrap();
    let (held, release) = (Pipe::new(), Pipe::new());
    let child = fork(|| {
        let r = map.update(&1, |v| {
            held.release(1);
            // Wait for the parent (or be killed here).
            let _ = release.take();
            *v = 11;
        });
        if r == Ok(Some(())) {
            0
        } else {
            3
        }
    });
    assert!(
        held.take_within(CHILD_TIMEOUT),
        "the child did not take the lock"
    );
    assert_eq!(map.get(&1), Ok(Some(10)), "a reader does not wait");
    for d in [Duration::from_millis(1), Duration::from_millis(40)] {
        let t0 = Instant::now();
        assert_eq!(map.with_timeout(d).insert(1, 12), Err(MapError::TimedOut));
        assert!(
            t0.elapsed() >= d,
            "gave up after {:?}, before {d:?}",
            t0.elapsed()
        );
        let t0 = Instant::now();
        assert_eq!(map.with_timeout(d).clear(), Err(MapError::TimedOut));
        assert!(t0.elapsed() >= d, "clear gave up after {:?}", t0.elapsed());
    }
    // Killed inside the lock, before writing.
    child.kill9();
    assert_eq!(
        child.wait_timeout(CHILD_TIMEOUT),
        Some(Exit::Signal(libc::SIGKILL))
    );
    let t0 = Instant::now();
    assert_eq!(map.insert(1, 13), Ok(Some(10)));
    assert!(t0.elapsed() < Duration::from_secs(10));
    assert!(map.repairs() > 0);
    map.check().unwrap();
    drop(release);
}
