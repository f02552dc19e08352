//! CPython's `_TestPool`, `_TestPoolWorkerErrors` and
//! `_TestPoolWorkerLifetime` (Lib/test/_test_multiprocessing.py, 3.11)
//! ported to shmkit's `Pool`, with real worker processes. Each test is
//! named after the Python test it ports; `docs/cpython-parity.md` lists
//! what is ported, what differs and what does not apply.

// Test names are `test_<python class>__<python test>`.
#![allow(non_snake_case)]

mod common;

use common::serial;
use std::time::{Duration, Instant};

use shmkit_posix::message::{DecodeError, EncodeError, Message};
use shmkit_posix::process::pool::Builder;
use shmkit_posix::process::{self, Pool, PoolError, TaskError};

/// Generous bound on anything the workers do (a busy 2-vCPU machine).
const LONG: Duration = Duration::from_secs(60);
const TIMEOUT1: Duration = Duration::from_millis(100);
const TIMEOUT2: Duration = Duration::from_millis(100);

/// Forking from libtest's threads is allowed explicitly (workers run only
/// the pool's loop and these functions); the tests run one at a time.
fn pool(n: usize) -> Builder {
    Pool::builder()
        .processes(n)
        .process(process::Builder::new().allow_threads(true))
}

fn sqr(x: u64) -> u64 {
    x * x
}

/// Python's `sqr(x, wait)`: `[x, milliseconds]`.
fn sqr_wait([x, ms]: [u64; 2]) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    x * x
}

fn mul(a: u64, b: u64) -> u64 {
    a * b
}

fn values<R: std::fmt::Debug>(results: Vec<Result<R, TaskError>>) -> Vec<R> {
    results.into_iter().map(Result::unwrap).collect()
}

fn squares(n: u64) -> Vec<u64> {
    (0..n).map(sqr).collect()
}

// ---------------------------------------------------------------------
// _TestPool

#[test]
fn test_pool__apply() {
    let _serial = serial();
    let p = pool(4).build().unwrap();
    assert_eq!(p.apply(sqr, 5).unwrap(), 25);
    // Keyword arguments travel as one struct or array.
    assert_eq!(p.apply(sqr_wait, [3, 0]).unwrap(), 9);
}

#[test]
fn test_pool__map() {
    let _serial = serial();
    let p = pool(4).build().unwrap();
    assert_eq!(values(p.map(sqr, 0..10).unwrap()), squares(10));
    assert_eq!(
        values(p.map_chunked(sqr, 0..100, 20).unwrap()),
        squares(100)
    );
}

#[test]
fn test_pool__starmap() {
    let _serial = serial();
    let p = pool(4).build().unwrap();
    let tuples: Vec<(u64, u64)> = (0..10).zip((0..10).rev()).collect();
    let want: Vec<u64> = tuples.iter().map(|&(a, b)| a * b).collect();
    assert_eq!(values(p.starmap(mul, tuples.clone()).unwrap()), want);
    let tuples: Vec<(u64, u64)> = (0..100).zip((0..100).rev()).collect();
    let want: Vec<u64> = tuples.iter().map(|&(a, b)| a * b).collect();
    assert_eq!(
        values(p.starmap_async(mul, tuples, Some(20)).unwrap().get()),
        want
    );
}

#[test]
fn test_pool__starmap_async() {
    let _serial = serial();
    let p = pool(4).build().unwrap();
    let tuples: Vec<(u64, u64)> = (0..100).zip((0..100).rev()).collect();
    let want: Vec<u64> = tuples.iter().map(|&(a, b)| a * b).collect();
    assert_eq!(
        values(p.starmap_async(mul, tuples, None).unwrap().get()),
        want
    );
}

#[test]
fn test_pool__map_async() {
    let _serial = serial();
    let p = pool(4).build().unwrap();
    assert_eq!(
        values(p.map_async(sqr, 0..10, None).unwrap().get()),
        squares(10)
    );
}

