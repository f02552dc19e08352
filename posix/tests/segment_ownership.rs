//! Who removes a named segment: the creator's handle by default, nobody
//! after `persist`, an opener after `take_ownership`; and never a segment
//! that merely took over the name.

mod common;

use common::assert_no_leftovers;
use shmkit_posix::{Array, OpenError, Segment, Value};
use shmkit_testkit::{fork, unique_name, Exit};

#[test]
fn the_creators_handle_removes_the_name_and_openers_keep_their_mapping() {
    let tag = "own-default";
    let name = unique_name(tag);
    let creator = Array::<u32>::create(&name, [1, 2]).unwrap();
    assert!(creator.segment().is_owner());
    let opener = Array::<u32>::open(&name).unwrap();
    assert!(!opener.segment().is_owner());
    drop(creator);
    let e = Array::<u32>::open(&name).unwrap_err();
    assert!(matches!(e, OpenError::NotFound { .. }), "{e:?}");
    // The opener's mapping outlives the name.
    opener.set(1, 5).unwrap();
    assert_eq!(opener.to_vec(), vec![1, 5]);
    drop(opener);
    assert_no_leftovers(tag);
}

/// A child creates and persists a value, then exits; the parent attaches,
/// takes ownership, and its drop removes the name.
#[test]
fn persist_outlives_the_creator_process_and_take_ownership_cleans_up() {
    let tag = "own-persist";
    let name = unique_name(tag);
    let child_name = name.clone();
    let child = fork(move || match Value::<u64>::create(&child_name, 77) {
        Ok(v) => {
            v.persist();
            if v.segment().is_owner() {
                return 3;
            }
            0
        }
        Err(_) => 2,
    });
    assert_eq!(child.wait(), Exit::Code(0));
    let value = Value::<u64>::open(&name).unwrap();
    assert_eq!(value.get(), 77);
    assert!(!value.segment().is_owner());
    drop(value);
    // An opener's drop never removes the name.
    assert_eq!(Value::<u64>::open(&name).unwrap().get(), 77);
    let value = Value::<u64>::open(&name).unwrap();
    assert!(!value.segment().is_owner());
    value.take_ownership();
    assert!(value.segment().is_owner());
    drop(value);
    let e = Value::<u64>::open(&name).unwrap_err();
    assert!(matches!(e, OpenError::NotFound { .. }), "{e:?}");
    assert_no_leftovers(tag);
}

/// The creator's drop leaves alone a segment that another process put
/// under the name after removing the creator's.
#[test]
fn a_creators_drop_spares_a_segment_that_replaced_it() {
    let tag = "own-replaced";
    let name = unique_name(tag);
    let first = Array::<u32>::create(&name, [1]).unwrap();
    let child_name = name.clone();
    let child = fork(move || {
        if Segment::unlink(&child_name).is_err() {
            return 2;
        }
        match Array::<u32>::create(&child_name, [2]) {
            Ok(second) => {
                second.persist();
                0
            }
            Err(_) => 3,
        }
    });
    assert_eq!(child.wait(), Exit::Code(0));
    drop(first);
    let second = Array::<u32>::open(&name).unwrap();
    assert_eq!(second.to_vec(), vec![2]);
    second.take_ownership();
    drop(second);
    assert_no_leftovers(tag);
}
