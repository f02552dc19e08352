//! postcard's wire format (version 1), written by an encoder of our own
//! straight into a [`ByteSink`]: the fast path of `Serde<T>`'s
//! `encode_to`, which puts a message into a queue slot.
//!
//! Why not postcard's own serializer there: it hands its output over a
//! field at a time, each varint built in a buffer of its own and then
//! copied, through a call the compiler does not see through; for the
//! small records queues carry, that was most of a send (a 4-field record:
//! 140 of the 370 instructions of a `try_send`). This one writes every
//! field into a stage on the stack in place and hands the stage to the
//! sink when it fills and at the end.
//!
//! The bytes are postcard's, exactly: every value decodes with
//! `postcard::from_bytes` (which stays the only decoder: it is the one
//! that must stand up to a hostile peer), and the tests compare this
//! encoder's output with `postcard::to_allocvec` over every shape serde
//! has. The format, from postcard's specification:
//! - `bool`, `u8`, `i8`: one byte; `f32`, `f64`: little-endian bytes;
//! - other integers: LEB128 varints, signed ones zigzagged first;
//! - `char`: as its UTF-8 string; strings and byte strings: varint
//!   length, bytes;
//! - `Option`: `0`, or `1` then the value; unit and unit structs: nothing;
//! - enum variants: the variant index as a varint, then the content;
//! - sequences and maps: varint length (which must be known up front),
//!   then the elements (keys and values alternating); tuples and structs:
//!   the elements, nothing in front.

use std::fmt;

use serde::ser::{self, Serialize};

use super::{ByteSink, EncodeError, EncodeToError, SinkFull};

/// The stage's length: a small message reaches the sink in one call.
pub(super) const STAGE: usize = 64;

/// Encodes `value` into `sink` in postcard's format.
#[inline]
pub(super) fn encode_into<T: Serialize + ?Sized, S: ByteSink + ?Sized>(
    value: &T,
    sink: &mut S,
) -> Result<(), EncodeToError> {
    let mut stage = [0; STAGE];
    let mut enc = Encoder {
        sink: Some(sink),
        stage: &mut stage,
        staged: 0,
    };
    let r = value.serialize(&mut enc).and_then(|()| enc.flush());
    r.map_err(failure::<T>)
}

/// Encodes `value` into `buf` in postcard's format: the encoding's
/// length, or `Full` if it is longer than `buf`.
#[inline]
pub(super) fn encode_to_slice<T: Serialize + ?Sized>(
    value: &T,
    buf: &mut [u8],
) -> Result<usize, EncodeToError> {
    let mut enc = Encoder::<NoSink> {
        sink: None,
        stage: buf,
        staged: 0,
    };
    match value.serialize(&mut enc) {
        Ok(()) => Ok(enc.staged),
        Err(e) => Err(failure::<T>(e)),
    }
}

fn failure<T: ?Sized>(e: Failure) -> EncodeToError {
    match e {
        Failure::Full => EncodeToError::Full,
        Failure::Custom(what) => EncodeToError::Encode(EncodeError {
            what: format!("{} ({what})", std::any::type_name::<T>()),
        }),
    }
}

/// No sink: [`encode_to_slice`]'s encoder has only its buffer.
enum NoSink {}

impl ByteSink for NoSink {
    fn put(&mut self, _: &[u8]) -> Result<(), SinkFull> {
        match *self {}
    }
}

/// Why an encoding stopped.
#[derive(Debug)]
enum Failure {
    /// The sink ran out of room.
    Full,
    /// The value cannot be encoded (its `Serialize` said so, or a
    /// sequence of unknown length).
    Custom(String),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Full => f.write_str("the message is longer than the queue's slots"),
            Failure::Custom(what) => f.write_str(what),
        }
    }
}

impl std::error::Error for Failure {}

impl ser::Error for Failure {
    fn custom<M: fmt::Display>(msg: M) -> Self {
        Failure::Custom(msg.to_string())
    }
}

/// The serializer: a stage in front of the sink ([`STAGE`] bytes on the
/// stack), or a caller's buffer and no sink.
struct Encoder<'s, S: ?Sized> {
    sink: Option<&'s mut S>,
    stage: &'s mut [u8],
    /// Bytes of `stage` in use.
    staged: usize,
}

