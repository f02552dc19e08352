//! [`SharedMap`] and [`SharedByteMap`]: Python's `Manager().dict()`
//! without the server process, as [`Shared`] handles over the core
//! [`Map`](shmkit_core::map::Map) and [`ByteMap`](shmkit_core::map::ByteMap)
//! objects.
//!
//! The map lives in the segment: every process that maps it reads and
//! writes it directly (a `get` costs tens of nanoseconds, not a round trip
//! to a manager process). Its capacity is fixed at creation; inserting a
//! new key into a full map is an error ([`MapError::Full`]), never a silent
//! drop. Readers never lock and never wait for a writer; writers lock
//! stripes of the table; a writer killed at any instruction leaves the map
//! as it was before or after its operation, and the next writer repairs
//! it. The design, its crash table and its probe bounds are in
//! [`shmkit_core::map`].
//!
//! ```
//! use shmkit_posix::map::SharedMap;
//! use shmkit_posix::process;
//!
//! // Process A: a map of sensor id -> last reading, room for 64 entries.
//! let readings = SharedMap::<u32, f64>::anonymous(64)?;
//! readings.insert(7, 21.5)?;
//! // Process B (here a child), sees and updates the same map.
//! let child = process::spawn({
//!     let readings = readings.clone();
//!     move || {
//!         let t = readings.get(&7).unwrap().unwrap_or(0.0);
//!         readings.insert(8, t + 1.0).unwrap();
//!         readings.update(&7, |v| *v *= 2.0).unwrap(); // atomically
//!         0
//!     }
//! })?;
//! assert_eq!(child.join()?, 0);
//! assert_eq!(readings.get(&7)?, Some(43.0));
//! assert_eq!(readings.get(&8)?, Some(22.5));
//! let mut items = readings.items()?; // a consistent snapshot
//! items.sort_by_key(|(k, _)| *k);
//! assert_eq!(items, vec![(7, 43.0), (8, 22.5)]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The `dict[str] = bytes` case, with bounded lengths:
//!
//! ```
//! use shmkit_posix::map::{ByteMapInit, MapError, SharedByteMap};
//!
//! # let name = format!("/shmkit-doc-bytemap-{}", std::process::id());
//! // 16 entries, keys up to 32 bytes, values up to 256.
//! let frames = SharedByteMap::create(&name, ByteMapInit::new(16, 32, 256))?;
//! frames.insert("image", b"\x89PNG...")?;
//! let other = SharedByteMap::open(&name)?; // another process, usually
//! assert_eq!(other.get("image")?.as_deref(), Some(&b"\x89PNG..."[..]));
//! assert_eq!(
//!     other.insert("k".repeat(33), b""),
//!     Err(MapError::KeyTooLong { len: 33, max: 32 })
//! );
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! | Python | shmkit |
//! |---|---|
//! | `d[k] = v` | [`insert`](SharedMap::insert) (returns the old value) |
//! | `d[k]`, `d.get(k)`, `d.get(k, default)` | [`get`](SharedMap::get), [`get_or`](SharedMap::get_or) |
//! | `k in d` | [`contains_key`](SharedMap::contains_key) |
//! | `del d[k]`, `d.pop(k)` | [`remove`](SharedMap::remove) |
//! | `d.setdefault(k, v)` | [`get_or_insert`](SharedMap::get_or_insert) |
//! | `d[k] = f(d[k])` (atomically) | [`update`](SharedMap::update), [`update_or_insert`](SharedMap::update_or_insert) |
//! | `len(d)`, `d.clear()` | [`len`](SharedMap::len), [`clear`](SharedMap::clear) |
//! | `d.items()`, `d.keys()`, `d.values()` | [`items`](SharedMap::items), [`keys`](SharedMap::keys), [`values`](SharedMap::values) (a consistent snapshot) |

use std::ptr::NonNull;
use std::time::Duration;

use bytemuck::Pod;
use shmkit_core::map::{self as core_map, ByteMapView, MapParams, MapStats, MapView};

use crate::handle::{Create, IntoInit, Shared};

