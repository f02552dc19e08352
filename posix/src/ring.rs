//! Single-producer single-consumer rings, with rtrb's vocabulary:
//! [`Ring<T>`] (the index ring: batches and chunks) and
//! [`StampedRing<T>`] (a stamp per slot: single messages), each a
//! [`Shared`] segment handle handing out one owned [`Producer`] and one
//! owned [`Consumer`] (`'static + Send`: move them into threads, store
//! them next to what they feed).
//!
//! | call | what |
//! |---|---|
//! | [`new::<T>(capacity)`](new) | an anonymous ring, both ends (rtrb's `RingBuffer::new`) |
//! | `Ring::<T>::create(name, capacity)`, `open`, `anonymous`, `memfd`, ... | the segment, as every [`Shared`] kind |
//! | `ring.producer()` / `ring.consumer()` | one end each; a second live one is [`AttachError::Taken`] |
//! | `push` / `pop` | non-blocking ([`PushError`], [`PopError`]) |
//! | `push_blocking` / `pop_blocking`, `_timeout` | waiting |
//!
//! The guarantees (crash consistency, disconnect, hostile bytes) are the
//! core's: [`shmkit_core::queue::ring`], [`shmkit_core::queue::stamped`].
//! A handle inherited across `fork` is the same handle: the role is gone
//! when every copy is (see [`crate::role`]'s rules, summarised in the
//! [`queue`](crate::queue) module docs). `Disconnected` is final.
//!
//! ```
//! use shmkit_posix::ring;
//!
//! let (tx, mut rx) = ring::new::<u32>(8)?;
//! let t = std::thread::spawn(move || {
//!     for i in 0..100 {
//!         tx.push_blocking(i).unwrap();
//!     }
//! });
//! let got: Vec<u32> = (0..100).map(|_| rx.pop_blocking().unwrap()).collect();
//! assert_eq!(got, (0..100).collect::<Vec<_>>());
//! t.join().unwrap();
//! // The producer is gone and everything was received.
//! assert_eq!(rx.pop(), Err(ring::PopError::Disconnected));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::time::Duration;

use bytemuck::Pod;
use shmkit_core::queue::ring::{self as core_ring, ReadChunk, Spsc, WriteChunk};
use shmkit_core::queue::stamped::{self as core_stamped, StampedSpsc};
use shmkit_core::wait::AdaptiveSpin;

use crate::error::CreateError;
use crate::handle::{Create, IntoInit, Shared};
use crate::role::Owned;

pub use shmkit_core::queue::roles::AttachError;
pub use shmkit_core::queue::{
    RecvError, RecvTimeoutError, SendError, SendTimeoutError, TryRecvError as PopError,
    TrySendError as PushError,
};

/// A single-producer single-consumer index ring of `T` in a segment (kind
/// `ring`); the capacity is a power of two. See the module docs.
pub type Ring<T> = Shared<Spsc<T>>;

/// A single-producer single-consumer stamped ring of `T` in a segment
/// (kind `stamped-ring`); the capacity is a power of two.
pub type StampedRing<T> = Shared<StampedSpsc<T>>;

macro_rules! capacity_init {
    ($($obj:ident),*) => {$(
        impl<T: Pod> Create for $obj<T> {
            type Init = usize;

            fn params(capacity: &usize) -> usize {
                *capacity
            }

            unsafe fn write_init(_: std::ptr::NonNull<u8>, _: &usize, _: usize) {}
        }

        impl<T: Pod> IntoInit<$obj<T>> for usize {
            fn into_init(self) -> usize {
                self
            }
        }
    )*};
}
capacity_init!(Spsc, StampedSpsc);

/// An anonymous ring of `capacity` slots (a power of two) and both its
/// ends: rtrb's `RingBuffer::new(capacity)`. Shared with children forked
/// afterwards.
///
/// # Errors
/// [`CreateError::InvalidLayout`] for a bad capacity; OS errors.
pub fn new<T: Pod>(capacity: usize) -> Result<(Producer<T>, Consumer<T>), CreateError> {
    let ring = Ring::<T>::anonymous(capacity)?;
    Ok((fresh(ring.producer()), fresh(ring.consumer())))
}

