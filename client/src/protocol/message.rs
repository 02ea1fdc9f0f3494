//! The message layout inside a message frame:
//! `[timestamp: i64 BE ns][attempts: u16 BE][id: 16 ASCII hex bytes][body]`.

use bytes::{BufMut, Bytes, BytesMut};
use std::fmt;

/// Bytes before the body: timestamp, attempts and ID.
pub const MESSAGE_HEADER_LEN: usize = 8 + 2 + 16;

/// A message ID as it travels: 16 bytes, lowercase hex of a 64-bit number when
/// nsqd made it. Clients treat it as opaque and echo it in FIN, REQ and TOUCH.
///
/// ```
/// use nsq::protocol::MessageId;
///
/// let id = MessageId::from_u64(0x18a3_c721_2726_9000);
/// assert_eq!(id.to_string(), "18a3c72127269000");
/// assert_eq!(MessageId::from_slice(b"18a3c72127269000"), Some(id));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(pub [u8; 16]);

impl MessageId {
    pub fn from_u64(n: u64) -> Self {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&hex_digits((n >> 32) as u32).to_be_bytes());
        out[8..].copy_from_slice(&hex_digits(n as u32).to_be_bytes());
        MessageId(out)
    }

    /// The number behind an nsqd-made ID; `None` for bytes that are not 16
    /// lowercase-or-uppercase hex digits.
    pub fn to_u64(&self) -> Option<u64> {
        let mut n = 0u64;
        let mut bad = 0u8;
        for &c in &self.0 {
            let digit = HEX_VALUE[c as usize];
            bad |= digit;
            n = (n << 4) | (digit & 0xf) as u64;
        }
        (bad & 0xf0 == 0).then_some(n)
    }

    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(MessageId)
    }

    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

/// Each byte's value as a hex digit, 0xff for a byte that is not one.
const HEX_VALUE: [u8; 256] = {
    let mut table = [0xff; 256];
    let mut i = 0;
    while i < 16 {
        table[b"0123456789abcdef"[i] as usize] = i as u8;
        table[b"0123456789ABCDEF"[i] as usize] = i as u8;
        i += 1;
    }
    table
};

/// The eight lowercase hex digits of `x`, most significant in the high
/// byte: its nibbles spread one per byte, then each turned into ASCII at
/// once ('0' + n, plus the gap to 'a' where n > 9). IDs are written for
/// every delivery, so this beats a loop over a digit table.
fn hex_digits(x: u32) -> u64 {
    let mut v = x as u64;
    v = ((v & 0xffff_0000) << 16) | (v & 0xffff);
    v = ((v & 0x0000_ff00_0000_ff00) << 8) | (v & 0x0000_00ff_0000_00ff);
    v = ((v & 0x00f0_00f0_00f0_00f0) << 4) | (v & 0x000f_000f_000f_000f);
    let above_nine = ((v + 0x0606_0606_0606_0606) >> 4) & 0x0101_0101_0101_0101;
    v + 0x3030_3030_3030_3030 + above_nine * (b'a' - b'0' - 10) as u64
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.0))
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MessageId({self})")
    }
}

/// A decoded message as a consumer sees it (the wire form; a
/// [`Consumer`](crate::Consumer) hands its handlers a [`crate::Message`]).
///
/// ```
/// use bytes::{Bytes, BytesMut};
/// use nsq::protocol::{WireMessage, MessageId};
///
/// let sent = WireMessage {
///     id: MessageId::from_u64(7),
///     timestamp: 1_700_000_000_000_000_000,
///     attempts: 1,
///     body: Bytes::from_static(b"hello"),
/// };
/// let mut frame = BytesMut::new();
/// sent.encode_frame(&mut frame);
/// // After the 8 bytes of size and frame type: the message layout.
/// assert_eq!(WireMessage::decode(frame.freeze().slice(8..))?, sent);
/// # Ok::<(), nsq::protocol::message::ShortMessage>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireMessage {
    pub id: MessageId,
    /// Nanoseconds since the Unix epoch at which nsqd accepted the message.
    pub timestamp: i64,
    /// Deliveries so far, this one included.
    pub attempts: u16,
    pub body: Bytes,
}