pub use shmkit_core::map::MapError;

/// A hash map of `K` to `V` (both `Pod`) in shared memory, of a capacity
/// fixed at creation: Python's `Manager().dict()` for plain-data keys and
/// values. Created from its capacity: `SharedMap::<u64, f64>::create(name,
/// 1000)`. See the [module docs](self).
pub type SharedMap<K, V> = Shared<core_map::Map<K, V>>;

/// A hash map of byte strings to byte strings in shared memory, with
/// maximum key and value lengths fixed at creation ([`ByteMapInit`]):
/// Python's `dict[str] = bytes`. See the [module docs](self).
pub type SharedByteMap = Shared<core_map::ByteMap>;

impl<K: Pod, V: Pod> Create for core_map::Map<K, V> {
    type Init = usize;

    fn params(capacity: &usize) -> MapParams {
        MapParams::of::<K, V>(*capacity)
    }

    /// Nothing to write: a zero-filled payload is an empty map.
    unsafe fn write_init(_payload: NonNull<u8>, _params: &MapParams, _capacity: usize) {}
}

/// A map's capacity: `SharedMap::<K, V>::create(name, capacity)`.
impl<K: Pod, V: Pod> IntoInit<core_map::Map<K, V>> for usize {
    fn into_init(self) -> usize {
        self
    }
}

/// One `(key, value)` of a [`SharedByteMap`] snapshot.
pub type ByteItem = (Vec<u8>, Vec<u8>);

/// What a [`SharedByteMap`] is created with: its capacity (entries) and
/// the longest key and value it takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteMapInit {
    /// Entries the map holds at most.
    pub capacity: usize,
    /// The longest key, in bytes (at most 64 KiB).
    pub max_key_len: usize,
    /// The longest value, in bytes (at most 16 MiB).
    pub max_value_len: usize,
}

impl ByteMapInit {
    /// `capacity` entries, keys up to `max_key_len` bytes, values up to
    /// `max_value_len` bytes.
    #[must_use]
    pub fn new(capacity: usize, max_key_len: usize, max_value_len: usize) -> ByteMapInit {
        ByteMapInit {
            capacity,
            max_key_len,
            max_value_len,
        }
    }
}

impl Create for core_map::ByteMap {
    type Init = ByteMapInit;

    fn params(init: &ByteMapInit) -> MapParams {
        MapParams::bytes(init.capacity, init.max_key_len, init.max_value_len)
    }

    /// Nothing to write: a zero-filled payload is an empty map.
    unsafe fn write_init(_payload: NonNull<u8>, _params: &MapParams, _init: ByteMapInit) {}
}

impl IntoInit<core_map::ByteMap> for ByteMapInit {
    fn into_init(self) -> ByteMapInit {
        self
    }
}

/// `(capacity, max_key_len, max_value_len)`.
impl IntoInit<core_map::ByteMap> for (usize, usize, usize) {
    fn into_init(self) -> ByteMapInit {
        ByteMapInit::new(self.0, self.1, self.2)
    }
}

