//! One TCP connection to nsqd: the handshake (magic, IDENTIFY with feature
//! negotiation, compression upgrades) and the two halves that read frames and
//! write commands, each through the negotiated compression layer.

use crate::config::Config;
use crate::error::{Error, ProtocolError, Result};
use crate::protocol::compress::{Decoder, Encoder};
use crate::protocol::{
    decode_frame, Command, Frame, FrameType, IdentifyResponse, HEARTBEAT, MAGIC_V2, OK,
};
use bytes::{Bytes, BytesMut};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

/// How much plain text one decompression step may produce before we look for a frame.
const DECODE_STEP: usize = 256 * 1024;

/// Reads frames, decompressing if negotiated.
pub(crate) struct FrameReader {
    addr: String,
    stream: OwnedReadHalf,
    /// Compressed bytes not yet decoded (only with a decoder).
    raw: BytesMut,
    /// Plain bytes not yet framed.
    plain: BytesMut,
    decoder: Option<Decoder>,
    max_frame: usize,
}

impl FrameReader {
    pub(crate) fn addr(&self) -> &str {
        &self.addr
    }

    /// A frame already received and not yet taken, without waiting. (With
    /// compression, frames are decoded by [`FrameReader::read_frame`].)
    pub(crate) fn buffered_frame(&mut self) -> Result<Option<Frame>> {
        if self.decoder.is_some() {
            return Ok(None);
        }
        decode_frame(&mut self.plain, self.max_frame).map_err(|source| Error::Frame {
            addr: self.addr.clone(),
            source: source.into(),
        })
    }

    /// The next frame. Cancel-safe: all progress is kept in `self`.
    pub(crate) async fn read_frame(&mut self) -> Result<Frame> {
        loop {
            let mut produced = false;
            if let Some(decoder) = &mut self.decoder {
                let before = self.plain.len();
                let limit = before + DECODE_STEP;
                decoder
                    .decode(&mut self.raw, &mut self.plain, limit)
                    .map_err(|e| Error::io(&self.addr, e))?;
                produced = self.plain.len() > before;
            }
            match decode_frame(&mut self.plain, self.max_frame) {
                Ok(Some(frame)) => return Ok(frame),
                Ok(None) if produced => continue,
                Ok(None) => {}
                Err(source) => {
                    return Err(Error::Frame {
                        addr: self.addr.clone(),
                        source: source.into(),
                    })
                }
            }
            let buf = if self.decoder.is_some() {
                &mut self.raw
            } else {
                &mut self.plain
            };
            let n = self
                .stream
                .read_buf(buf)
                .await
                .map_err(|e| Error::io(&self.addr, e))?;
            if n == 0 {
                return Err(Error::Closed(self.addr.clone()));
            }
        }
    }

    /// The next frame within `limit`. A frame already buffered is returned
    /// without arming a timer, which matters at a million messages a second.
    pub(crate) async fn read_frame_within(&mut self, limit: Duration) -> Result<Frame> {
        if let Some(frame) = self.buffered_frame()? {
            return Ok(frame);
        }
        match tokio::time::timeout(limit, self.read_frame()).await {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout {
                addr: self.addr.clone(),
                what: "read",
            }),
        }
    }

    /// From now on the bytes from nsqd are compressed, including any already
    /// buffered past the last frame.
    fn decompress(&mut self, decoder: Decoder) {
        self.raw = std::mem::take(&mut self.plain);
        self.decoder = Some(decoder);
    }
}

/// Buffers commands and writes them, compressed if negotiated.
pub(crate) struct FrameWriter {
    addr: String,
    stream: OwnedWriteHalf,
    plain: BytesMut,
    wire: BytesMut,
    encoder: Option<Encoder>,
    write_timeout: Duration,
}

impl FrameWriter {
    /// Adds a command to the next flush.
    pub(crate) fn push(&mut self, cmd: &Command) {
        cmd.encode(&mut self.plain);
    }

    pub(crate) fn has_pending(&self) -> bool {
        !self.plain.is_empty()
    }

    /// Writes everything pushed so far.
    pub(crate) async fn flush(&mut self) -> Result<()> {
        let out = match &mut self.encoder {
            Some(encoder) => {
                encoder
                    .encode(&self.plain, &mut self.wire)
                    .map_err(|e| Error::io(&self.addr, e))?;
                self.plain.clear();
                &mut self.wire
            }
            None => &mut self.plain,
        };
        let write = self.stream.write_all(out);
        match tokio::time::timeout(self.write_timeout, write).await {
            Ok(Ok(())) => {
                out.clear();
                Ok(())
            }
            Ok(Err(e)) => Err(Error::io(&self.addr, e)),
            Err(_) => Err(Error::Timeout {
                addr: self.addr.clone(),
                what: "write",
            }),
        }
    }