fn parse(s: [u8; 1]) -> u64 {
    match s[0] {
        b'0'..=b'9' => u64::from(s[0] - b'0'),
        _ => panic!("invalid literal for int(): {:?}", s[0] as char),
    }
}

/// Python's callbacks are a `MapResult` whose `get` gives each task's
/// value or error: `map_async(int, ['1'])` succeeds, `['a']` fails.
#[test]
fn test_pool__map_async_callbacks() {
    let _serial = serial();
    let p = pool(2).build().unwrap();
    let r = p.map_async(parse, [*b"1"], None).unwrap().get();
    assert_eq!(r, [Ok(1)]);
    let r = p.map_async(parse, [*b"a"], None).unwrap().get();
    assert!(
        matches!(&r[..], [Err(TaskError::Panicked { message })] if message.contains("invalid literal"))
    );
}

/// A value that cannot be encoded (Python: an object whose pickling
/// raises): `Picky(0)`.
#[derive(Debug)]
struct Picky(u8);

impl Message for Picky {
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        if self.0 == 0 {
            return Err(EncodeError::new("cannot pickle Picky(0)"));
        }
        out.push(self.0);
        Ok(())
    }

    fn decode(bytes: &[u8]) -> Result<Picky, DecodeError> {
        match bytes {
            [b] => Ok(Picky(*b)),
            _ => Err(DecodeError::new("not one byte")),
        }
    }
}

fn picky_sqr(p: Picky) -> u64 {
    sqr(u64::from(p.0))
}

/// Issue 19425: arguments that fail to encode do not hang the pool; each
/// such task fails, the others run.
#[test]
fn test_pool__map_unplicklable() {
    let _serial = serial();
    let p = pool(2).build().unwrap();
    let r = p
        .map_async(picky_sqr, (0..10).map(|i| Picky(i % 2)), Some(1))
        .unwrap()
        .get_timeout(LONG)
        .expect("the map finished");
    for (i, r) in r.into_iter().enumerate() {
        if i % 2 == 0 {
            assert!(matches!(r, Err(TaskError::Failed { .. })), "{i}: {r:?}");
        } else {
            assert_eq!(r.unwrap(), 1);
        }
    }
    assert_eq!(p.apply(sqr, 4).unwrap(), 16, "the pool still works");
}

#[test]
fn test_pool__map_chunksize() {
    let _serial = serial();
    let p = pool(2).build().unwrap();
    let r = p.map_async(sqr, Vec::new(), Some(1)).unwrap();
    assert_eq!(
        r.get_timeout(TIMEOUT1).expect("stalled on an empty list"),
        []
    );
}

#[test]
fn test_pool__async() {
    let _serial = serial();
    let p = pool(4).build().unwrap();
    let res = p.apply_async(sqr_wait, [7, 100]).unwrap();
    let t0 = Instant::now();
    assert_eq!(res.get().unwrap(), 49);
    assert!(t0.elapsed() < LONG);
}

#[test]
fn test_pool__async_timeout() {
    let _serial = serial();
    let p = pool(3).build().unwrap();
    let res = p.apply_async(sqr_wait, [6, 60_000]).unwrap();
    let t0 = Instant::now();
    assert_eq!(res.get_timeout(TIMEOUT2), Err(TaskError::Timeout));
    let e = t0.elapsed();
    assert!(
        e >= TIMEOUT2 && e < TIMEOUT2 + Duration::from_secs(10),
        "{e:?}"
    );
    p.terminate();
    p.join().unwrap();
    assert_eq!(res.get_timeout(LONG), Err(TaskError::Terminated));
}