impl<K: Pod, V: Pod> SharedMap<K, V> {
    /// The core view, whose writing operations give up after `timeout`
    /// waiting for a writer lock ([`MapError::TimedOut`], never early):
    /// `map.with_timeout(d).insert(k, v)`.
    #[must_use]
    pub fn with_timeout(&self, timeout: Duration) -> MapView<'_, K, V> {
        self.view().with_timeout(timeout)
    }

    /// Entries the map holds at most.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.params().capacity()
    }

    /// Entries now: Python's `len(d)` (a snapshot while others write).
    #[doc(alias = "__len__")]
    #[must_use]
    pub fn len(&self) -> usize {
        self.view().len()
    }

    /// Whether [`len`](Self::len) is 0.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.view().is_empty()
    }

    /// A copy of the value of `key`: Python's `d.get(k)`. Never waits for
    /// a writer (see [`MapView::get`]).
    ///
    /// # Errors
    /// [`MapError::Corrupt`]; rarely (a writer rewriting this very entry
    /// faster than it can be copied) the errors of a lock.
    #[doc(alias = "__getitem__")]
    pub fn get(&self, key: &K) -> Result<Option<V>, MapError> {
        self.view().get(key)
    }

    /// The value of `key`, or `default`: Python's `d.get(k, default)`.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub fn get_or(&self, key: &K, default: V) -> Result<V, MapError> {
        self.view().get_or(key, default)
    }

    /// Whether `key` is present: Python's `k in d`.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    #[doc(alias = "__contains__")]
    pub fn contains_key(&self, key: &K) -> Result<bool, MapError> {
        self.view().contains_key(key)
    }

    /// Sets `key` to `value`, returning the old value: Python's
    /// `d[k] = v`.
    ///
    /// # Errors
    /// [`MapError::Full`] for a new key in a full map (nothing changes);
    /// the errors of a lock; `Corrupt`.
    #[doc(alias = "__setitem__")]
    pub fn insert(&self, key: K, value: V) -> Result<Option<V>, MapError> {
        self.view().insert(key, value)
    }

    /// Removes `key`, returning its value: Python's `d.pop(k, None)` /
    /// `del d[k]`.
    ///
    /// # Errors
    /// The errors of a lock; `Corrupt`.
    #[doc(alias = "pop")]
    #[doc(alias = "__delitem__")]
    pub fn remove(&self, key: &K) -> Result<Option<V>, MapError> {
        self.view().remove(key)
    }

    /// The value of `key`, inserting `default` first if absent: Python's
    /// `d.setdefault(k, default)`.
    ///
    /// # Errors
    /// As [`insert`](Self::insert).
    #[doc(alias = "setdefault")]
    pub fn get_or_insert(&self, key: K, default: V) -> Result<V, MapError> {
        self.view().get_or_insert(key, default)
    }

    /// Changes the value of `key` with `f`, atomically (no other writer
    /// runs between the read and the write); `Ok(None)` if `key` is
    /// absent. `f` runs under the writer lock: keep it short, and call no
    /// writing method of this map from it.
    ///
    /// # Errors
    /// The errors of a lock; `Corrupt`.
    pub fn update<R>(&self, key: &K, f: impl FnOnce(&mut V) -> R) -> Result<Option<R>, MapError> {
        self.view().update(key, f)
    }

    /// [`update`](Self::update), starting from `default` for an absent
    /// key: Python's `d[k] = f(d.get(k, default))`, atomically (e.g. a
    /// counter shared by many processes).
    ///
    /// # Errors
    /// As [`insert`](Self::insert).
    pub fn update_or_insert<R>(
        &self,
        key: K,
        default: V,
        f: impl FnOnce(&mut V) -> R,
    ) -> Result<R, MapError> {
        self.view().update_or_insert(key, default, f)
    }

    /// Removes every entry, atomically: Python's `d.clear()`.
    ///
    /// # Errors
    /// The errors of a lock.
    pub fn clear(&self) -> Result<(), MapError> {
        self.view().clear()
    }

    /// Every `(key, value)` of a consistent snapshot (taken under every
    /// writer lock; readers go on meanwhile): Python's `d.items()`.
    ///
    /// # Errors
    /// The errors of a lock.
    pub fn items(&self) -> Result<Vec<(K, V)>, MapError> {
        let mut out = Vec::with_capacity(self.len());
        self.view().for_each(|k, v| out.push((k, v)))?;
        Ok(out)
    }

    /// Every key of a consistent snapshot: Python's `d.keys()`.
    ///
    /// # Errors
    /// As [`items`](Self::items).
    pub fn keys(&self) -> Result<Vec<K>, MapError> {
        let mut out = Vec::with_capacity(self.len());
        self.view().for_each(|k, _| out.push(k))?;
        Ok(out)
    }

    /// Every value of a consistent snapshot: Python's `d.values()`.
    ///
    /// # Errors
    /// As [`items`](Self::items).
    pub fn values(&self) -> Result<Vec<V>, MapError> {
        let mut out = Vec::with_capacity(self.len());
        self.view().for_each(|_, v| out.push(v))?;
        Ok(out)
    }

    /// Checks every invariant of the map (see [`MapView::check`]).
    ///
    /// # Errors
    /// `Corrupt` naming what is broken; the errors of a lock.
    pub fn check(&self) -> Result<MapStats, MapError> {
        self.view().check()
    }

    /// How many times a writer repaired the map after a dead one.
    #[must_use]
    pub fn repairs(&self) -> u32 {
        self.view().repairs()
    }
}

