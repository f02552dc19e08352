//! Values that cross to another process as bytes: arguments and results of
//! child processes and pool tasks.
//!
//! [`Message`] is implemented for every `Pod` type (its bytes, no
//! encoding) and, with the `serde` feature, for `Serde<T>`, which wraps
//! any `Serialize + DeserializeOwned` value and encodes it with postcard
//! (compact, maintained, `no_std`-capable). The wrapper keeps the two paths
//! apart: a `Pod` struct never needs `Serialize`, and enabling the feature
//! changes nothing for code that does not use it.
//!
//! A send into a queue slot ([`Message::encode_to`]) writes postcard's
//! bytes with an encoder of this crate's, straight into the slot: postcard's
//! own serializer hands its output over a field at a time and cost more
//! than the rest of the send. The bytes are the same (tested against
//! postcard over every shape serde has), and postcard alone decodes.
//!
//! Bytes that come back from another process are checked: a wrong length
//! or an encoding that does not decode is a [`DecodeError`], never a panic.

use std::fmt;

use bytemuck::Pod;

#[cfg(feature = "serde")]
mod wire;

/// A value that can be sent to another process as bytes.
pub trait Message: Sized {
    /// Appends the value's encoding to `out`.
    ///
    /// # Errors
    /// The value cannot be encoded (a `Serialize` impl that fails).
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError>;

    /// The value `bytes` encode.
    ///
    /// # Errors
    /// The bytes are not an encoding of a `Self` (another type's bytes, a
    /// truncated message, a hostile peer).
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError>;

    /// The length of the encoding, when it is known without encoding
    /// (every `Pod`: its size): lets a queue refuse a message too long
    /// for its slots before taking a slot.
    fn encoded_len(&self) -> Option<usize> {
        None
    }

    /// The length of every value's encoding, when the type has one
    /// (every `Pod`: its size): lets a pool pack a chunk of them into one
    /// message with no length in front of each.
    const FIXED_LEN: Option<usize> = None;

    /// Writes the value's encoding into `sink` piece by piece: straight
    /// into a queue slot, with no intermediate buffer, for the types that
    /// override it (every `Pod`, [`Serde<T>`]); the default goes through
    /// [`encode`](Self::encode) and a `Vec`.
    ///
    /// # Errors
    /// [`EncodeToError::Encode`] if the value cannot be encoded,
    /// [`EncodeToError::Full`] if the sink ran out of room.
    fn encode_to<S: ByteSink + ?Sized>(&self, sink: &mut S) -> Result<(), EncodeToError> {
        let mut bytes = Vec::new();
        self.encode(&mut bytes).map_err(EncodeToError::Encode)?;
        sink.put(&bytes).map_err(|SinkFull| EncodeToError::Full)
    }

    /// Encodes the value into the start of `buf`: the encoding's length.
    /// A queue encodes a message into a buffer on the stack this way
    /// before it takes a slot. The default goes through
    /// [`encode_to`](Self::encode_to).
    ///
    /// # Errors
    /// [`EncodeToError::Encode`] if the value cannot be encoded,
    /// [`EncodeToError::Full`] if its encoding is longer than `buf`.
    fn encode_to_slice(&self, buf: &mut [u8]) -> Result<usize, EncodeToError> {
        let mut sink = SliceSink { buf, len: 0 };
        self.encode_to(&mut sink)?;
        Ok(sink.len)
    }
}

/// A [`ByteSink`] over a buffer of fixed length.
struct SliceSink<'b> {
    buf: &'b mut [u8],
    len: usize,
}

impl ByteSink for SliceSink<'_> {
    fn put(&mut self, bytes: &[u8]) -> Result<(), SinkFull> {
        let room = self
            .buf
            .get_mut(self.len..self.len + bytes.len())
            .ok_or(SinkFull)?;
        room.copy_from_slice(bytes);
        self.len += bytes.len();
        Ok(())
    }
}

/// Where [`Message::encode_to`] writes: a `Vec`, or a queue slot of
/// bounded length.
pub trait ByteSink {
    /// Appends `bytes`.
    ///
    /// # Errors
    /// [`SinkFull`] if they do not fit (nothing of them was written).
    fn put(&mut self, bytes: &[u8]) -> Result<(), SinkFull>;
}

/// A [`ByteSink`] out of room (a message longer than its slot).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SinkFull;

impl ByteSink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) -> Result<(), SinkFull> {
        self.extend_from_slice(bytes);
        Ok(())
    }
}

