//! The memory a core object lives in during one fuzz input: a heap buffer
//! of exactly the object's size, aligned like a segment payload, written
//! only atomically (by the object and by the simulated peer).
//!
//! Being a heap allocation of the exact size, it sits between
//! AddressSanitizer redzones: an object that reads or writes one byte past
//! its end is reported at once, as it would not be inside a page-rounded
//! mapping.

use std::alloc::{self, Layout};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};

use shmkit_core::header::PAYLOAD_ALIGN;

use crate::input::Input;
use crate::values;

/// A zero-filled, `PAYLOAD_ALIGN`-aligned buffer accessed only atomically.
#[derive(Debug)]
pub struct Region {
    ptr: NonNull<u8>,
    len: usize,
    layout: Layout,
}

impl Region {
    /// `len` zeroed bytes (at least one), aligned to `PAYLOAD_ALIGN`.
    ///
    /// # Panics
    /// If `len` is too large for a layout, or the allocation fails.
    #[must_use]
    pub fn new(len: usize) -> Region {
        let layout = Layout::from_size_align(len.max(1), PAYLOAD_ALIGN).expect("region layout");
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { alloc::alloc_zeroed(layout) };
        let Some(ptr) = NonNull::new(ptr) else {
            alloc::handle_alloc_error(layout)
        };
        Region { ptr, len, layout }
    }

    /// The object's size in bytes.
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the region holds no bytes.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The first byte.
    #[must_use]
    pub fn base(&self) -> NonNull<u8> {
        self.ptr
    }

    /// A reference to the `T` at `offset`.
    ///
    /// # Safety
    /// `offset + size_of::<T>() <= len`, `offset` keeps `T` aligned, and
    /// `T` is made only of atomics and `Pod` data accessed atomically, so
    /// that any bytes are a valid `T` and the region's atomic writes may
    /// coexist with the reference.
    #[must_use]
    pub unsafe fn object<T>(&self, offset: usize) -> &T {
        debug_assert!(offset + std::mem::size_of::<T>() <= self.len);
        debug_assert_eq!(
            (self.ptr.as_ptr() as usize + offset) % std::mem::align_of::<T>(),
            0
        );
        // SAFETY: the caller's contract.
        unsafe { &*self.ptr.as_ptr().add(offset).cast::<T>() }
    }

    /// Copies `bytes` to the start of the region (as much as fits).
    pub fn fill(&self, bytes: &[u8]) {
        for (i, &b) in bytes.iter().take(self.len).enumerate() {
            self.store_u8(i, b);
        }
    }

    /// Stores one byte at `offset` (ignored past the end).
    pub fn store_u8(&self, offset: usize, value: u8) {
        if offset < self.len {
            // SAFETY: in bounds; the region is only accessed atomically.
            unsafe { AtomicU8::from_ptr(self.ptr.as_ptr().add(offset)) }
                .store(value, Ordering::Relaxed);
        }
    }

    /// Stores a word at `offset` rounded down to 4 (ignored if it does
    /// not fit).
    pub fn store_u32(&self, offset: usize, value: u32) {
        let offset = offset & !3;
        if offset + 4 <= self.len {
            // SAFETY: in bounds and 4-aligned (the base is 128-aligned).
            unsafe { AtomicU32::from_ptr(self.ptr.as_ptr().add(offset).cast()) }
                .store(value, Ordering::Relaxed);
        }
    }

    /// Stores a double word at `offset` rounded down to 8 (ignored if it
    /// does not fit).
    pub fn store_u64(&self, offset: usize, value: u64) {
        let offset = offset & !7;
        if offset + 8 <= self.len {
            // SAFETY: in bounds and 8-aligned (the base is 128-aligned).
            unsafe { AtomicU64::from_ptr(self.ptr.as_ptr().add(offset).cast()) }
                .store(value, Ordering::Relaxed);
        }
    }

    /// A peer's write between two operations, decoded from `input`: raw
    /// bytes at any offset, or a word or double word from
    /// [`values`] or from the input at an aligned offset.
    pub fn scribble(&self, input: &mut Input<'_>) {
        if self.len == 0 {
            return;
        }
        let how = input.u8();
        let offset = usize::from(input.u16()) % self.len;
        match how % 5 {
            0 => {
                let n = 1 + usize::from(input.u8() % 8);
                for (i, &b) in input.bytes(n).iter().enumerate() {
                    self.store_u8(offset + i, b);
                }
            }
            1 => self.store_u32(offset, values::word32(input.u8())),
            2 => self.store_u32(offset, input.u32()),
            3 => self.store_u64(offset, values::word64(input.u8())),
            _ => self.store_u64(offset, input.u64()),
        }
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout, freed once.
        unsafe { alloc::dealloc(self.ptr.as_ptr(), self.layout) };
    }
}
