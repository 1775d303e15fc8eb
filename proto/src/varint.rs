//! Zig-zag variable-length integers as Kafka's record format uses them (protobuf's `sint32`/`sint64` encoding).

use crate::batch::BatchError;

/// Appends `value` zig-zag encoded.
pub(crate) fn put_varlong(out: &mut Vec<u8>, value: i64) {
    let mut v = ((value << 1) ^ (value >> 63)) as u64;
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub(crate) fn put_varint(out: &mut Vec<u8>, value: i32) {
    put_varlong(out, i64::from(value));
}

/// Number of bytes `put_varlong(value)` writes.
pub(crate) fn varlong_len(value: i64) -> usize {
    let v = ((value << 1) ^ (value >> 63)) as u64;
    let bits = 64 - (v | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// A cursor over untrusted bytes: every read checks the remaining length first and never panics.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub(crate) fn varlong(&mut self) -> Result<i64, BatchError> {
        let mut result: u64 = 0;
        for i in 0..10 {
            let Some(&byte) = self.buf.get(self.pos) else {
                return Err(BatchError::Invalid("varint runs past the end of the record".into()));
            };
            self.pos += 1;
            result |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(((result >> 1) as i64) ^ -((result & 1) as i64));
            }
        }
        Err(BatchError::Invalid("varint longer than 10 bytes".into()))
    }

    pub(crate) fn varint(&mut self) -> Result<i32, BatchError> {
        let v = self.varlong()?;
        i32::try_from(v).map_err(|_| BatchError::Invalid(format!("varint {v} does not fit 32 bits")))
    }

    pub(crate) fn i8(&mut self) -> Result<i8, BatchError> {
        let b = self.take(1)?;
        Ok(b[0] as i8)
    }

    /// Takes `len` bytes, or fails if fewer remain.
    pub(crate) fn take(&mut self, len: usize) -> Result<&'a [u8], BatchError> {
        if len > self.remaining() {
            return Err(BatchError::Invalid(format!(
                "field of {len} bytes runs past the end of the record ({} left)",
                self.remaining()
            )));
        }
        let slice = &self.buf[self.pos..self.pos + len];
        self.pos += len;
        Ok(slice)
    }

    /// A length-prefixed byte string; length -1 means null.
    pub(crate) fn nullable_bytes(&mut self) -> Result<Option<(usize, usize)>, BatchError> {
        let len = self.varint()?;
        if len == -1 {
            return Ok(None);
        }
        let len = usize::try_from(len).map_err(|_| BatchError::Invalid(format!("negative length {len}")))?;
        let start = self.pos;
        self.take(len)?;
        Ok(Some((start, len)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varlong_round_trips_edge_values() {
        for v in [0i64, 1, -1, 63, -64, 64, i32::MAX as i64, i32::MIN as i64, i64::MAX, i64::MIN] {
            let mut out = Vec::new();
            put_varlong(&mut out, v);
            assert_eq!(out.len(), varlong_len(v), "length of {v}");
            let mut r = Reader::new(&out);
            assert_eq!(r.varlong().unwrap(), v);
            assert_eq!(r.remaining(), 0);
        }
    }

    #[test]
    fn truncated_and_overlong_varints_are_errors() {
        assert!(Reader::new(&[0x80]).varlong().is_err());
        assert!(Reader::new(&[0xff; 11]).varlong().is_err());
        let mut out = Vec::new();
        put_varlong(&mut out, i64::from(i32::MAX) + 1);
        assert!(Reader::new(&out).varint().is_err());
    }
}