impl<S: ByteSink + ?Sized> Encoder<'_, S> {
    /// Hands the staged bytes to the sink.
    #[inline]
    fn flush(&mut self) -> Result<(), Failure> {
        let sink = self.sink.as_mut().ok_or(Failure::Full)?;
        let n = std::mem::take(&mut self.staged);
        sink.put(&self.stage[..n]).map_err(|SinkFull| Failure::Full)
    }

    /// The stage from `staged` on, at least `n` bytes of it (at most the
    /// stage's length), flushing first if need be.
    #[inline(always)]
    fn room(&mut self, n: usize) -> Result<&mut [u8], Failure> {
        if self.stage.len() - self.staged < n {
            self.flush()?;
            if self.stage.len() < n {
                return Err(Failure::Full);
            }
        }
        Ok(&mut self.stage[self.staged..])
    }

    #[inline(always)]
    fn byte(&mut self, b: u8) -> Result<(), Failure> {
        self.room(1)?[0] = b;
        self.staged += 1;
        Ok(())
    }

    /// A fixed-length field (a float).
    #[inline]
    fn fixed<const N: usize>(&mut self, bytes: [u8; N]) -> Result<(), Failure> {
        self.room(N)?[..N].copy_from_slice(&bytes);
        self.staged += N;
        Ok(())
    }

    /// A `u128` varint: the groups of seven bits above 64 bits first
    /// (low groups go first, each with the high bit set), then the rest,
    /// which fits a `u64`, as [`varint64`](Self::varint64) writes it.
    fn varint(&mut self, mut v: u128) -> Result<(), Failure> {
        while v > u128::from(u64::MAX) {
            self.byte((v as u8) | 0x80)?;
            v >>= 7;
        }
        self.varint64(v as u64)
    }

    /// A LEB128 varint of a `u64` (or narrower): seven bits a byte, low
    /// first, the high bit set on every byte but the last.
    #[inline(always)]
    fn varint64(&mut self, mut v: u64) -> Result<(), Failure> {
        if self.stage.len() - self.staged < 10 {
            // Near the stage's end: room for this varint's exact length
            // (seven bits a byte, at least one byte).
            let len = (64 - (v | 1).leading_zeros() as usize).div_ceil(7);
            self.room(len)?;
        }
        let room = &mut self.stage[self.staged..];
        let mut n = 0;
        while v >= 0x80 {
            room[n] = (v as u8) | 0x80;
            v >>= 7;
            n += 1;
        }
        room[n] = v as u8;
        self.staged += n + 1;
        Ok(())
    }

    #[inline]
    fn len(&mut self, len: Option<usize>) -> Result<(), Failure> {
        let len = len.ok_or_else(|| {
            Failure::Custom("a sequence or map whose length is not known up front".into())
        })?;
        self.varint64(len as u64)
    }

    /// A run of bytes of any length: staged if it fits, else straight to
    /// the sink.
    #[inline]
    fn bytes(&mut self, b: &[u8]) -> Result<(), Failure> {
        if b.len() <= self.stage.len() - self.staged {
            self.stage[self.staged..self.staged + b.len()].copy_from_slice(b);
            self.staged += b.len();
            return Ok(());
        }
        self.flush()?;
        if b.len() < self.stage.len() {
            self.stage[..b.len()].copy_from_slice(b);
            self.staged = b.len();
            return Ok(());
        }
        let sink = self.sink.as_mut().ok_or(Failure::Full)?;
        sink.put(b).map_err(|SinkFull| Failure::Full)
    }
}

/// Zigzag: small magnitudes of either sign become small varints.
#[inline]
fn zigzag(v: i128) -> u128 {
    ((v << 1) ^ (v >> 127)) as u128
}