/// Why [`Message::encode_to`] failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EncodeToError {
    /// The value cannot be encoded.
    Encode(EncodeError),
    /// The sink ran out of room.
    Full,
}

impl<T: Pod> Message for T {
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        out.extend_from_slice(bytemuck::bytes_of(self));
        Ok(())
    }

    fn encoded_len(&self) -> Option<usize> {
        Some(std::mem::size_of::<T>())
    }

    const FIXED_LEN: Option<usize> = Some(std::mem::size_of::<T>());

    #[inline]
    fn encode_to<S: ByteSink + ?Sized>(&self, sink: &mut S) -> Result<(), EncodeToError> {
        sink.put(bytemuck::bytes_of(self))
            .map_err(|SinkFull| EncodeToError::Full)
    }

    #[inline]
    fn encode_to_slice(&self, buf: &mut [u8]) -> Result<usize, EncodeToError> {
        let bytes = bytemuck::bytes_of(self);
        let room = buf.get_mut(..bytes.len()).ok_or(EncodeToError::Full)?;
        room.copy_from_slice(bytes);
        Ok(bytes.len())
    }

    fn decode(bytes: &[u8]) -> Result<T, DecodeError> {
        if bytes.len() != std::mem::size_of::<T>() {
            return Err(DecodeError::new(format!(
                "{} bytes cannot hold a {} ({} bytes)",
                bytes.len(),
                std::any::type_name::<T>(),
                std::mem::size_of::<T>()
            )));
        }
        Ok(bytemuck::pod_read_unaligned(bytes))
    }
}

/// A value that cannot be encoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodeError {
    what: String,
}

impl EncodeError {
    /// Why a value cannot be encoded: for [`Message`] impls of one's own
    /// (Python's "cannot pickle" error).
    #[must_use]
    pub fn new(what: impl Into<String>) -> EncodeError {
        EncodeError { what: what.into() }
    }
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a value cannot be encoded for another process: {}",
            self.what
        )
    }
}

impl std::error::Error for EncodeError {}

/// Bytes that do not decode as the expected type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError {
    what: String,
}

impl DecodeError {
    /// Why bytes do not decode: for [`Message`] impls of one's own.
    #[must_use]
    pub fn new(what: impl Into<String>) -> DecodeError {
        DecodeError { what: what.into() }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a message from another process does not decode: {}; both sides must send and expect the same type",
            self.what
        )
    }
}

impl std::error::Error for DecodeError {}

/// Any `Serialize + DeserializeOwned` value as a [`Message`], encoded with
/// postcard (feature `serde`).
///
/// ```
/// use shmkit_posix::message::{Message, Serde};
///
/// let mut bytes = Vec::new();
/// Serde(vec!["lidar".to_string(), "image".to_string()]).encode(&mut bytes)?;
/// let Serde(back) = Serde::<Vec<String>>::decode(&bytes)?;
/// assert_eq!(back, ["lidar", "image"]);
/// assert!(Serde::<Vec<String>>::decode(&bytes[..3]).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[cfg(feature = "serde")]
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Serde<T>(pub T);

#[cfg(feature = "serde")]
impl<T: serde::Serialize + serde::de::DeserializeOwned> Message for Serde<T> {
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        // Into the caller's buffer: no intermediate allocation.
        let buf = std::mem::take(out);
        match postcard::to_extend(&self.0, buf) {
            Ok(buf) => {
                *out = buf;
                Ok(())
            }
            Err(e) => Err(EncodeError {
                what: format!("{} ({e})", std::any::type_name::<T>()),
            }),
        }
    }

    /// postcard's bytes, written straight into the sink by an encoder
    /// of this crate's (faster for the small records queues carry; tested
    /// to give postcard's bytes exactly).
    #[inline]
    fn encode_to<S: ByteSink + ?Sized>(&self, sink: &mut S) -> Result<(), EncodeToError> {
        wire::encode_into(&self.0, sink)
    }

    #[inline]
    fn encode_to_slice(&self, buf: &mut [u8]) -> Result<usize, EncodeToError> {
        wire::encode_to_slice(&self.0, buf)
    }

    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        postcard::from_bytes(bytes)
            .map(Serde)
            .map_err(|e| DecodeError::new(format!("{} ({e})", std::any::type_name::<T>())))
    }
}

#[cfg(feature = "serde")]
impl<T> std::ops::Deref for Serde<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

#[cfg(feature = "serde")]
impl<T> std::ops::DerefMut for Serde<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

