//! One TCP connection to nsqd: the handshake (magic, IDENTIFY with feature
//! negotiation, the TLS upgrade, compression on top, AUTH) and the two halves
//! that read frames and write commands, each through the negotiated layers.
//!
//! [`Producer`](crate::Producer) and [`Consumer`](crate::Consumer) are built
//! on it; programs that speak the protocol themselves (benchmarks, tests of
//! nsqd) can use it directly.

use crate::config::Config;
use crate::error::{Error, ProtocolError, Result};
use crate::protocol::compress::{Decoder, Encoder};
use crate::protocol::{
    decode_frame, Command, Frame, FrameType, IdentifyResponse, HEARTBEAT, MAGIC_V2, OK,
};
use crate::transport;
use bytes::{Bytes, BytesMut};
use std::time::Duration;
use tokio::net::TcpStream;

type TlsStream = tokio_rustls::client::TlsStream<TcpStream>;
type ReadHalf = transport::ReadHalf<TlsStream>;
type WriteHalf = transport::WriteHalf<TlsStream>;

/// How much plain text one decompression step may produce before we look for a frame.
const DECODE_STEP: usize = 256 * 1024;
/// The read buffer's size. Frames share it until they are dropped, and once
/// it is full the next one is this size again: at high rates a read brings
/// hundreds of frames.
const READ_CHUNK: usize = 64 * 1024;

/// Reads frames, decompressing if negotiated.
///
/// ```no_run
/// # async fn run() -> Result<(), nsq::Error> {
/// use nsq::protocol::FrameType;
///
/// let conn = nsq::conn::Connection::connect("127.0.0.1:4150", &nsq::Config::default()).await?;
/// let mut reader = conn.reader;
/// reader.spin_before_parking(nsq::transport::SPIN_WINDOW);
/// let frame = reader.read_frame().await?;
/// if frame.frame_type == FrameType::Response {
///     // Then every frame that arrived with it, without waiting.
///     while let Some(frame) = reader.buffered_frame()? {
///         println!("{:?}", frame.frame_type);
///     }
/// }
/// # Ok(())
/// # }
/// ```
pub struct FrameReader {
    addr: String,
    stream: ReadHalf,
    /// How long a read polls before parking (see [`FrameReader::spin_before_parking`]).
    spin: Duration,
    /// Compressed bytes not yet decoded (only with a decoder).
    raw: BytesMut,
    /// Plain bytes not yet framed.
    plain: BytesMut,
    decoder: Option<Decoder>,
    max_frame: usize,
}

impl FrameReader {
    /// The nsqd's address, as given to [`Connection::connect`].
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// When nothing has arrived, poll for up to `window` before parking
    /// ([`transport::SPIN_WINDOW`] suits a tight loop); zero, the default,
    /// parks at once.
    pub fn spin_before_parking(&mut self, window: Duration) {
        self.spin = window;
    }

    /// A frame already received and not yet taken, without waiting. (With
    /// compression, frames are decoded by [`FrameReader::read_frame`].)
    pub fn buffered_frame(&mut self) -> Result<Option<Frame>> {
        if self.decoder.is_some() {
            return Ok(None);
        }
        decode_frame(&mut self.plain, self.max_frame).map_err(|source| Error::Frame {
            addr: self.addr.clone(),
            source: source.into(),
        })
    }

