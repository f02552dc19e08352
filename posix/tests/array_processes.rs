//! Shared arrays and values between real processes.

use shmkit_posix::{Array, Value};
use shmkit_testkit::{fork, unique_name, Exit};

/// Python's Value/Array example: a child created by fork sets
/// `num.value = 3.14` and `arr[i] = -arr[i]`, the parent sees both.
#[test]
#[allow(clippy::approx_constant)] // Python's example value, not π.
fn fork_inherited_value_and_array_are_shared() {
    let num = Value::<f64>::anonymous(0.0).unwrap();
    let arr = Array::<i32>::anonymous((0..10).collect::<Vec<_>>()).unwrap();
    let child = fork(|| {
        num.set(3.14);
        for i in 0..arr.len() {
            let v = arr.get(i).unwrap();
            arr.set(i, -v).unwrap();
        }
        arr.set(0, 5).unwrap();
        0
    });
    assert_eq!(child.wait(), Exit::Code(0));
    assert_eq!(num.get(), 3.14);
    assert_eq!(arr.to_vec(), vec![5, -1, -2, -3, -4, -5, -6, -7, -8, -9]);
}

/// The parent creates a named array; a child attaches by name, writes; the
/// parent reads what the child wrote.
#[test]
fn named_array_written_by_a_child_process() {
    let name = unique_name("named-array");
    let arr = Array::<u64>::create(&name, 4).unwrap();
    let child_name = name.clone();
    let child = fork(move || {
        let Ok(mine) = Array::<u64>::open(&child_name) else {
            return 2;
        };
        if mine.len() != 4 {
            return 3;
        }
        mine.write_from(0, &[10, 20, 30, 40]).map_or(4, |()| 0)
    });
    assert_eq!(child.wait(), Exit::Code(0));
    assert_eq!(arr.to_vec(), vec![10, 20, 30, 40]);
}
