//! The write side of a connection: frames gather in a buffer and go out in
//! one write, through the negotiated compression layer.

use crate::stream::WriteHalf;
use bytes::{Buf, BytesMut};
use nsq::protocol::compress::Encoder;
use nsq::protocol::{encode_frame, FrameType};
use std::io;
use std::time::Duration;
use tokio::sync::{Mutex, MutexGuard};

pub struct Writer {
    sink: WriteHalf,
    encoder: Option<Encoder>,
    /// Plain frames not yet written.
    pub pending: BytesMut,
    /// Compressed bytes, when a layer is active.
    wire: BytesMut,
    /// A write that takes longer fails the connection (upstream: the heartbeat interval).
    pub write_timeout: Option<Duration>,
}

impl Writer {
    pub fn frame(&mut self, frame_type: FrameType, data: &[u8]) {
        encode_frame(&mut self.pending, frame_type, data);
    }

    pub async fn flush(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let bytes: &[u8] = match self.encoder.as_mut() {
            None => &self.pending,
            Some(encoder) => {
                self.wire.clear();
                encoder.encode(&self.pending, &mut self.wire)?;
                &self.wire
            }
        };
        let write = self.sink.write_all(bytes);
        let result = match self.write_timeout {
            Some(limit) => tokio::time::timeout(limit, write)
                .await
                .unwrap_or_else(|_| {
                    Err(io::Error::new(io::ErrorKind::TimedOut, "write timed out"))
                }),
            None => write.await,
        };
        self.pending.clear();
        result
    }

    /// Whether [`Writer::try_flush`] can write here: a plain socket with no
    /// compression layer, and nothing of an earlier write left over.
    pub fn writes_now(&self) -> bool {
        self.encoder.is_none()
            && self.pending.is_empty()
            && matches!(self.sink, WriteHalf::Plain(_) | WriteHalf::Unix(_))
    }

    /// Writes what is pending as far as the socket takes it without
    /// waiting; `false` when some is left for [`Writer::flush`].
    pub fn try_flush(&mut self) -> io::Result<bool> {
        debug_assert!(self.encoder.is_none(), "try_flush writes plain frames");
        while !self.pending.is_empty() {
            match self.sink.try_write(&self.pending) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.pending.advance(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        self.pending.clear();
        Ok(true)
    }

    /// The TCP socket of a plain TCP connection, for its options.
    pub fn tcp(&self) -> Option<&tokio::net::TcpStream> {
        self.sink.tcp()
    }

    /// Everything written after this goes through `encoder`.
    pub fn set_encoder(&mut self, encoder: Encoder) {
        self.encoder = Some(encoder);
    }

    /// Lends the socket to a TLS upgrade; writes fail until it is put back.
    pub fn take_sink(&mut self) -> WriteHalf {
        std::mem::replace(&mut self.sink, WriteHalf::Detached)
    }

    pub fn set_sink(&mut self, sink: WriteHalf) {
        self.sink = sink;
    }
}

/// The writer, shared by the command reader, the message pump and heartbeats.
pub struct Output {
    writer: Mutex<Writer>,
}

impl Output {
    pub fn new(sink: WriteHalf, write_timeout: Option<Duration>) -> Self {
        Output {
            writer: Mutex::new(Writer {
                sink,
                encoder: None,
                pending: BytesMut::with_capacity(16 * 1024),
                wire: BytesMut::new(),
                write_timeout,
            }),
        }
    }

    pub async fn lock(&self) -> MutexGuard<'_, Writer> {
        self.writer.lock().await
    }

    /// The writer, unless someone holds it.
    pub fn try_lock(&self) -> Option<MutexGuard<'_, Writer>> {
        self.writer.try_lock().ok()
    }

    /// Writes one frame right away, after whatever was buffered.
    pub async fn send(&self, frame_type: FrameType, data: &[u8]) -> io::Result<()> {
        let mut writer = self.writer.lock().await;
        writer.frame(frame_type, data);
        writer.flush().await
    }

    pub async fn shutdown(&self) {
        let mut writer = self.writer.lock().await;
        let _ = writer.sink.shutdown().await;
    }
}