#[test]
fn test_pool__imap() {
    let _serial = serial();
    let p = pool(4).build().unwrap();
    let it = p.imap(sqr, 0..10).unwrap();
    assert_eq!(values(it.collect()), squares(10));
    let mut it = p.imap(sqr, 0..10).unwrap();
    for i in 0..10 {
        assert_eq!(it.next().unwrap().unwrap(), i * i);
    }
    assert!(it.next().is_none(), "StopIteration");
    let mut it = p.imap_chunked(sqr, 0..1000, 100).unwrap();
    for i in 0..1000 {
        assert_eq!(it.next().unwrap().unwrap(), i * i);
    }
    assert!(it.next().is_none());
}

#[test]
fn test_pool__imap_unordered() {
    let _serial = serial();
    let p = pool(4).build().unwrap();
    let mut got: Vec<u64> = p
        .imap_unordered(sqr, 0..10)
        .unwrap()
        .map(|(_, r)| r.unwrap())
        .collect();
    got.sort_unstable();
    assert_eq!(got, squares(10));
    let mut got: Vec<(usize, u64)> = p
        .imap_unordered_chunked(sqr, 0..1000, 100)
        .unwrap()
        .map(|(i, r)| (i, r.unwrap()))
        .collect();
    got.sort_unstable();
    assert_eq!(got.len(), 1000);
    assert!(got.iter().all(|&(i, v)| v == sqr(i as u64)));
}

#[test]
fn test_pool__make_pool() {
    let _serial = serial();
    assert!(matches!(Pool::new(0), Err(PoolError::NoWorkers)));
    let p = pool(3).build().unwrap();
    assert_eq!(p.processes(), 3);
    assert_eq!(p.pids().len(), 3);
    p.close();
    p.join().unwrap();
}

/// Slow tasks that take "forever": terminate ends the pool at once, and
/// join returns.
#[test]
fn test_pool__terminate() {
    let _serial = serial();
    let p = pool(3).build().unwrap();
    let result = p
        .map_async(sqr_wait, (0..10_000).map(|i| [i, 60_000]), Some(1))
        .unwrap();
    let t0 = Instant::now();
    p.terminate();
    p.join().unwrap();
    assert!(t0.elapsed() < Duration::from_secs(30));
    let r = result
        .get_timeout(LONG)
        .expect("terminated tasks are settled");
    assert!(r.iter().all(|r| *r == Err(TaskError::Terminated)));
}

#[test]
fn test_pool__empty_iterable() {
    let _serial = serial();
    let p = pool(1).build().unwrap();
    assert_eq!(p.map(sqr, Vec::new()).unwrap(), []);
    assert_eq!(p.imap(sqr, Vec::new()).unwrap().count(), 0);
    assert_eq!(p.imap_unordered(sqr, Vec::new()).unwrap().count(), 0);
    assert_eq!(p.map_async(sqr, Vec::new(), None).unwrap().get(), []);
    p.close();
    p.join().unwrap();
}

/// `with Pool(2) as p:` is a scope (dropping terminates); after `join` the
/// pool refuses new work (Python's ValueError).
#[test]
fn test_pool__context() {
    let _serial = serial();
    let p = pool(2).build().unwrap();
    let r = p.map_async(sqr, 0..10, None).unwrap();
    assert_eq!(values(r.get()), squares(10));
    p.close();
    assert!(matches!(
        p.map_async(sqr, 0..10, None),
        Err(PoolError::Closed)
    ));
    p.join().unwrap();
    assert!(matches!(
        p.map_async(sqr, 0..10, None),
        Err(PoolError::Terminated)
    ));
}

fn raise_runtime_error(_: u8) -> u8 {
    panic!("RuntimeError(123)"); // some comment
}

/// The worker's error reaches the caller with its message (Python checks
/// the remote traceback text).
#[test]
fn test_pool__traceback() {
    let _serial = serial();
    let p = pool(1).build().unwrap();
    let e = p.apply(raise_runtime_error, 0).unwrap_err();
    let e = e.downcast::<TaskError>().expect("a task error");
    assert_eq!(
        *e,
        TaskError::Panicked {
            message: "RuntimeError(123)".into()
        }
    );
    assert!(e.to_string().contains("RuntimeError(123)"));
}