#[cfg(feature = "serde")]
impl<T> From<T> for Serde<T> {
    fn from(value: T) -> Serde<T> {
        Serde(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_round_trips_and_wrong_lengths_are_errors() {
        let mut out = Vec::new();
        0x1122_3344_5566_7788u64.encode(&mut out).unwrap();
        assert_eq!(u64::decode(&out), Ok(0x1122_3344_5566_7788));
        let e = u64::decode(&out[..7]).unwrap_err();
        assert!(e.to_string().contains("7 bytes cannot hold a u64"), "{e}");
        assert!(u32::decode(&out).is_err());
        // Unaligned input decodes too.
        let mut shifted = vec![0u8];
        shifted.extend_from_slice(&out);
        assert_eq!(u64::decode(&shifted[1..]), Ok(0x1122_3344_5566_7788));
    }

    /// A sink that takes at most `room` bytes.
    pub(super) struct Bounded {
        pub(super) out: Vec<u8>,
        pub(super) room: usize,
    }

    impl ByteSink for Bounded {
        fn put(&mut self, bytes: &[u8]) -> Result<(), SinkFull> {
            if self.out.len() + bytes.len() > self.room {
                return Err(SinkFull);
            }
            self.out.extend_from_slice(bytes);
            Ok(())
        }
    }

    /// `encode_to` writes what `encode` does, and a sink out of room is
    /// `Full`, for `Pod` values and (with the feature) serde values.
    #[test]
    fn encode_to_matches_encode() {
        let mut a = Vec::new();
        [1u32, 2, 3].encode(&mut a).unwrap();
        let mut b = Bounded {
            out: Vec::new(),
            room: 12,
        };
        [1u32, 2, 3].encode_to(&mut b).unwrap();
        assert_eq!(a, b.out);
        assert_eq!([1u32, 2, 3].encoded_len(), Some(12));
        let mut small = Bounded {
            out: Vec::new(),
            room: 11,
        };
        assert_eq!([1u32, 2, 3].encode_to(&mut small), Err(EncodeToError::Full));
        #[cfg(feature = "serde")]
        {
            let v = Serde((String::from("frame"), vec![1u32, 2, 3], Some(7i64)));
            let mut a = Vec::new();
            v.encode(&mut a).unwrap();
            let mut b = Bounded {
                out: Vec::new(),
                room: a.len(),
            };
            v.encode_to(&mut b).unwrap();
            assert_eq!(a, b.out);
            let mut small = Bounded {
                out: Vec::new(),
                room: a.len() - 1,
            };
            assert_eq!(v.encode_to(&mut small), Err(EncodeToError::Full));
            assert_eq!(v.encoded_len(), None);
        }
    }

    /// Values longer than the staging array, of small fields (several
    /// flushes) and of long ones (straight to the sink), encode through
    /// a sink as into a `Vec`; every sink too small by any amount is
    /// `Full`.
    #[cfg(feature = "serde")]
    #[test]
    fn encode_to_past_the_stage_matches_encode() {
        let small: Vec<u64> = (0..40).map(|k| k * 1_000_003).collect();
        let v = Serde((
            small,
            "x".repeat(3 * wire::STAGE),
            vec![0.5f64; 9],
            u128::MAX,
        ));
        let mut a = Vec::new();
        v.encode(&mut a).unwrap();
        assert!(a.len() > 4 * wire::STAGE);
        for room in 0..=a.len() {
            let mut b = Bounded {
                out: Vec::new(),
                room,
            };
            let r = v.encode_to(&mut b);
            if room == a.len() {
                assert_eq!(r, Ok(()));
                assert_eq!(a, b.out);
            } else {
                assert_eq!(r, Err(EncodeToError::Full), "room {room}");
            }
        }
    }

    #[cfg(feature = "serde")]
    #[test]
    fn serde_values_round_trip_and_garbage_is_an_error() {
        let v = Serde((String::from("frame"), vec![1u32, 2, 3], Some(7i64)));
        let mut out = Vec::new();
        v.encode(&mut out).unwrap();
        let back = Serde::<(String, Vec<u32>, Option<i64>)>::decode(&out).unwrap();
        assert_eq!(back, v);
        // Every prefix and some garbage: errors, never a panic.
        for n in 0..out.len() {
            let _ = Serde::<(String, Vec<u32>, Option<i64>)>::decode(&out[..n]);
        }
        let garbage = [0xffu8; 64];
        assert!(Serde::<Vec<String>>::decode(&garbage).is_err());
    }
}
