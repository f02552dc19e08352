//! The shared hash map `Map<u32, u64>` (kind `map`): its control word,
//! writer stripes (robust locks, undo records) and buckets, laid out and
//! attached by the core object as in a segment. While honest, checked
//! against a `HashMap` model.

use std::collections::HashMap;

use shmkit_core::map::{Map, MapError, MapParams, MapView};

use super::{attach, object_region, HONEST};
use crate::{Clock, Input, MAX_OPS};

/// Runs one input. Setup bits 1..7 choose the capacity (1 to 64). Keys
/// are drawn from a small set so that operations meet each other.
pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let setup = input.u8();
    let capacity = 1 + usize::from((setup >> 1) % 64);
    let params = MapParams::of::<u32, u64>(capacity);
    let Some(region) = object_region::<Map<u32, u64>>(&params, setup, &mut input) else {
        panic!("a map of {capacity} u32 -> u64 entries has no layout");
    };
    let base: MapView<'_, u32, u64> = attach::<Map<u32, u64>>(&region, &params);
    // The model: what an honest map holds, until the first peer write.
    let mut model: Option<HashMap<u32, u64>> = (setup & HONEST != 0).then(HashMap::new);
    let mut clock = Clock::new();
    for _ in 0..MAX_OPS {
        if input.is_empty() {
            break;
        }
        let op = input.u8() % 11;
        let key = u32::from(input.u8() % 80);
        let t = clock.timeout(&mut input);
        let m = base.with_timeout(t);
        match op {
            0 => {
                let r = Clock::timed(t, "Map::get", || m.get(&key));
                if let (Some(model), Ok(got)) = (&model, r) {
                    assert_eq!(got, model.get(&key).copied(), "get({key})");
                }
            }
            1 => {
                let v = input.u64();
                let r = Clock::timed(t, "Map::insert", || m.insert(key, v));
                if let Some(model) = model.as_mut() {
                    match r {
                        Ok(old) => assert_eq!(old, model.insert(key, v), "insert({key})"),
                        Err(e) => assert!(
                            matches!(e, MapError::Full { .. })
                                && !model.contains_key(&key)
                                && model.len() == capacity,
                            "an honest insert({key}) into {} of {capacity} entries failed: {e:?}",
                            model.len()
                        ),
                    }
                }
            }
            2 => {
                let r = Clock::timed(t, "Map::remove", || m.remove(&key));
                if let (Some(model), Ok(old)) = (model.as_mut(), r) {
                    assert_eq!(old, model.remove(&key), "remove({key})");
                }
            }
            3 => {
                let r = Clock::timed(t, "Map::update", || {
                    m.update(&key, |v| {
                        *v = v.wrapping_add(1);
                        *v
                    })
                });
                if let (Some(model), Ok(new)) = (model.as_mut(), r) {
                    let expected = model.get_mut(&key).map(|v| {
                        *v = v.wrapping_add(1);
                        *v
                    });
                    assert_eq!(new, expected, "update({key})");
                }
            }
            4 => {
                let v = input.u64();
                let r = Clock::timed(t, "Map::get_or_insert", || m.get_or_insert(key, v));
                if let (Some(model), Ok(got)) = (model.as_mut(), r) {
                    assert_eq!(got, *model.entry(key).or_insert(v), "get_or_insert({key})");
                }
            }
            5 => {
                let r = Clock::timed(t, "Map::contains_key", || m.contains_key(&key));
                if let (Some(model), Ok(got)) = (&model, r) {
                    assert_eq!(got, model.contains_key(&key), "contains_key({key})");
                }
            }
            6 => {
                let mut seen = HashMap::new();
                let r = Clock::timed(t, "Map::for_each", || {
                    m.for_each(|k, v| {
                        seen.insert(k, v);
                    })
                });
                if let (Some(model), Ok(())) = (&model, r) {
                    assert_eq!(&seen, model, "for_each");
                    assert_eq!(m.len(), model.len(), "len");
                }
            }
            7 => {
                let r = Clock::timed(t, "Map::clear", || m.clear());
                if let (Some(model), Ok(())) = (model.as_mut(), r) {
                    model.clear();
                }
            }
            8 => {
                let r = Clock::timed(t, "Map::check", || m.check());
                if model.is_some() {
                    assert!(r.is_ok(), "an honest map failed its check: {r:?}");
                }
                let _ = (m.len(), m.is_empty(), m.capacity(), m.repairs(), m.shape());
                let _ = format!("{m:?}");
            }
            9 => {
                let v = input.u64();
                let r = Clock::timed(t, "Map::update_or_insert", || {
                    m.update_or_insert(key, v, |x| {
                        *x = x.wrapping_mul(3);
                        *x
                    })
                });
                if let (Some(model), Ok(new)) = (model.as_mut(), r) {
                    let x = model.entry(key).or_insert(v);
                    *x = x.wrapping_mul(3);
                    assert_eq!(new, *x, "update_or_insert({key})");
                }
            }
            _ => {
                region.scribble(&mut input);
                model = None;
            }
        }
    }
}
