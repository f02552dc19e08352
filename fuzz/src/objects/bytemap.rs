//! The shared byte map `ByteMap` (kind `byte map`: keys and values are
//! byte strings of bounded length), laid out and attached by the core
//! object as in a segment. Lengths read back from buckets are what a
//! forger controls here.

use std::collections::HashMap;

use shmkit_core::map::{ByteMap, ByteMapView, MapParams};

use super::{attach, object_region, HONEST};
use crate::{Clock, Input, MAX_OPS};

/// Runs one input. Setup bits 1..5 choose the capacity (1 to 16); the
/// next byte the maximum key (0 to 15) and value (0 to 63) lengths.
pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let setup = input.u8();
    let shape = input.u8();
    let capacity = 1 + usize::from((setup >> 1) % 16);
    let (max_key, max_value) = (usize::from(shape % 16), usize::from(shape >> 2));
    let params = MapParams::bytes(capacity, max_key, max_value);
    let Some(region) = object_region::<ByteMap>(&params, setup, &mut input) else {
        return;
    };
    let base: ByteMapView<'_> = attach::<ByteMap>(&region, &params);
    let mut model: Option<HashMap<Vec<u8>, Vec<u8>>> = (setup & HONEST != 0).then(HashMap::new);
    let mut clock = Clock::new();
    let mut out = vec![0u8; max_value + 4];
    for _ in 0..MAX_OPS {
        if input.is_empty() {
            break;
        }
        let op = input.u8() % 10;
        // Keys: a few short ones (so that operations meet), up to a byte
        // past the maximum.
        let key_len = usize::from(input.u8()) % (max_key + 2);
        let key: Vec<u8> = vec![b'k'; key_len];
        let t = clock.timeout(&mut input);
        let m = base.with_timeout(t);
        match op {
            0 => {
                let n = usize::from(input.u8()) % (max_value + 4);
                let r = Clock::timed(t, "ByteMap::get_into", || m.get_into(&key, &mut out[..n]));
                if let (Some(model), Ok(got)) = (&model, r) {
                    let expected = model.get(&key);
                    assert_eq!(got, expected.map(Vec::len), "get_into");
                    if let (Some(len), Some(v)) = (got, expected) {
                        assert_eq!(&out[..len], &v[..], "get_into value");
                    }
                }
            }
            1 | 2 => {
                let len = usize::from(input.u8()) % (max_value + 2);
                let value = input.bytes(len).to_vec();
                let mut old = vec![0u8; usize::from(input.u8() % 8)];
                let r = if op == 1 {
                    Clock::timed(t, "ByteMap::insert", || {
                        m.insert(&key, &value, Some(&mut old))
                    })
                } else {
                    Clock::timed(t, "ByteMap::insert_if_absent", || {
                        m.insert_if_absent(&key, &value).map(|_| None)
                    })
                };
                if let Some(model) = model.as_mut() {
                    let fits = key.len() <= max_key && value.len() <= max_value;
                    let room = model.contains_key(&key) || model.len() < capacity;
                    match r {
                        Ok(old_len) if fits && room => {
                            let before = if op == 1 {
                                model.insert(key, value)
                            } else {
                                model.entry(key).or_insert(value);
                                None
                            };
                            if op == 1 {
                                assert_eq!(old_len, before.as_ref().map(Vec::len), "insert");
                            }
                        }
                        Err(_) if !fits || !room => {}
                        other => {
                            panic!("an honest insert gave {other:?} (fits {fits}, room {room})")
                        }
                    }
                }
            }
            3 => {
                let r = Clock::timed(t, "ByteMap::remove", || m.remove(&key, None));
                if let (Some(model), Ok(got)) = (model.as_mut(), r) {
                    assert_eq!(got, model.remove(&key).as_ref().map(Vec::len), "remove");
                }
            }
            4 => {
                let r = Clock::timed(t, "ByteMap::contains_key", || m.contains_key(&key));
                if let (Some(model), Ok(got)) = (&model, r) {
                    assert_eq!(got, model.contains_key(&key), "contains_key");
                }
            }
            5 => {
                let r = Clock::timed(t, "ByteMap::value_len", || m.value_len(&key));
                if let (Some(model), Ok(got)) = (&model, r) {
                    assert_eq!(got, model.get(&key).map(Vec::len), "value_len");
                }
            }
            6 => {
                let mut seen = 0;
                let r = Clock::timed(t, "ByteMap::for_each", || {
                    m.for_each(|e| {
                        // Lengths come from shared memory: the entry must
                        // have bounded them.
                        let mut k = vec![0u8; e.key_len()];
                        let mut v = vec![0u8; e.value_len()];
                        assert!(
                            k.len() <= max_key && v.len() <= max_value,
                            "unbounded entry"
                        );
                        e.read_key(&mut k);
                        e.read_value(&mut v);
                        seen += 1;
                    })
                });
                if let (Some(model), Ok(())) = (&model, r) {
                    assert_eq!(seen, model.len(), "for_each count");
                }
            }
            7 => {
                let r = Clock::timed(t, "ByteMap::clear", || m.clear());
                if let (Some(model), Ok(())) = (model.as_mut(), r) {
                    model.clear();
                }
            }
            8 => {
                let r = Clock::timed(t, "ByteMap::check", || m.check());
                if model.is_some() {
                    assert!(r.is_ok(), "an honest byte map failed its check: {r:?}");
                }
                let _ = (
                    m.len(),
                    m.is_empty(),
                    m.capacity(),
                    m.repairs(),
                    format!("{m:?}"),
                );
                let _ = (m.max_key_len(), m.max_value_len());
            }
            _ => {
                region.scribble(&mut input);
                model = None;
            }
        }
    }
}
