//! Server-to-client frames: `[size: u32 BE][frame type: u32 BE][data]`, where
//! size counts the frame type and the data.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// What a frame from nsqd carries: a response (`OK`, `_heartbeat_`), an
/// error (`E_INVALID ...`) or a message.
///
/// ```
/// use nsq::protocol::FrameType;
///
/// assert_eq!(FrameType::Message as u32, 2);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameType {
    Response = 0,
    Error = 1,
    Message = 2,
}

/// One decoded frame.
///
/// ```
/// use bytes::BytesMut;
/// use nsq::protocol::{decode_frame, encode_frame, FrameType};
///
/// let mut buf = BytesMut::new();
/// encode_frame(&mut buf, FrameType::Response, b"OK");
/// let frame = decode_frame(&mut buf, 1024)?.expect("a whole frame");
/// assert_eq!((frame.frame_type, &frame.data[..]), (FrameType::Response, &b"OK"[..]));
/// // Half a frame is not one yet.
/// encode_frame(&mut buf, FrameType::Error, b"E_INVALID");
/// let mut half = buf.split_to(6);
/// assert!(decode_frame(&mut half, 1024)?.is_none());
/// # Ok::<(), nsq::protocol::FrameError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub frame_type: FrameType,
    pub data: Bytes,
}

/// A frame that no nsqd sends: a size below the frame type's 4 bytes or
/// above the reader's limit, or an unknown type.
///
/// ```
/// use bytes::BytesMut;
/// use nsq::protocol::{decode_frame, FrameError};
///
/// let mut buf = BytesMut::from(&b"\x00\x10\x00\x00\x00\x00\x00\x00"[..]);
/// assert_eq!(decode_frame(&mut buf, 1024), Err(FrameError::TooBig(0x0010_0000, 1024)));
/// ```
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame size {0} is invalid")]
    BadSize(u32),
    #[error("frame size {0} exceeds the limit of {1} bytes")]
    TooBig(u32, usize),
    #[error("unknown frame type {0}")]
    BadType(u32),
}

/// Appends one frame to `buf`.
pub fn encode_frame(buf: &mut BytesMut, frame_type: FrameType, data: &[u8]) {
    buf.reserve(8 + data.len());
    buf.put_u32(4 + data.len() as u32);
    buf.put_u32(frame_type as u32);
    buf.put_slice(data);
}

/// Takes one complete frame off the front of `buf`, or returns `None` when more
/// bytes are needed. `max_size` bounds what a peer can make us buffer.
pub fn decode_frame(buf: &mut BytesMut, max_size: usize) -> Result<Option<Frame>, FrameError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let size = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if size < 4 {
        return Err(FrameError::BadSize(size));
    }
    if size as usize > max_size {
        return Err(FrameError::TooBig(size, max_size));
    }
    if buf.len() < 4 + size as usize {
        // Room grows with what has arrived, never to what the size claims:
        // with no limit set, four bytes could otherwise reserve 4 GiB.
        let missing = 4 + size as usize - buf.len();
        buf.reserve(missing.min(buf.len().max(16 * 1024)));
        return Ok(None);
    }
    buf.advance(4);
    let frame_type = match buf.get_u32() {
        0 => FrameType::Response,
        1 => FrameType::Error,
        2 => FrameType::Message,
        other => return Err(FrameError::BadType(other)),
    };
    let data = buf.split_to(size as usize - 4).freeze();
    Ok(Some(Frame { frame_type, data }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_partial_input() {
        let mut buf = BytesMut::new();
        encode_frame(&mut buf, FrameType::Response, b"OK");
        assert_eq!(&buf[..], b"\x00\x00\x00\x06\x00\x00\x00\x00OK");
        let mut partial = BytesMut::from(&buf[..7]);
        assert_eq!(decode_frame(&mut partial, 1024), Ok(None));
        let frame = decode_frame(&mut buf, 1024).unwrap().unwrap();
        assert_eq!(frame.frame_type, FrameType::Response);
        assert_eq!(&frame.data[..], b"OK");
        assert!(buf.is_empty());
    }

    #[test]
    fn rejects_bad_sizes_and_types() {
        let mut buf = BytesMut::from(&b"\x00\x00\x00\x02\x00\x00"[..]);
        assert_eq!(decode_frame(&mut buf, 1024), Err(FrameError::BadSize(2)));
        let mut buf = BytesMut::from(&b"\xff\xff\xff\xff"[..]);
        assert!(matches!(
            decode_frame(&mut buf, 1024),
            Err(FrameError::TooBig(..))
        ));
        let mut buf = BytesMut::from(&b"\x00\x00\x00\x04\x00\x00\x00\x07"[..]);
        assert_eq!(decode_frame(&mut buf, 1024), Err(FrameError::BadType(7)));
    }
}