/// The ends of a ring this process just made: nobody else can hold them.
fn fresh<H>(end: Result<H, AttachError>) -> H {
    end.expect("a ring this process just created has both ends free")
}

macro_rules! spsc_ends {
    ($obj:ident, $core:ident, $prod:ident, $cons:ident, $what:literal) => {
        #[doc = concat!("The producer end of a ", $what, ": owned, `'static + Send`, not `Sync`.")]
        #[derive(Debug)]
        pub struct $prod<T: Pod> {
            inner: Owned<$core::$prod<'static, T>, $obj<T>>,
        }

        #[doc = concat!("The consumer end of a ", $what, ": owned, `'static + Send`, not `Sync`.")]
        #[derive(Debug)]
        pub struct $cons<T: Pod> {
            inner: Owned<$core::$cons<'static, T>, $obj<T>>,
        }

        impl<T: Pod> Shared<$obj<T>> {
            /// Attaches this process as the producer.
            ///
            /// # Errors
            /// [`AttachError::Taken`] while a live handle holds the role;
            /// [`AttachError::Closed`] once the role closed.
            pub fn producer(&self) -> Result<$prod<T>, AttachError> {
                Owned::attach(self, |r, presence| r.producer_with(presence))
                    .map(|inner| $prod { inner })
            }

            /// Attaches this process as the consumer.
            ///
            /// # Errors
            /// As [`producer`](Self::producer).
            pub fn consumer(&self) -> Result<$cons<T>, AttachError> {
                Owned::attach(self, |r, presence| r.consumer_with(presence))
                    .map(|inner| $cons { inner })
            }

            /// Number of slots.
            #[must_use]
            pub fn capacity(&self) -> usize {
                *self.params()
            }
        }

        impl<T: Pod> $prod<T> {
            /// Pushes `value` if there is room now.
            ///
            /// # Errors
            /// `Full`, `Disconnected` (full, and the consumer is gone),
            /// `Corrupt`; the value comes back.
            #[doc(alias = "try_push")]
            #[doc(alias = "put_nowait")]
            #[inline]
            pub fn push(&self, value: T) -> Result<(), PushError<T>> {
                self.inner.with(|p| p.try_push(value))
            }

            /// Pushes `value`, waiting while the ring is full.
            ///
            /// # Errors
            /// `Disconnected`, `Corrupt`; the value comes back.
            #[doc(alias = "put")]
            pub fn push_blocking(&self, value: T) -> Result<(), SendError<T>> {
                self.inner.with(|p| p.push(value))
            }

            /// Pushes `value`, waiting at most `timeout` for room.
            ///
            /// # Errors
            /// `Timeout`, `Disconnected`, `Corrupt`; the value comes back.
            pub fn push_timeout(
                &self,
                value: T,
                timeout: Duration,
            ) -> Result<(), SendTimeoutError<T>> {
                self.inner.with(|p| p.push_timeout(value, timeout))
            }

            /// Sets how blocking pushes spin before sleeping.
            pub fn set_spin(&mut self, spin: impl Into<AdaptiveSpin>) {
                self.inner.get_mut().set_spin(spin);
            }

            /// Number of slots.
            #[must_use]
            pub fn capacity(&self) -> usize {
                self.inner.shared().view().capacity()
            }

            /// Closes the ring for good and detaches: the consumer gets
            /// `Disconnected` once drained, even while a `fork` copy of
            /// this end lives; no producer attaches again.
            pub fn close(self) {
                self.inner.close($core::$prod::close);
            }
        }

        impl<T: Pod> $cons<T> {
            /// Pops the oldest value if there is one.
            ///
            /// # Errors
            /// `Empty`; `Disconnected` (empty, and the producer is gone:
            /// final); `Corrupt`.
            #[doc(alias = "try_pop")]
            #[doc(alias = "get_nowait")]
            #[inline]
            pub fn pop(&self) -> Result<T, PopError> {
                self.inner.with(|c| c.try_pop())
            }

            /// Pops the oldest value, waiting while the ring is empty.
            ///
            /// # Errors
            /// `Disconnected`, `Corrupt`.
            #[doc(alias = "get")]
            pub fn pop_blocking(&self) -> Result<T, RecvError> {
                self.inner.with(|c| c.pop())
            }

            /// Pops the oldest value, waiting at most `timeout`.
            ///
            /// # Errors
            /// `Timeout`, `Disconnected`, `Corrupt`.
            pub fn pop_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
                self.inner.with(|c| c.pop_timeout(timeout))
            }

            /// Sets how blocking pops spin before sleeping.
            pub fn set_spin(&mut self, spin: impl Into<AdaptiveSpin>) {
                self.inner.get_mut().set_spin(spin);
            }

            /// Number of slots.
            #[must_use]
            pub fn capacity(&self) -> usize {
                self.inner.shared().view().capacity()
            }

            /// Closes the ring for good and detaches: the producer gets
            /// `Disconnected` (when full); no consumer attaches again.
            pub fn close(self) {
                self.inner.close($core::$cons::close);
            }
        }
    };
}