#[inline]
fn zigzag64(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

impl<S: ByteSink + ?Sized> ser::Serializer for &mut Encoder<'_, S> {
    type Ok = ();
    type Error = Failure;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = Self;
    type SerializeStruct = Self;
    type SerializeStructVariant = Self;

    #[inline]
    fn is_human_readable(&self) -> bool {
        false
    }

    #[inline]
    fn serialize_bool(self, v: bool) -> Result<(), Failure> {
        self.byte(u8::from(v))
    }
    #[inline]
    fn serialize_i8(self, v: i8) -> Result<(), Failure> {
        self.byte(v as u8)
    }
    #[inline]
    fn serialize_i16(self, v: i16) -> Result<(), Failure> {
        self.varint64(zigzag64(v.into()))
    }
    #[inline]
    fn serialize_i32(self, v: i32) -> Result<(), Failure> {
        self.varint64(zigzag64(v.into()))
    }
    #[inline]
    fn serialize_i64(self, v: i64) -> Result<(), Failure> {
        self.varint64(zigzag64(v))
    }
    #[inline]
    fn serialize_i128(self, v: i128) -> Result<(), Failure> {
        self.varint(zigzag(v))
    }
    #[inline]
    fn serialize_u8(self, v: u8) -> Result<(), Failure> {
        self.byte(v)
    }
    #[inline]
    fn serialize_u16(self, v: u16) -> Result<(), Failure> {
        self.varint64(v.into())
    }
    #[inline]
    fn serialize_u32(self, v: u32) -> Result<(), Failure> {
        self.varint64(v.into())
    }
    #[inline]
    fn serialize_u64(self, v: u64) -> Result<(), Failure> {
        self.varint64(v)
    }
    #[inline]
    fn serialize_u128(self, v: u128) -> Result<(), Failure> {
        self.varint(v)
    }
    #[inline]
    fn serialize_f32(self, v: f32) -> Result<(), Failure> {
        self.fixed(v.to_bits().to_le_bytes())
    }
    #[inline]
    fn serialize_f64(self, v: f64) -> Result<(), Failure> {
        self.fixed(v.to_bits().to_le_bytes())
    }
    #[inline]
    fn serialize_char(self, v: char) -> Result<(), Failure> {
        self.serialize_str(v.encode_utf8(&mut [0; 4]))
    }
    #[inline]
    fn serialize_str(self, v: &str) -> Result<(), Failure> {
        self.serialize_bytes(v.as_bytes())
    }
    #[inline]
    fn serialize_bytes(self, v: &[u8]) -> Result<(), Failure> {
        self.varint64(v.len() as u64)?;
        self.bytes(v)
    }
    #[inline]
    fn serialize_none(self) -> Result<(), Failure> {
        self.byte(0)
    }
    #[inline]
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Failure> {
        self.byte(1)?;
        value.serialize(self)
    }
    #[inline]
    fn serialize_unit(self) -> Result<(), Failure> {
        Ok(())
    }
    #[inline]
    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), Failure> {
        Ok(())
    }
    #[inline]
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        index: u32,
        _variant: &'static str,
    ) -> Result<(), Failure> {
        self.varint64(index.into())
    }
    #[inline]
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), Failure> {
        value.serialize(self)
    }
    #[inline]
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        index: u32,
        _variant: &'static str,
        value: &T,
    ) -> Result<(), Failure> {
        self.varint64(index.into())?;
        value.serialize(self)
    }
    #[inline]
    fn serialize_seq(self, len: Option<usize>) -> Result<Self, Failure> {
        self.len(len)?;
        Ok(self)
    }
    #[inline]
    fn serialize_tuple(self, _len: usize) -> Result<Self, Failure> {
        Ok(self)
    }
    #[inline]
    fn serialize_tuple_struct(self, _name: &'static str, _len: usize) -> Result<Self, Failure> {
        Ok(self)
    }
    #[inline]
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self, Failure> {
        self.varint64(index.into())?;
        Ok(self)
    }
    #[inline]
    fn serialize_map(self, len: Option<usize>) -> Result<Self, Failure> {
        self.len(len)?;
        Ok(self)
    }
    #[inline]
    fn serialize_struct(self, _name: &'static str, _len: usize) -> Result<Self, Failure> {
        Ok(self)
    }
    #[inline]
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self, Failure> {
        self.varint64(index.into())?;
        Ok(self)
    }
}

/// The compound serializers: the elements one after another (the length
/// or variant index, if any, went first).
macro_rules! compound {
    ($($trait:ident :: $method:ident ( $($key:ident : $key_ty:ty ,)? ));* $(;)?) => {$(
        impl<S: ByteSink + ?Sized> ser::$trait for &mut Encoder<'_, S> {
            type Ok = ();
            type Error = Failure;

            #[inline]
            fn $method<T: Serialize + ?Sized>(
                &mut self,
                $($key: $key_ty,)?
                value: &T,
            ) -> Result<(), Failure> {
                value.serialize(&mut **self)
            }

            #[inline]
            fn end(self) -> Result<(), Failure> {
                Ok(())
            }
        }
    )*};
}