/// Message data too short for the header: its length.
///
/// ```
/// let err = nsq::protocol::WireMessage::decode(bytes::Bytes::from_static(b"short")).unwrap_err();
/// assert_eq!(err, nsq::protocol::message::ShortMessage(5));
/// ```
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("message frame of {0} bytes is shorter than the {MESSAGE_HEADER_LEN}-byte header")]
pub struct ShortMessage(pub usize);

impl WireMessage {
    /// Parses the data of a message frame.
    pub fn decode(data: Bytes) -> Result<Self, ShortMessage> {
        if data.len() < MESSAGE_HEADER_LEN {
            return Err(ShortMessage(data.len()));
        }
        let timestamp = i64::from_be_bytes(data[0..8].try_into().expect("8 bytes"));
        let attempts = u16::from_be_bytes([data[8], data[9]]);
        let id = MessageId(data[10..26].try_into().expect("16 bytes"));
        Ok(WireMessage {
            id,
            timestamp,
            attempts,
            body: data.slice(MESSAGE_HEADER_LEN..),
        })
    }

    /// Appends this message as a complete message frame.
    pub fn encode_frame(&self, buf: &mut BytesMut) {
        encode_message_frame(buf, &self.id, self.timestamp, self.attempts, &self.body);
    }
}

/// Appends a message frame without building a [`WireMessage`] first.
pub fn encode_message_frame(
    buf: &mut BytesMut,
    id: &MessageId,
    timestamp: i64,
    attempts: u16,
    body: &[u8],
) {
    buf.reserve(8 + MESSAGE_HEADER_LEN + body.len());
    buf.put_u32((4 + MESSAGE_HEADER_LEN + body.len()) as u32);
    buf.put_u32(super::FrameType::Message as u32);
    buf.put_i64(timestamp);
    buf.put_u16(attempts);
    buf.put_slice(&id.0);
    buf.put_slice(body);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_lowercase_hex() {
        let id = MessageId::from_u64(0x18a3_c721_2726_9000);
        assert_eq!(&id.0, b"18a3c72127269000");
        assert_eq!(id.to_u64(), Some(0x18a3_c721_2726_9000));
        assert_eq!(MessageId(*b"zzzzzzzzzzzzzzzz").to_u64(), None);
        assert_eq!(
            MessageId(*b"18A3C72127269000").to_u64(),
            Some(0x18a3_c721_2726_9000)
        );
        assert_eq!(MessageId(*b"18a3c7212726900g").to_u64(), None);
        assert_eq!(MessageId(*b"18a3c72127269 00").to_u64(), None);
    }

    proptest::proptest! {
        #[test]
        fn ids_round_trip_as_formatted_hex(n: u64) {
            let id = MessageId::from_u64(n);
            proptest::prop_assert_eq!(String::from_utf8_lossy(&id.0), format!("{n:016x}"));
            proptest::prop_assert_eq!(id.to_u64(), Some(n));
        }

        #[test]
        fn any_sixteen_bytes_parse_as_hex_or_not_at_all(bytes: [u8; 16]) {
            let text = String::from_utf8_lossy(&bytes);
            let expected = match bytes.iter().all(u8::is_ascii_hexdigit) {
                true => u64::from_str_radix(&text, 16).ok(),
                false => None,
            };
            proptest::prop_assert_eq!(MessageId(bytes).to_u64(), expected);
        }
    }

    #[test]
    fn matches_upstream_frame_bytes() {
        // A message frame captured from nsqd v1.3.0.
        let wire =
            b"\x00\x00\x00#\x00\x00\x00\x02\x18\xea:\x98n\xcdR\xe0\x00\x0118a3c72127269000msg-1";
        let msg = WireMessage::decode(Bytes::copy_from_slice(&wire[8..])).unwrap();
        assert_eq!(msg.attempts, 1);
        assert_eq!(&msg.id.0, b"18a3c72127269000");
        assert_eq!(&msg.body[..], b"msg-1");
        let mut buf = BytesMut::new();
        msg.encode_frame(&mut buf);
        assert_eq!(&buf[..], &wire[..]);
    }
}