spsc_ends!(Spsc, core_ring, Producer, Consumer, "[`Ring`]");
spsc_ends!(
    StampedSpsc,
    core_stamped,
    StampedProducer,
    StampedConsumer,
    "[`StampedRing`]"
);

impl<T: Pod> Producer<T> {
    /// Free slots now.
    ///
    /// # Errors
    /// `Corrupt` on impossible shared indices.
    pub fn slots(&self) -> Result<usize, PushError<()>> {
        self.inner.with(|p| p.slots())
    }

    /// Whether the ring is full now.
    #[must_use]
    pub fn is_full(&self) -> bool {
        self.inner.with(|p| p.is_full())
    }

    /// Pushes as many of `values` as fit now; returns how many.
    ///
    /// # Errors
    /// `Full` (no room at all), `Disconnected`, `Corrupt`.
    pub fn push_slice(&self, values: &[T]) -> Result<usize, PushError<()>> {
        self.inner.with(|p| p.push_slice(values))
    }

    /// `n` free slots to fill in place, then commit (rtrb's
    /// `write_chunk_uninit`; the slots are shared memory, written through
    /// [`SharedSlice`](shmkit_core::shared::SharedSlice)).
    ///
    /// # Errors
    /// `Full` if fewer than `n` slots are free; `Disconnected`, `Corrupt`.
    pub fn write_chunk(&mut self, n: usize) -> Result<WriteChunk<'_, 'static, T>, PushError<()>> {
        self.inner.get_mut().write_chunk(n)
    }
}

impl<T: Pod> Consumer<T> {
    /// Values ready now.
    ///
    /// # Errors
    /// `Disconnected` (empty, producer gone), `Corrupt`.
    pub fn slots(&self) -> Result<usize, PopError> {
        self.inner.with(|c| c.slots())
    }

    /// Whether nothing is ready now.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.inner.with(|c| c.is_empty())
    }

    /// Pops up to `out.len()` values into `out`; returns how many.
    ///
    /// # Errors
    /// `Empty`, `Disconnected`, `Corrupt`.
    pub fn pop_into(&self, out: &mut [T]) -> Result<usize, PopError> {
        self.inner.with(|c| c.pop_into(out))
    }

    /// `n` ready values to read in place, then commit.
    ///
    /// # Errors
    /// `Empty` if fewer than `n` are ready; `Disconnected`, `Corrupt`.
    pub fn read_chunk(&mut self, n: usize) -> Result<ReadChunk<'_, 'static, T>, PopError> {
        self.inner.get_mut().read_chunk(n)
    }
}