compound! {
    SerializeSeq::serialize_element();
    SerializeTuple::serialize_element();
    SerializeTupleStruct::serialize_field();
    SerializeTupleVariant::serialize_field();
    SerializeStruct::serialize_field(_key: &'static str,);
    SerializeStructVariant::serialize_field(_key: &'static str,);
}

impl<S: ByteSink + ?Sized> ser::SerializeMap for &mut Encoder<'_, S> {
    type Ok = ();
    type Error = Failure;

    #[inline]
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Failure> {
        key.serialize(&mut **self)
    }

    #[inline]
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Failure> {
        value.serialize(&mut **self)
    }

    #[inline]
    fn end(self) -> Result<(), Failure> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Serialize;

    use super::super::tests::Bounded;
    use super::*;

    /// This encoder's bytes are postcard's, and every sink too small by
    /// any amount is `Full`.
    fn same<T: Serialize + fmt::Debug>(v: &T) {
        let want = postcard::to_allocvec(v).expect("postcard encodes it");
        let mut got = Bounded {
            out: Vec::new(),
            room: usize::MAX,
        };
        encode_into(v, &mut got).expect("encodes");
        assert_eq!(got.out, want, "{v:?}");
        // Into a buffer: exactly as long as the encoding, or one byte short.
        let mut buf = vec![0; want.len()];
        assert_eq!(encode_to_slice(v, &mut buf).ok(), Some(want.len()), "{v:?}");
        assert_eq!(buf, want, "{v:?}");
        if !want.is_empty() {
            assert!(
                matches!(
                    encode_to_slice(v, &mut buf[..want.len() - 1]),
                    Err(EncodeToError::Full)
                ),
                "{v:?} in a short buffer"
            );
        }
        for room in [0, want.len() / 2, want.len().saturating_sub(1)] {
            if room < want.len() {
                let mut small = Bounded {
                    out: Vec::new(),
                    room,
                };
                assert!(
                    matches!(encode_into(v, &mut small), Err(EncodeToError::Full)),
                    "{v:?} in {room} bytes"
                );
            }
        }
    }

    #[derive(Debug, Serialize)]
    struct Unit;

    #[derive(Debug, Serialize)]
    struct Newtype(i32);

    #[derive(Debug, Serialize)]
    struct Pair(u8, String);

    #[derive(Debug, Serialize)]
    enum Shape {
        Empty,
        Circle(f64),
        Rect(u32, u32),
        Named { id: u64, name: String },
    }

    #[derive(Debug, Serialize)]
    struct Record {
        seq: u64,
        value: f64,
        sensor: u32,
        scale: f32,
    }

    #[test]
    fn every_serde_shape_encodes_as_postcard_does() {
        same(&true);
        same(&false);
        for v in [
            0u64,
            1,
            127,
            128,
            255,
            16_383,
            16_384,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            same(&v);
            same(&(v as u32));
            same(&(v as u16));
            same(&(v as u8));
            same(&(v as usize));
            same(&u128::from(v));
            same(&(u128::from(v) << 64 | 0xfff));
        }
        for v in [0i64, 1, -1, 63, -64, 64, -65, i64::MIN, i64::MAX] {
            same(&v);
            same(&(v as i32));
            same(&(v as i16));
            same(&(v as i8));
            same(&(v as isize));
            same(&i128::from(v));
            same(&(i128::from(v) * i128::from(i64::MAX)));
        }
        same(&i128::MIN);
        same(&u128::MAX);
        same(&1.5f32);
        same(&-0.0f64);
        same(&f64::NAN.to_bits());
        same(&'a');
        same(&'é');
        same(&'🦀');
        same(&"");
        same(&"frame");
        same(&"x".repeat(200));
        same(&serde_bytes_like(&[0u8; 3]));
        same(&vec![7u8; 300]);
        same(&Some(3u8));
        same(&None::<u8>);
        same(&());
        same(&Unit);
        same(&Newtype(-5));
        same(&Pair(9, "pair".into()));
        same(&(1u8, 2u64, "three", [4.0f32; 4]));
        same(&[Shape::Empty, Shape::Circle(2.5), Shape::Rect(3, 4)]);
        same(&Shape::Named {
            id: 1 << 40,
            name: "n".repeat(70),
        });
        same(&BTreeMap::from([(1u32, "one"), (300, "three hundred")]));
        same(&vec![vec![1u64, 2], vec![], vec![u64::MAX; 20]]);
        same(&Record {
            seq: 100_000,
            value: 0.5,
            sensor: 3,
            scale: 1.5,
        });
        // Many small fields: the stage flushes several times.
        same(&(0..100u64).map(|k| k * 1_000_003).collect::<Vec<_>>());
    }

    /// A byte string (`serialize_bytes`), as `serde_bytes` would give.
    fn serde_bytes_like(b: &[u8]) -> impl Serialize + fmt::Debug + '_ {
        #[derive(Debug)]
        struct Bytes<'a>(&'a [u8]);
        impl Serialize for Bytes<'_> {
            fn serialize<S: ser::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_bytes(self.0)
            }
        }
        Bytes(b)
    }

    #[test]
    fn a_sequence_of_unknown_length_and_a_failing_impl_are_encode_errors() {
        struct Unsized;
        impl Serialize for Unsized {
            fn serialize<S: ser::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                use ser::SerializeSeq;
                let mut seq = s.serialize_seq(None)?;
                seq.serialize_element(&1u8)?;
                seq.end()
            }
        }
        struct Fails;
        impl Serialize for Fails {
            fn serialize<S: ser::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
                Err(ser::Error::custom("not today"))
            }
        }
        let mut sink = Vec::new();
        match encode_into(&Unsized, &mut sink) {
            Err(EncodeToError::Encode(e)) => assert!(e.to_string().contains("length"), "{e}"),
            other => panic!("{other:?}"),
        }
        match encode_into(&Fails, &mut sink) {
            Err(EncodeToError::Encode(e)) => assert!(e.to_string().contains("not today"), "{e}"),
            other => panic!("{other:?}"),
        }
    }
}