    /// The next frame. Cancel-safe: all progress is kept in `self`.
    pub async fn read_frame(&mut self) -> Result<Frame> {
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
                .read_buf_spinning(buf, self.spin)
                .await
                .map_err(|e| Error::io(&self.addr, e))?;
            if n == 0 {
                return Err(Error::Closed(self.addr.clone()));
            }
        }
    }

    /// The next frame within `limit`. A frame already buffered is returned
    /// without arming a timer, which matters at a million messages a second.
    pub async fn read_frame_within(&mut self, limit: Duration) -> Result<Frame> {
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
///
/// ```no_run
/// # async fn run() -> Result<(), nsq::Error> {
/// use nsq::protocol::Command;
///
/// let conn = nsq::conn::Connection::connect("127.0.0.1:4150", &nsq::Config::default()).await?;
/// let mut writer = conn.writer;
/// for body in ["a", "b"] {
///     writer.push(&Command::Pub { topic: "events".into(), body: body.into() });
/// }
/// // Both in one write.
/// writer.flush().await?;
/// # Ok(())
/// # }
/// ```
pub struct FrameWriter {
    addr: String,
    stream: WriteHalf,
    plain: BytesMut,
    wire: BytesMut,
    encoder: Option<Encoder>,
    write_timeout: Duration,
}

impl FrameWriter {
    /// Adds a command to the next flush.
    pub fn push(&mut self, cmd: &Command) {
        cmd.encode(&mut self.plain);
    }

    /// Adds commands encoded elsewhere to the next flush.
    pub fn push_encoded(&mut self, commands: &[u8]) {
        self.plain.extend_from_slice(commands);
    }

    /// Writes everything pushed so far.
    pub async fn flush(&mut self) -> Result<()> {
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

    pub async fn send(&mut self, cmd: &Command) -> Result<()> {
        self.push(cmd);
        self.flush().await
    }

    /// Closes our sending side so that nsqd sees EOF after the last command.
    pub async fn shutdown(mut self) {
        let _ = self.stream.shutdown().await;
    }
}

/// A connection after a successful handshake: its two halves, and what nsqd
/// granted.
///
/// ```no_run
/// # async fn run() -> Result<(), nsq::Error> {
/// use nsq::protocol::Command;
///
/// let config = nsq::Config::default();
/// let mut conn = nsq::conn::Connection::connect("127.0.0.1:4150", &config).await?;
/// println!("nsqd allows RDY up to {}", conn.identity.max_rdy_count);
/// conn.writer.send(&Command::Pub { topic: "events".into(), body: "hello".into() }).await?;
/// conn.expect_ok(&config).await?;
/// # Ok(())
/// # }
/// ```
pub struct Connection {
    pub reader: FrameReader,
    pub writer: FrameWriter,
    /// What nsqd granted; defaults when it does not negotiate.
    pub identity: IdentifyResponse,
}

/// The halves of a new plain connection to `addr`: TCP with Nagle off, or a
/// unix socket when `addr` is a path.
async fn dial(addr: &str) -> std::io::Result<(ReadHalf, WriteHalf)> {
    if transport::is_unix_socket_path(addr) {
        let stream = tokio::net::UnixStream::connect(addr).await.map_err(|e| {
            // Most likely a TCP address without its port.
            let why = format!("no unix socket at this path ({e}); a TCP address is host:port");
            std::io::Error::new(e.kind(), why)
        })?;
        return Ok(transport::split_unix(stream));
    }
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(transport::split(stream))
}

impl Connection {
    /// Dials `addr` (`host:port`, or the path of nsqd's unix socket), sends
    /// the magic and IDENTIFY, and performs the upgrades nsqd agreed to.
    pub async fn connect(addr: &str, config: &Config) -> Result<Connection> {
        let (read, write) = match tokio::time::timeout(config.dial_timeout, dial(addr)).await {
            Ok(Ok(halves)) => halves,
            Ok(Err(e)) => return Err(Error::io(addr, e)),
            Err(_) => {
                return Err(Error::Timeout {
                    addr: addr.to_string(),
                    what: "connect",
                })
            }
        };
        let mut conn = Connection {
            reader: FrameReader {
                addr: addr.to_string(),
                stream: read,
                spin: Duration::ZERO,
                raw: BytesMut::new(),
                plain: BytesMut::with_capacity(READ_CHUNK),
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
        if config.tls_v1 {
            if !conn.identity.tls_v1 {
                // go-nsq would carry on in plain text; we do not downgrade silently.
                return Err(Error::Tls {
                    addr: addr.to_string(),
                    message: "nsqd did not agree to TLS (does it have a certificate?)".into(),
                });
            }
            conn = conn.upgrade_tls(config).await?;
            conn.expect_ok(config).await?;
        }
        // nsqd switches its side right after the IDENTIFY response (or the
        // TLS OK), so the OK that confirms compression already comes compressed.
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
        if conn.identity.auth_required {
            conn.auth(config).await?;
        }
        Ok(conn)
    }

    /// The client side of the TLS handshake, right after the IDENTIFY answer.
    async fn upgrade_tls(self, config: &Config) -> Result<Connection> {
        let Connection {
            reader,
            writer,
            identity,
        } = self;
        let addr = reader.addr.clone();
        let failed = |message: String| Error::Tls {
            addr: addr.clone(),
            message,
        };
        if !reader.plain.is_empty() {
            return Err(failed("nsqd sent data before the TLS handshake".into()));
        }
        let tcp =
            transport::reunite(reader.stream, writer.stream).map_err(|e| failed(e.to_string()))?;
        let tls_config = config
            .tls
            .client_config()
            .map_err(|e| failed(e.to_string()))?;
        let name = config
            .tls
            .server_name_for(&addr)
            .map_err(|e| failed(e.to_string()))?;
        let handshake = tokio_rustls::TlsConnector::from(tls_config).connect(name, tcp);
        let stream = match tokio::time::timeout(config.read_timeout, handshake).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return Err(failed(e.to_string())),
            Err(_) => {
                return Err(Error::Timeout {
                    addr,
                    what: "TLS handshake",
                })
            }
        };
        let (read, write) = transport::split_tls(stream);
        Ok(Connection {
            reader: FrameReader {
                stream: read,
                ..reader
            },
            writer: FrameWriter {
                stream: write,
                ..writer
            },
            identity,
        })
    }

    /// AUTH with the configured secret; nsqd answers with who we are to it.
    async fn auth(&mut self, config: &Config) -> Result<()> {
        let Some(secret) = &config.auth_secret else {
            return Err(Error::Usage(
                "nsqd requires AUTH: set Config::auth_secret (auth_secret)",
            ));
        };
        self.writer
            .send(&Command::Auth(Bytes::copy_from_slice(secret.0.as_bytes())))
            .await?;
        let answer = self.expect_response(config).await?;
        #[derive(serde::Deserialize, Default)]
        #[serde(default)]
        struct AuthResponse {
            identity: String,
            identity_url: String,
            permission_count: i64,
        }
        let granted: AuthResponse =
            serde_json::from_slice(&answer).map_err(|e| Error::Unexpected {
                addr: self.reader.addr.clone(),
                what: format!("AUTH response is not JSON: {e}"),
            })?;
        tracing::debug!(
            addr = %self.reader.addr,
            identity = %granted.identity,
            identity_url = %granted.identity_url,
            permissions = granted.permission_count,
            "AUTH accepted"
        );
        Ok(())
    }

    /// Sends SUB and waits for its OK.
    pub async fn subscribe(&mut self, topic: &str, channel: &str, config: &Config) -> Result<()> {
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

    /// Waits for nsqd's `OK`, answering heartbeats meanwhile; an error frame
    /// is a [`Error::Protocol`].
    pub async fn expect_ok(&mut self, config: &Config) -> Result<()> {
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
