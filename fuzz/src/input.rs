//! Decoding the fuzzer's bytes by hand: a cursor that never fails (an
//! exhausted input reads as zeros), so every input is a valid program.

/// A cursor over the fuzzer's input.
#[derive(Debug)]
pub struct Input<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Input<'a> {
    /// A cursor at the start of `data`.
    #[must_use]
    pub fn new(data: &'a [u8]) -> Input<'a> {
        Input { data, pos: 0 }
    }

    /// Whether every byte was read.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.pos >= self.data.len()
    }

    /// Bytes left.
    #[must_use]
    pub fn remaining(&self) -> usize {
        self.data.len().saturating_sub(self.pos)
    }

    /// The next byte (0 once exhausted).
    pub fn u8(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos = self.pos.saturating_add(1);
        b
    }

    /// The next two bytes, little-endian.
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    /// The next four bytes, little-endian.
    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    /// The next eight bytes, little-endian.
    pub fn u64(&mut self) -> u64 {
        u64::from(self.u32()) | (u64::from(self.u32()) << 32)
    }

    /// A number in `0..n` (`n > 0`) from one byte (two if `n > 256`).
    pub fn below(&mut self, n: usize) -> usize {
        debug_assert!(n > 0);
        let raw = if n > 256 {
            usize::from(self.u16())
        } else {
            usize::from(self.u8())
        };
        raw % n
    }

    /// Up to `n` next bytes (fewer once exhausted).
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let start = self.pos.min(self.data.len());
        let end = start.saturating_add(n).min(self.data.len());
        self.pos = self.pos.saturating_add(n);
        &self.data[start..end]
    }

    /// Every byte left.
    pub fn rest(&mut self) -> &'a [u8] {
        let start = self.pos.min(self.data.len());
        self.pos = self.data.len();
        &self.data[start..]
    }

    /// A `T` made of the next `size_of::<T>()` bytes (zero-padded).
    pub fn pod<T: bytemuck::Pod>(&mut self) -> T {
        let mut value = T::zeroed();
        let out = bytemuck::bytes_of_mut(&mut value);
        let got = self.bytes(out.len());
        out[..got.len()].copy_from_slice(got);
        value
    }
}

#[cfg(test)]
mod tests {
    use super::Input;

    #[test]
    fn reads_past_the_end_as_zeros() {
        let mut i = Input::new(&[1, 2, 3]);
        assert_eq!(i.u16(), 0x0201);
        assert_eq!(i.u32(), 3);
        assert!(i.is_empty());
        assert_eq!(i.bytes(4), &[] as &[u8]);
        assert_eq!(i.pod::<u64>(), 0);
    }
}
