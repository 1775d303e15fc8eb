//! Kafka's framing: every request and response is a 4-byte big-endian size followed by that many bytes.
//! The reader keeps partial frames in its own buffer, so waiting for the next frame can be cancelled (by
//! shutdown or the idle timeout) without losing bytes.

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Bytes of the size prefix.
pub const SIZE_PREFIX_BYTES: usize = 4;
/// How much the read buffer grows by at a time: a frame's memory is claimed as its bytes arrive, not when
/// its size prefix announces it, so a client that announces a large frame and sends nothing pins little.
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// Why a connection's byte stream is no longer a sequence of frames. Each closes the connection.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame size {0} is not positive")]
    NotPositive(i32),
    #[error("frame size {size} is above the request limit of {max} bytes")]
    TooLarge { size: i32, max: usize },
    #[error("connection closed {received} bytes into a frame of {expected}")]
    Truncated { expected: usize, received: usize },
    #[error("read failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads frames of at most `max_bytes` each off one connection.
pub struct FrameReader {
    buffer: BytesMut,
    max_bytes: usize,
}

impl FrameReader {
    pub fn new(max_bytes: usize) -> FrameReader {
        FrameReader { buffer: BytesMut::new(), max_bytes }
    }

    /// The next frame's bytes without the size prefix, or `None` when the peer closed the connection
    /// between frames.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: bytes read so far stay in the reader and the next call continues from them.
    pub async fn next<R: AsyncRead + Unpin>(&mut self, stream: &mut R) -> Result<Option<Bytes>, FrameError> {
        loop {
            if let Some(size) = self.frame_size()? {
                if self.buffer.len() >= SIZE_PREFIX_BYTES + size {
                    self.buffer.advance(SIZE_PREFIX_BYTES);
                    return Ok(Some(self.buffer.split_to(size).freeze()));
                }
                let missing = SIZE_PREFIX_BYTES + size - self.buffer.len();
                self.buffer.reserve(missing.min(READ_CHUNK_BYTES));
            } else {
                self.buffer.reserve(READ_CHUNK_BYTES);
            }
            if stream.read_buf(&mut self.buffer).await? == 0 {
                return match self.buffer.len() {
                    0 => Ok(None),
                    received => Err(FrameError::Truncated { expected: self.expected_bytes(), received }),
                };
            }
        }
    }

    /// The size of the frame at the front of the buffer, once its prefix is in, checked against the limits.
    fn frame_size(&self) -> Result<Option<usize>, FrameError> {
        let Some(prefix) = self.buffer.get(..SIZE_PREFIX_BYTES) else { return Ok(None) };
        let size = i32::from_be_bytes(prefix.try_into().expect("four bytes"));
        if size <= 0 {
            return Err(FrameError::NotPositive(size));
        }
        if size as usize > self.max_bytes {
            return Err(FrameError::TooLarge { size, max: self.max_bytes });
        }
        Ok(Some(size as usize))
    }

    /// What the frame in progress needs in all, prefix included (just the prefix while it is incomplete).
    fn expected_bytes(&self) -> usize {
        match self.frame_size() {
            Ok(Some(size)) => SIZE_PREFIX_BYTES + size,
            _ => SIZE_PREFIX_BYTES,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn frames_of(bytes: &[u8], max_bytes: usize) -> (Vec<Bytes>, Option<FrameError>) {
        let mut reader = FrameReader::new(max_bytes);
        let mut stream = bytes;
        let mut frames = Vec::new();
        loop {
            match reader.next(&mut stream).await {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => return (frames, None),
                Err(e) => return (frames, Some(e)),
            }
        }
    }

    #[tokio::test]
    async fn frames_split_at_their_size_prefixes() {
        let (frames, error) = frames_of(b"\0\0\0\x03abc\0\0\0\x01d", 16).await;
        assert_eq!(frames, [Bytes::from_static(b"abc"), Bytes::from_static(b"d")]);
        assert!(error.is_none());
    }

    #[tokio::test]
    async fn bad_sizes_and_truncation_are_errors() {
        let (_, error) = frames_of(b"\xff\xff\xff\xff", 16).await;
        assert!(matches!(error, Some(FrameError::NotPositive(-1))), "{error:?}");
        let (_, error) = frames_of(b"\0\0\0\0", 16).await;
        assert!(matches!(error, Some(FrameError::NotPositive(0))), "{error:?}");
        let (_, error) = frames_of(b"\x7f\xff\xff\xff", 16).await;
        assert!(matches!(error, Some(FrameError::TooLarge { max: 16, .. })), "{error:?}");
        let (frames, error) = frames_of(b"\0\0\0\x01a\0\0\0\x05ab", 16).await;
        assert_eq!(frames.len(), 1);
        assert!(matches!(error, Some(FrameError::Truncated { expected: 9, received: 6 })), "{error:?}");
        let (_, error) = frames_of(b"\0\0", 16).await;
        assert!(matches!(error, Some(FrameError::Truncated { expected: 4, received: 2 })), "{error:?}");
    }
}
