//! The stream layers IDENTIFY can negotiate: the snappy *framing* format and raw
//! DEFLATE (RFC 1951, no zlib header) with a sync flush after every write.
//!
//! Both sides of a connection use these on in-memory buffers, so they work with
//! any async socket: the encoder turns a run of plain bytes into one flushable
//! unit, and the decoder turns whatever compressed bytes have arrived into plain
//! bytes, stopping at a caller-given limit so that a small compressed input can
//! never make us allocate without bound.

use bytes::{Buf, BufMut, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use std::io;

/// Snappy framing allows at most 64 KiB of uncompressed data per chunk.
const SNAPPY_MAX_BLOCK: usize = 65536;
const SNAPPY_STREAM_ID: &[u8] = b"\xff\x06\x00\x00sNaPpY";

fn masked_crc(data: &[u8]) -> u32 {
    let crc = crc32c::crc32c(data);
    (crc.rotate_right(15)).wrapping_add(0xa282_ead8)
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

/// Turns plain bytes into compressed bytes: the stream layer a connection
/// switches to after negotiating snappy or deflate in IDENTIFY.
///
/// ```
/// use bytes::BytesMut;
/// use nsq::protocol::compress::{Decoder, Encoder};
///
/// let (mut encoder, mut decoder) = (Encoder::snappy(), Decoder::snappy());
/// let mut wire = BytesMut::new();
/// encoder.encode(b"RDY 10\n", &mut wire)?;
/// let mut plain = BytesMut::new();
/// decoder.decode(&mut wire, &mut plain, 1 << 20)?;
/// assert_eq!(&plain[..], b"RDY 10\n");
/// # Ok::<(), std::io::Error>(())
/// ```
pub enum Encoder {
    Snappy {
        raw: Box<snap::raw::Encoder>,
        started: bool,
        scratch: Vec<u8>,
    },
    Deflate(Box<Compress>),
}

impl Encoder {
    pub fn snappy() -> Self {
        Encoder::Snappy {
            raw: Box::new(snap::raw::Encoder::new()),
            started: false,
            scratch: Vec::new(),
        }
    }

    /// `level` is clamped to 1..=9.
    pub fn deflate(level: u32) -> Self {
        Encoder::Deflate(Box::new(Compress::new(
            Compression::new(level.clamp(1, 9)),
            false,
        )))
    }

    /// Compresses all of `src` onto `dst` so that the peer can decode every byte
    /// of it without waiting for more.
    pub fn encode(&mut self, src: &[u8], dst: &mut BytesMut) -> io::Result<()> {
        match self {
            Encoder::Snappy {
                raw,
                started,
                scratch,
            } => {
                if !*started {
                    dst.put_slice(SNAPPY_STREAM_ID);
                    *started = true;
                }
                for block in src.chunks(SNAPPY_MAX_BLOCK) {
                    scratch.resize(snap::raw::max_compress_len(block.len()), 0);
                    let n = raw.compress(block, scratch).map_err(io::Error::other)?;
                    let crc = masked_crc(block);
                    // Keep incompressible data as it is, as Go's snappy writer does.
                    let (kind, payload) = if n >= block.len() - block.len() / 8 {
                        (0x01u8, block)
                    } else {
                        (0x00u8, &scratch[..n])
                    };
                    let len = (payload.len() + 4) as u32;
                    dst.reserve(8 + payload.len());
                    dst.put_u8(kind);
                    dst.put_slice(&len.to_le_bytes()[..3]);
                    dst.put_u32_le(crc);
                    dst.put_slice(payload);
                }
                Ok(())
            }
            Encoder::Deflate(z) => {
                let mut input = src;
                loop {
                    dst.reserve(input.len() / 2 + 64);
                    let before_in = z.total_in();
                    let before_out = z.total_out();
                    let spare = dst.spare_capacity_mut();
                    // SAFETY: zlib only writes into the buffer, and we only
                    // expose the bytes it reports as written.
                    let out =
                        unsafe { &mut *(spare as *mut [std::mem::MaybeUninit<u8>] as *mut [u8]) };
                    z.compress(input, out, FlushCompress::Sync)
                        .map_err(io::Error::other)?;
                    let consumed = (z.total_in() - before_in) as usize;
                    let written = (z.total_out() - before_out) as usize;
                    unsafe { dst.advance_mut(written) };
                    input = &input[consumed..];
                    // The sync flush is complete once the output did not fill up.
                    if input.is_empty() && written < out.len() {
                        return Ok(());
                    }
                }
            }
        }
    }
}

/// Turns compressed bytes into plain bytes, as many as a reader wants at a
/// time: a few bytes may expand enormously, so `decode` stops at a limit.
///
/// ```
/// use bytes::BytesMut;
/// use nsq::protocol::compress::{Decoder, Encoder};
///
/// let (mut encoder, mut decoder) = (Encoder::deflate(6), Decoder::deflate());
/// let mut wire = BytesMut::new();
/// encoder.encode(&[b'x'; 100_000], &mut wire)?;
/// let mut plain = BytesMut::new();
/// decoder.decode(&mut wire, &mut plain, 10_000)?;
/// assert!(plain.len() < 100_000, "no more than asked for, give or take a step");
/// # Ok::<(), std::io::Error>(())
/// ```
pub enum Decoder {
    Snappy {
        raw: snap::raw::Decoder,
        seen_stream_id: bool,
    },
    Deflate(Box<Decompress>),
}

impl Decoder {
    pub fn snappy() -> Self {
        Decoder::Snappy {
            raw: snap::raw::Decoder::new(),
            seen_stream_id: false,
        }
    }

    pub fn deflate() -> Self {
        Decoder::Deflate(Box::new(Decompress::new(false)))
    }

    /// Decodes from the front of `src` onto `dst` until `src` holds no complete
    /// unit or `dst` reaches `limit` bytes. Consumed input is removed from `src`.
    ///
    /// On error `dst` is left as it was before the call and the stream is
    /// dead: no byte of a chunk that fails its checksum, nor anything a
    /// broken deflate stream produced in the same step, may reach a parser.
    pub fn decode(
        &mut self,
        src: &mut BytesMut,
        dst: &mut BytesMut,
        limit: usize,
    ) -> io::Result<()> {
        let before = dst.len();
        let result = self.decode_step(src, dst, limit);
        if result.is_err() {
            dst.truncate(before);
        }
        result
    }

    fn decode_step(
        &mut self,
        src: &mut BytesMut,
        dst: &mut BytesMut,
        limit: usize,
    ) -> io::Result<()> {
        match self {
            Decoder::Snappy {
                raw,
                seen_stream_id,
            } => {
                while dst.len() < limit && src.len() >= 4 {
                    let kind = src[0];
                    let len = u32::from_le_bytes([src[1], src[2], src[3], 0]) as usize;
                    if len > snap::raw::max_compress_len(SNAPPY_MAX_BLOCK) + 4 {
                        return Err(invalid("snappy chunk too large"));
                    }
                    if src.len() < 4 + len {
                        src.reserve(4 + len - src.len());
                        return Ok(());
                    }
                    let chunk = &src[4..4 + len];
                    match kind {
                        0xff => {
                            if chunk != b"sNaPpY" {
                                return Err(invalid("bad snappy stream identifier"));
                            }
                            *seen_stream_id = true;
                        }
                        0x00 | 0x01 => {
                            if !*seen_stream_id {
                                return Err(invalid("snappy data before the stream identifier"));
                            }
                            if len < 4 {
                                return Err(invalid("snappy chunk too short"));
                            }
                            let crc = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
                            let start = dst.len();
                            if kind == 0x00 {
                                let n = snap::raw::decompress_len(&chunk[4..])
                                    .map_err(io::Error::other)?;
                                if n > SNAPPY_MAX_BLOCK {
                                    return Err(invalid("snappy block too large"));
                                }
                                dst.resize(start + n, 0);
                                raw.decompress(&chunk[4..], &mut dst[start..])
                                    .map_err(io::Error::other)?;
                            } else {
                                if len - 4 > SNAPPY_MAX_BLOCK {
                                    return Err(invalid("snappy block too large"));
                                }
                                dst.put_slice(&chunk[4..]);
                            }
                            if masked_crc(&dst[start..]) != crc {
                                return Err(invalid("snappy checksum mismatch"));
                            }
                        }
                        0x02..=0x7f => return Err(invalid("reserved unskippable snappy chunk")),
                        _ => {} // padding and skippable chunks
                    }
                    src.advance(4 + len);
                }
                Ok(())
            }
            Decoder::Deflate(z) => {
                // zlib may hold decoded output back when room runs out, so keep
                // asking even when no input is left, until it has nothing more.
                while dst.len() < limit {
                    let room = (limit - dst.len()).min(64 * 1024);
                    dst.reserve(room);
                    let before_in = z.total_in();
                    let before_out = z.total_out();
                    let spare = &mut dst.spare_capacity_mut()[..room];
                    // SAFETY: as in the encoder.
                    let out =
                        unsafe { &mut *(spare as *mut [std::mem::MaybeUninit<u8>] as *mut [u8]) };
                    let status = z
                        .decompress(src, out, FlushDecompress::Sync)
                        .map_err(io::Error::other)?;
                    let consumed = (z.total_in() - before_in) as usize;
                    let written = (z.total_out() - before_out) as usize;
                    unsafe { dst.advance_mut(written) };
                    src.advance(consumed);
                    if status == Status::StreamEnd {
                        return Err(invalid("deflate stream ended"));
                    }
                    if consumed == 0 && written == 0 {
                        break; // needs more input
                    }
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(mut enc: Encoder, mut dec: Decoder) {
        let text: Vec<u8> = (0..200_000u32)
            .flat_map(|i| (i % 251).to_be_bytes())
            .collect();
        let mut wire = BytesMut::new();
        enc.encode(&text[..100_000], &mut wire).unwrap();
        enc.encode(b"", &mut wire).unwrap();
        enc.encode(&text[100_000..], &mut wire).unwrap();
        // Feed the wire a few bytes at a time, with a small output limit.
        let mut src = BytesMut::new();
        let mut out = BytesMut::new();
        let mut plain = Vec::new();
        for piece in wire.chunks(777) {
            src.extend_from_slice(piece);
            loop {
                dec.decode(&mut src, &mut out, 4096).unwrap();
                if out.is_empty() {
                    break;
                }
                plain.extend_from_slice(&out.split());
            }
        }
        assert_eq!(plain, text);
    }

    #[test]
    fn snappy_round_trip() {
        round_trip(Encoder::snappy(), Decoder::snappy());
    }

    #[test]
    fn deflate_round_trip() {
        round_trip(Encoder::deflate(6), Decoder::deflate());
    }

    #[test]
    fn snappy_interoperates_with_the_snap_crate() {
        use std::io::{Read, Write};
        let mut enc = Encoder::snappy();
        let mut wire = BytesMut::new();
        enc.encode(b"hello hello hello hello", &mut wire).unwrap();
        let mut plain = String::new();
        snap::read::FrameDecoder::new(&wire[..])
            .read_to_string(&mut plain)
            .unwrap();
        assert_eq!(plain, "hello hello hello hello");

        let mut theirs = snap::write::FrameEncoder::new(Vec::new());
        theirs.write_all(b"from the snap crate").unwrap();
        let wire = theirs.into_inner().unwrap();
        let mut dec = Decoder::snappy();
        let mut out = BytesMut::new();
        dec.decode(&mut BytesMut::from(&wire[..]), &mut out, 1 << 20)
            .unwrap();
        assert_eq!(&out[..], b"from the snap crate");
    }

    /// A snappy chunk: `kind`, 3-byte length, masked CRC, payload.
    fn chunk(kind: u8, crc: u32, payload: &[u8]) -> Vec<u8> {
        let len = (payload.len() + 4) as u32;
        let mut c = vec![kind];
        c.extend_from_slice(&len.to_le_bytes()[..3]);
        c.extend_from_slice(&crc.to_le_bytes());
        c.extend_from_slice(payload);
        c
    }

    #[test]
    fn a_chunk_that_fails_its_checksum_yields_nothing() {
        let plain = b"PUB crc\n\x00\x00\x00\x04body";
        let mut compressed = vec![0; snap::raw::max_compress_len(plain.len())];
        let n = snap::raw::Encoder::new()
            .compress(plain, &mut compressed)
            .unwrap();
        let good = chunk(0x01, masked_crc(b"NOP\n"), b"NOP\n");
        for bad in [
            chunk(0x01, masked_crc(plain) ^ 1, plain),
            chunk(0x00, masked_crc(plain) ^ 1, &compressed[..n]),
        ] {
            let mut wire = BytesMut::from(SNAPPY_STREAM_ID);
            wire.extend_from_slice(&good);
            wire.extend_from_slice(&bad);
            let mut out = BytesMut::from(&b"kept"[..]);
            let err = Decoder::snappy()
                .decode(&mut wire, &mut out, 1 << 20)
                .unwrap_err();
            assert!(err.to_string().contains("checksum"), "{err}");
            assert_eq!(&out[..], b"kept", "nothing of the failing step");
        }
    }

    #[test]
    fn a_broken_deflate_stream_yields_nothing_of_its_last_step() {
        // A whole command fits the step's first 64 KiB of output; the break
        // comes later in the same step.
        let mut plain = b"PUB t\n\x00\x00\x00\x01x".to_vec();
        plain.extend_from_slice(&[b'a'; 100_000]);
        let mut wire = BytesMut::new();
        Encoder::deflate(6).encode(&plain, &mut wire).unwrap();
        // A final block of the reserved type 3.
        wire.extend_from_slice(&[0xff, 0xff]);
        let mut out = BytesMut::new();
        assert!(Decoder::deflate()
            .decode(&mut wire, &mut out, 1 << 20)
            .is_err());
        assert!(out.is_empty(), "{} bytes decoded", out.len());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut out = BytesMut::new();
        let mut src = BytesMut::from(&b"\x00\x05\x00\x00abcde"[..]);
        assert!(Decoder::snappy()
            .decode(&mut src, &mut out, 1 << 20)
            .is_err());
        let mut src = BytesMut::from(&b"\xff\xff\xff\xff\xff\xff"[..]);
        assert!(Decoder::deflate()
            .decode(&mut src, &mut out, 1 << 20)
            .is_err());
    }
}