impl SharedByteMap {
    /// The core view, whose writing operations give up after `timeout`
    /// (see [`SharedMap::with_timeout`]).
    #[must_use]
    pub fn with_timeout(&self, timeout: Duration) -> ByteMapView<'_> {
        self.view().with_timeout(timeout)
    }

    /// Entries the map holds at most.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.params().capacity()
    }

    /// The longest key the map takes.
    #[must_use]
    pub fn max_key_len(&self) -> usize {
        self.view().max_key_len()
    }

    /// The longest value the map takes.
    #[must_use]
    pub fn max_value_len(&self) -> usize {
        self.view().max_value_len()
    }

    /// Entries now (a snapshot while others write).
    #[doc(alias = "__len__")]
    #[must_use]
    pub fn len(&self) -> usize {
        self.view().len()
    }

    /// Whether [`len`](Self::len) is 0.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.view().is_empty()
    }

    /// A copy of the value of `key`. A key longer than the maximum is
    /// absent.
    ///
    /// # Errors
    /// As [`SharedMap::get`].
    #[doc(alias = "__getitem__")]
    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Vec<u8>>, MapError> {
        let v = self.view();
        let mut out = vec![0; v.max_value_len()];
        Ok(v.get_into(key.as_ref(), &mut out)?.map(|n| {
            out.truncate(n);
            out
        }))
    }

    /// Copies the value of `key` into `out` (of at least
    /// [`max_value_len`](Self::max_value_len) bytes, or the value's
    /// length) without allocating; returns its length.
    ///
    /// # Errors
    /// `BufferTooSmall`; as [`get`](Self::get).
    pub fn get_into(
        &self,
        key: impl AsRef<[u8]>,
        out: &mut [u8],
    ) -> Result<Option<usize>, MapError> {
        self.view().get_into(key.as_ref(), out)
    }

    /// Whether `key` is present.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    #[doc(alias = "__contains__")]
    pub fn contains_key(&self, key: impl AsRef<[u8]>) -> Result<bool, MapError> {
        self.view().contains_key(key.as_ref())
    }

    /// Sets `key` to `value`, returning the old value.
    ///
    /// # Errors
    /// `KeyTooLong`, `ValueTooLong`; as [`SharedMap::insert`].
    #[doc(alias = "__setitem__")]
    pub fn insert(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
    ) -> Result<Option<Vec<u8>>, MapError> {
        let v = self.view();
        let mut old = vec![0; v.max_value_len()];
        Ok(v.insert(key.as_ref(), value.as_ref(), Some(&mut old))?
            .map(|n| {
                old.truncate(n);
                old
            }))
    }

    /// Sets `key` to `value` only if it is absent; returns whether it did.
    ///
    /// # Errors
    /// As [`insert`](Self::insert).
    #[doc(alias = "setdefault")]
    pub fn insert_if_absent(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
    ) -> Result<bool, MapError> {
        self.view().insert_if_absent(key.as_ref(), value.as_ref())
    }

    /// Removes `key`, returning its value.
    ///
    /// # Errors
    /// As [`SharedMap::remove`].
    #[doc(alias = "pop")]
    #[doc(alias = "__delitem__")]
    pub fn remove(&self, key: impl AsRef<[u8]>) -> Result<Option<Vec<u8>>, MapError> {
        let v = self.view();
        let mut old = vec![0; v.max_value_len()];
        Ok(v.remove(key.as_ref(), Some(&mut old))?.map(|n| {
            old.truncate(n);
            old
        }))
    }

    /// Changes the value of `key` with `f`, atomically; `Ok(None)` if
    /// absent. `f` may grow or shrink the value (up to the maximum).
    ///
    /// # Errors
    /// `ValueTooLong` if `f` makes it longer than the maximum (nothing
    /// changes); as [`SharedMap::update`].
    pub fn update<R>(
        &self,
        key: impl AsRef<[u8]>,
        f: impl FnOnce(&mut Vec<u8>) -> R,
    ) -> Result<Option<R>, MapError> {
        self.update_with(key.as_ref(), None, f)
    }

    /// [`update`](Self::update), starting from `default` for an absent
    /// key.
    ///
    /// # Errors
    /// As [`update`](Self::update); `Full` for a new key in a full map.
    pub fn update_or_insert<R>(
        &self,
        key: impl AsRef<[u8]>,
        default: impl AsRef<[u8]>,
        f: impl FnOnce(&mut Vec<u8>) -> R,
    ) -> Result<R, MapError> {
        self.update_with(key.as_ref(), Some(default.as_ref()), f)?
            .ok_or(MapError::Corrupt {
                what: "an update with a default found no value",
            })
    }

    fn update_with<R>(
        &self,
        key: &[u8],
        default: Option<&[u8]>,
        f: impl FnOnce(&mut Vec<u8>) -> R,
    ) -> Result<Option<R>, MapError> {
        let v = self.view();
        let max = v.max_value_len();
        let mut buf = vec![0; max];
        let mut result = None;
        let mut too_long = None;
        let stored = v.update_in(key, default, &mut buf, |b, len| {
            let mut value = b[..len].to_vec();
            result = Some(f(&mut value));
            if value.len() > max {
                // Refused by `update_in` (nothing is stored); reported
                // with the length the closure made.
                too_long = Some(value.len());
                return max + 1;
            }
            b[..value.len()].copy_from_slice(&value);
            value.len()
        });
        match stored {
            Err(MapError::ValueTooLong { .. }) if too_long.is_some() => {
                Err(MapError::ValueTooLong {
                    len: too_long.unwrap_or(0),
                    max,
                })
            }
            Err(e) => Err(e),
            Ok(None) => Ok(None),
            Ok(Some(_)) => Ok(result),
        }
    }

    /// Removes every entry, atomically.
    ///
    /// # Errors
    /// The errors of a lock.
    pub fn clear(&self) -> Result<(), MapError> {
        self.view().clear()
    }

    /// Every `(key, value)` of a consistent snapshot.
    ///
    /// # Errors
    /// The errors of a lock; `Corrupt`.
    pub fn items(&self) -> Result<Vec<ByteItem>, MapError> {
        let mut out = Vec::with_capacity(self.len());
        self.view().for_each(|e| {
            let (mut k, mut v) = (vec![0; e.key_len()], vec![0; e.value_len()]);
            e.read_key(&mut k);
            e.read_value(&mut v);
            out.push((k, v));
        })?;
        Ok(out)
    }

    /// Every key of a consistent snapshot.
    ///
    /// # Errors
    /// As [`items`](Self::items).
    pub fn keys(&self) -> Result<Vec<Vec<u8>>, MapError> {
        let mut out = Vec::with_capacity(self.len());
        self.view().for_each(|e| {
            let mut k = vec![0; e.key_len()];
            e.read_key(&mut k);
            out.push(k);
        })?;
        Ok(out)
    }

    /// Every value of a consistent snapshot.
    ///
    /// # Errors
    /// As [`items`](Self::items).
    pub fn values(&self) -> Result<Vec<Vec<u8>>, MapError> {
        let mut out = Vec::with_capacity(self.len());
        self.view().for_each(|e| {
            let mut v = vec![0; e.value_len()];
            e.read_value(&mut v);
            out.push(v);
        })?;
        Ok(out)
    }

    /// As [`SharedMap::check`].
    ///
    /// # Errors
    /// As [`SharedMap::check`].
    pub fn check(&self) -> Result<MapStats, MapError> {
        self.view().check()
    }

    /// As [`SharedMap::repairs`].
    #[must_use]
    pub fn repairs(&self) -> u32 {
        self.view().repairs()
    }
}
