//! Turning fuzzer bytes into structured operations, and back (for the seed generator).
//!
//! A reader that runs out of bytes keeps answering zeros and empty slices instead of failing:
//! every byte string is then a valid program for a target, so libFuzzer's mutations are never
//! wasted on inputs that a stricter decoder would refuse up front.

/// Reads fields from the front of a fuzzer input.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Self { rest: data }
    }

    /// Whether every byte was consumed.
    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// The next byte, or 0 past the end.
    pub fn u8(&mut self) -> u8 {
        let [value] = self.array::<1>();
        value
    }

    /// The next little-endian u16, zero-filled past the end.
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.array())
    }

    /// The next little-endian u32, zero-filled past the end.
    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.array())
    }

    /// The next little-endian u64, zero-filled past the end.
    pub fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.array())
    }

    /// The next `N` bytes, zero-filled past the end.
    pub fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        let taken = self.bytes(N);
        out[..taken.len()].copy_from_slice(taken);
        out
    }

    /// Up to `len` next bytes (fewer at the end).
    pub fn bytes(&mut self, len: usize) -> &'a [u8] {
        let (taken, rest) = self.rest.split_at(len.min(self.rest.len()));
        self.rest = rest;
        taken
    }

    /// A slice prefixed by its u16 length (shorter if the input ends first).
    pub fn chunk(&mut self) -> &'a [u8] {
        let len = usize::from(self.u16());
        self.bytes(len)
    }

    /// Everything not read yet.
    pub fn rest(&mut self) -> &'a [u8] {
        self.bytes(self.rest.len())
    }
}

/// Builds inputs in the layout [`Reader`] reads; used by the seed generator.
#[derive(Debug, Clone, Default)]
pub struct Writer {
    bytes: Vec<u8>,
}

impl Writer {
    /// An empty input.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends one byte.
    pub fn u8(&mut self, value: u8) -> &mut Self {
        self.bytes.push(value);
        self
    }

    /// Appends a little-endian u16.
    pub fn u16(&mut self, value: u16) -> &mut Self {
        self.bytes.extend_from_slice(&value.to_le_bytes());
        self
    }

    /// Appends a little-endian u32.
    pub fn u32(&mut self, value: u32) -> &mut Self {
        self.bytes.extend_from_slice(&value.to_le_bytes());
        self
    }

    /// Appends a little-endian u64.
    pub fn u64(&mut self, value: u64) -> &mut Self {
        self.bytes.extend_from_slice(&value.to_le_bytes());
        self
    }

    /// Appends raw bytes.
    pub fn bytes(&mut self, value: &[u8]) -> &mut Self {
        self.bytes.extend_from_slice(value);
        self
    }

    /// Appends a u16 length and then the bytes, as [`Reader::chunk`] reads them.
    pub fn chunk(&mut self, value: &[u8]) -> &mut Self {
        let len = u16::try_from(value.len()).expect("seed chunks stay below 64 KiB");
        self.u16(len).bytes(value)
    }

    /// The input built so far.
    pub fn finish(&self) -> Vec<u8> {
        self.bytes.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_reads_what_writer_wrote_and_then_zeros() {
        let bytes = Writer::new()
            .u8(7)
            .u16(0x1234)
            .u64(u64::MAX - 1)
            .chunk(b"abc")
            .finish();
        let mut reader = Reader::new(&bytes);
        assert_eq!(reader.u8(), 7);
        assert_eq!(reader.u16(), 0x1234);
        assert_eq!(reader.u64(), u64::MAX - 1);
        assert_eq!(reader.chunk(), b"abc");
        assert!(reader.is_empty());
        assert_eq!(reader.u32(), 0);
        assert_eq!(reader.chunk(), b"");
    }
}