/// Issue 20980: the error is the task's, not wrapped in another.
#[test]
fn test_pool__wrapped_exception() {
    let _serial = serial();
    let p = pool(1).build().unwrap();
    let e = p.apply(raise_runtime_error, 0).unwrap_err();
    assert!(matches!(
        e.downcast_ref::<TaskError>(),
        Some(TaskError::Panicked { .. })
    ));
}

fn raise_large_value_error(x: u64) -> u64 {
    assert!(x != 0, "{}", "x".repeat(1 << 16));
    x
}

/// Issue 23992: a failing task does not stop the others; close and join
/// do not deadlock, and every task ran.
#[test]
fn test_pool__map_no_failfast() {
    let _serial = serial();
    let p = pool(2).build().unwrap();
    let r = p.map(raise_large_value_error, [0, 1]).unwrap();
    match &r[0] {
        // The message comes back (capped at 4 KiB).
        Err(TaskError::Panicked { message }) => assert!(message.starts_with("xxxx"), "{message}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(r[1], Ok(1));
    p.close();
    p.join().unwrap();
}

// ---------------------------------------------------------------------
// _TestPoolWorkerErrors

fn raising(_: u8) -> u8 {
    panic!("KeyError('key')")
}

/// The error callback's argument is the `Err` of `get`.
#[test]
fn test_pool_worker_errors__async_error_callback() {
    let _serial = serial();
    let p = pool(2).build().unwrap();
    let res = p.apply_async(raising, 0).unwrap();
    assert!(
        matches!(res.get(), Err(TaskError::Panicked { message }) if message.contains("KeyError"))
    );
    p.close();
    p.join().unwrap();
}

fn unpickleable_result(_: u8) -> Picky {
    Picky(0)
}

/// A result that cannot be encoded fails its task (Python's
/// `MaybeEncodingError`) without losing the worker.
#[test]
fn test_pool_worker_errors__unpickleable_result() {
    let _serial = serial();
    let p = pool(2).build().unwrap();
    let pids = p.pids();
    for _ in 0..20 {
        let res = p.apply_async(unpickleable_result, 0).unwrap();
        match res.get() {
            Err(TaskError::Failed { why }) => assert!(why.contains("cannot pickle"), "{why}"),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(p.pids(), pids, "a worker was lost");
    p.close();
    p.join().unwrap();
}

// ---------------------------------------------------------------------
// _TestPoolWorkerLifetime

#[test]
fn test_pool_worker_lifetime__pool_worker_lifetime() {
    let _serial = serial();
    let p = pool(3).maxtasksperchild(10).build().unwrap();
    assert_eq!(p.pids().len(), 3);
    let mut orig = p.pids();
    let results: Vec<_> = (0..100).map(|i| p.apply_async(sqr, i).unwrap()).collect();
    for (j, res) in results.into_iter().enumerate() {
        assert_eq!(res.get().unwrap(), sqr(j as u64));
    }
    let mut fin = p.pids();
    assert_eq!(fin.len(), 3, "the pool was refilled");
    orig.sort_unstable();
    fin.sort_unstable();
    assert_ne!(orig, fin, "no worker was replaced");
    p.close();
    p.join().unwrap();
}

/// Issue 10332: closing a pool whose workers have limited lifetimes
/// before its tasks completed does not make join hang.
#[test]
fn test_pool_worker_lifetime__pool_worker_lifetime_early_close() {
    let _serial = serial();
    let p = pool(3).maxtasksperchild(1).build().unwrap();
    let results: Vec<_> = (0..6)
        .map(|i| p.apply_async(sqr_wait, [i, 300]).unwrap())
        .collect();
    p.close();
    p.join().unwrap();
    for (j, res) in results.into_iter().enumerate() {
        assert_eq!(res.get().unwrap(), sqr(j as u64));
    }
}