    pub(crate) async fn send(&mut self, cmd: &Command) -> Result<()> {
        self.push(cmd);
        self.flush().await
    }

    /// Closes our sending side so that nsqd sees EOF after the last command.
    pub(crate) async fn shutdown(mut self) {
        let _ = self.stream.shutdown().await;
    }
}

/// A connection after a successful handshake.
pub(crate) struct Connection {
    pub(crate) reader: FrameReader,
    pub(crate) writer: FrameWriter,
    /// What nsqd granted; defaults when it does not negotiate.
    pub(crate) identity: IdentifyResponse,
}

impl Connection {
    /// Dials `addr`, sends the magic and IDENTIFY, and performs the upgrades
    /// nsqd agreed to.
    pub(crate) async fn connect(addr: &str, config: &Config) -> Result<Connection> {
        let stream = match tokio::time::timeout(config.dial_timeout, TcpStream::connect(addr)).await
        {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return Err(Error::io(addr, e)),
            Err(_) => {
                return Err(Error::Timeout {
                    addr: addr.to_string(),
                    what: "connect",
                })
            }
        };
        stream.set_nodelay(true).map_err(|e| Error::io(addr, e))?;
        let (read, write) = stream.into_split();
        let mut conn = Connection {
            reader: FrameReader {
                addr: addr.to_string(),
                stream: read,
                raw: BytesMut::new(),
                plain: BytesMut::with_capacity(16 * 1024),
                decoder: None,
                max_frame: match config.max_msg_size {
                    0 => usize::MAX,
                    n => n as usize + 64,
                },
            },
            writer: FrameWriter {
                addr: addr.to_string(),
                stream: write,
                plain: BytesMut::with_capacity(16 * 1024),
                wire: BytesMut::new(),
                encoder: None,
                write_timeout: config.write_timeout,
            },
            identity: IdentifyResponse::default(),
        };
        conn.writer.plain.extend_from_slice(MAGIC_V2);
        let body = serde_json::to_vec(&config.identify()).expect("IDENTIFY serializes");
        conn.writer
            .send(&Command::Identify(Bytes::from(body)))
            .await?;
        let answer = conn.expect_response(config).await?;
        if answer != OK {
            conn.identity = serde_json::from_slice(&answer).map_err(|e| Error::Unexpected {
                addr: addr.to_string(),
                what: format!("IDENTIFY response is not JSON: {e}"),
            })?;
        }
        if conn.identity.auth_required {
            return Err(Error::Usage(
                "nsqd requires AUTH, which this client does not support yet",
            ));
        }
        // nsqd switches its side right after the IDENTIFY response, so the
        // OK that confirms an upgrade already comes compressed.
        if conn.identity.snappy {
            conn.reader.decompress(Decoder::snappy());
            conn.writer.encoder = Some(Encoder::snappy());
            conn.expect_ok(config).await?;
        } else if conn.identity.deflate {
            conn.reader.decompress(Decoder::deflate());
            let level = conn.identity.deflate_level.clamp(1, 9) as u32;
            conn.writer.encoder = Some(Encoder::deflate(level));
            conn.expect_ok(config).await?;
        }
        Ok(conn)
    }

    /// Sends SUB and waits for its OK.
    pub(crate) async fn subscribe(
        &mut self,
        topic: &str,
        channel: &str,
        config: &Config,
    ) -> Result<()> {
        self.writer
            .send(&Command::Sub {
                topic: topic.to_string(),
                channel: channel.to_string(),
            })
            .await?;
        self.expect_ok(config).await
    }

    /// The body of the next response frame, answering heartbeats on the way.
    async fn expect_response(&mut self, config: &Config) -> Result<Bytes> {
        loop {
            let frame = self.reader.read_frame_within(config.read_timeout).await?;
            match frame.frame_type {
                FrameType::Response if frame.data == HEARTBEAT => {
                    self.writer.send(&Command::Nop).await?;
                }
                FrameType::Response => return Ok(frame.data),
                FrameType::Error => return Err(ProtocolError::parse(&frame.data).into()),
                FrameType::Message => {
                    return Err(Error::Unexpected {
                        addr: self.reader.addr.clone(),
                        what: "a message before SUB".into(),
                    })
                }
            }
        }
    }

    async fn expect_ok(&mut self, config: &Config) -> Result<()> {
        let answer = self.expect_response(config).await?;
        if answer == OK {
            Ok(())
        } else {
            Err(Error::Unexpected {
                addr: self.reader.addr.clone(),
                what: format!("{:?} instead of OK", String::from_utf8_lossy(&answer)),
            })
        }
    }
}
