//! Stamped slots: a 64-bit stamp word in front of each value, the storage
//! of the [MPMC queue](super::mpmc) and the [stamped ring](super::stamped).
//!
//! A slot is a run of `AtomicU64` words: word 0 is the stamp, the value
//! starts at word [`SlotLayout::value_word`] and fills
//! [`SlotLayout::value_words`] words (its last word zero-padded when
//! `size_of::<T>()` is not a multiple of 8). Keeping the stamp and the
//! value of a small message in one cache line is what makes a message cost
//! one line transfer between cores instead of two (index, then slot).
//!
//! Every access to slot memory is an atomic access of one `u64` word
//! through [`crate::primitive`]: a peer writing the same words at the same
//! time gives torn values, never a data race; under loom the words are
//! loom's atomics, so a missing publication ordering shows up as a stale
//! value in a model.

use core::mem::{align_of, size_of};

use bytemuck::Pod;

use crate::header::PAYLOAD_ALIGN;
use crate::object::LayoutError;
use crate::primitive::{AtomicU64, Ordering};

/// How the slots of element type `T` are laid out, in 8-byte words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotLayout {
    /// Words from one slot's stamp to the next one's.
    pub stride_words: usize,
    /// Word of the value within a slot (1 unless the element is aligned
    /// beyond 8 bytes).
    pub value_word: usize,
    /// Words the value occupies.
    pub value_words: usize,
}

impl SlotLayout {
    /// The layout for elements of `size` bytes aligned to `align` (both
    /// possibly read from a header nobody vouches for).
    ///
    /// # Errors
    /// `align` is not a power of two up to [`PAYLOAD_ALIGN`], or the slot
    /// size overflows.
    pub fn for_element(size: usize, align: usize) -> Result<SlotLayout, LayoutError> {
        if !align.is_power_of_two() || align > PAYLOAD_ALIGN {
            return Err(LayoutError::new(
                "the element alignment must be a power of two up to 128",
            ));
        }
        let unit = align.max(8);
        let value_at = unit;
        let stride = value_at
            .checked_add(size)
            .and_then(|end| end.checked_next_multiple_of(unit))
            .ok_or(LayoutError::new("the element is too large for a slot"))?;
        Ok(SlotLayout {
            stride_words: stride / 8,
            value_word: value_at / 8,
            value_words: size.div_ceil(8),
        })
    }

    /// The layout for `T`.
    ///
    /// # Errors
    /// As [`for_element`](Self::for_element).
    pub fn of<T>() -> Result<SlotLayout, LayoutError> {
        SlotLayout::for_element(size_of::<T>(), align_of::<T>())
    }

    /// Bytes per slot.
    #[must_use]
    pub fn stride_bytes(&self) -> usize {
        self.stride_words * 8
    }

    /// [`of`](Self::of), at compile time: the queues index their slots with
    /// it, so a slot's offset is a shift and a value copy a fixed run of
    /// stores. (For an element aligned beyond [`PAYLOAD_ALIGN`], which
    /// `of` refuses, the numbers are meaningless; the queues check `of`
    /// first.)
    pub(crate) const fn constant<T>() -> SlotLayout {
        let unit = if align_of::<T>() > 8 {
            align_of::<T>()
        } else {
            8
        };
        let stride = (unit + size_of::<T>()).div_ceil(unit) * unit;
        SlotLayout {
            stride_words: stride / 8,
            value_word: unit / 8,
            value_words: size_of::<T>().div_ceil(8),
        }
    }
}

/// Copies `value` into the value words `words` with relaxed atomic
/// stores (the last word zero-padded). Words past the value are not
/// touched; a `words` shorter than the value gets a truncated copy (the
/// layouts never make one).
///
/// Plain index loops over a length the caller's constant slot layout
/// fixes: after inlining, a `u64` is one store (an iterator adapter here
/// was once left out of line, a call per message).
#[inline(always)]
pub(crate) fn store_value<T: Pod>(words: &[AtomicU64], value: &T) {
    let bytes = bytemuck::bytes_of(value);
    let n = words.len().min(bytes.len().div_ceil(8));
    let mut k = 0;
    while k < n {
        let start = k * 8;
        let end = (start + 8).min(bytes.len());
        let mut w = [0u8; 8];
        w[..end - start].copy_from_slice(&bytes[start..end]);
        words[k].store(u64::from_ne_bytes(w), Ordering::Relaxed);
        k += 1;
    }
}

/// A copy of the value in the value words `words` (relaxed atomic loads).
/// A concurrent writer gives a torn value, which is still a valid `T:
/// Pod`.
#[inline(always)]
pub(crate) fn load_value<T: Pod>(words: &[AtomicU64]) -> T {
    let mut out = T::zeroed();
    let bytes = bytemuck::bytes_of_mut(&mut out);
    let n = words.len().min(bytes.len().div_ceil(8));
    let mut k = 0;
    while k < n {
        let start = k * 8;
        let end = (start + 8).min(bytes.len());
        let w = words[k].load(Ordering::Relaxed).to_ne_bytes();
        bytes[start..end].copy_from_slice(&w[..end - start]);
        k += 1;
    }
    out
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn layouts_and_copies() {
        assert_eq!(
            SlotLayout::of::<u64>().unwrap(),
            SlotLayout {
                stride_words: 2,
                value_word: 1,
                value_words: 1
            }
        );
        let l = SlotLayout::of::<[u8; 3]>().unwrap();
        assert_eq!((l.stride_words, l.value_word, l.value_words), (2, 1, 1));
        let l = SlotLayout::of::<()>().unwrap();
        assert_eq!((l.stride_words, l.value_words), (1, 0));
        #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
        #[repr(C, align(32))]
        struct Wide([u64; 8]);
        let l = SlotLayout::of::<Wide>().unwrap();
        assert_eq!((l.stride_words, l.value_word, l.value_words), (12, 4, 8));
        assert!(SlotLayout::for_element(8, 3).is_err());
        assert!(SlotLayout::for_element(usize::MAX - 3, 8).is_err());

        assert_eq!(
            SlotLayout::constant::<Wide>(),
            SlotLayout::of::<Wide>().unwrap()
        );
        assert_eq!(
            SlotLayout::constant::<u64>(),
            SlotLayout::of::<u64>().unwrap()
        );
        assert_eq!(
            SlotLayout::constant::<()>(),
            SlotLayout::of::<()>().unwrap()
        );
        assert_eq!(
            SlotLayout::constant::<[u8; 3]>(),
            SlotLayout::of::<[u8; 3]>().unwrap()
        );

        let words: [AtomicU64; 2] = Default::default();
        store_value(&words, &[1u8, 2, 3, 4, 5]);
        assert_eq!(load_value::<[u8; 5]>(&words), [1, 2, 3, 4, 5]);
        store_value(&words, &[7u64, 9]);
        assert_eq!(load_value::<[u64; 2]>(&words), [7, 9]);
        // Too few words: a truncated copy, no panic.
        assert_eq!(load_value::<[u64; 3]>(&words), [7, 9, 0]);
    }
}
