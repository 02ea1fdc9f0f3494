//! A raw protocol V2 connection, to say exactly what a client would.

use crate::{Nsqd, PATIENCE};
use bytes::BytesMut;
use nsq::protocol::{decode_frame, Command, Frame, FrameType, MessageId, WireMessage, MAGIC_V2};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A raw protocol V2 connection.
pub struct Conn {
    pub stream: TcpStream,
    buf: BytesMut,
}

impl Conn {
    /// Connects and sends the magic.
    pub async fn connect(nsqd: &Nsqd) -> Conn {
        let mut conn = Conn::connect_raw(nsqd).await;
        conn.send_raw(MAGIC_V2).await;
        conn
    }

    /// Connects without sending anything.
    pub async fn connect_raw(nsqd: &Nsqd) -> Conn {
        let stream = TcpStream::connect(nsqd.tcp_addr()).await.expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        Conn {
            stream,
            buf: BytesMut::new(),
        }
    }

    /// Connects with a receive buffer of about `bytes` (the kernel doubles
    /// it and keeps a floor) and sends the magic: a consumer whose socket
    /// fills after a few messages.
    pub async fn connect_with_receive_buffer(nsqd: &Nsqd, bytes: u32) -> Conn {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(bytes).expect("receive buffer");
        Conn::speak_v2(socket.connect(nsqd.tcp_addr()).await.expect("connect")).await
    }

    /// Takes a connected stream and sends the magic.
    async fn speak_v2(stream: TcpStream) -> Conn {
        stream.set_nodelay(true).expect("nodelay");
        let mut conn = Conn {
            stream,
            buf: BytesMut::new(),
        };
        conn.send_raw(MAGIC_V2).await;
        conn
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    pub async fn send(&mut self, cmd: Command) {
        self.send_raw(&cmd.to_bytes()).await;
    }

    /// The next frame, or `None` when the server closed the connection.
    /// Panics if nothing arrives within `PATIENCE`.
    pub async fn read_frame(&mut self) -> Option<Frame> {
        self.read_frame_within(PATIENCE)
            .await
            .expect("a frame or EOF within patience")
    }

    /// `Err(())` on timeout, `Ok(None)` on EOF.
    pub async fn read_frame_within(&mut self, limit: Duration) -> Result<Option<Frame>, ()> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(frame) = decode_frame(&mut self.buf, 64 << 20).expect("well-formed frame") {
                return Ok(Some(frame));
            }
            match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf)).await {
                Err(_) => return Err(()),
                Ok(Ok(0)) | Ok(Err(_)) => return Ok(None),
                Ok(Ok(_)) => {}
            }
        }
    }

    /// Next frame that is not a heartbeat.
    pub async fn read_non_heartbeat(&mut self) -> Option<Frame> {
        loop {
            let frame = self.read_frame().await?;
            if !(frame.frame_type == FrameType::Response && &frame.data[..] == b"_heartbeat_") {
                return Some(frame);
            }
        }
    }

    pub async fn expect_response(&mut self, body: &str) {
        let frame = self.read_non_heartbeat().await.expect("a frame");
        assert_eq!(
            (
                frame.frame_type,
                String::from_utf8_lossy(&frame.data).into_owned()
            ),
            (FrameType::Response, body.to_string())
        );
    }

    /// Expects an error frame with exactly this text.
    pub async fn expect_error(&mut self, text: &str) {
        let frame = self.read_non_heartbeat().await.expect("an error frame");
        assert_eq!(
            (
                frame.frame_type,
                String::from_utf8_lossy(&frame.data).into_owned()
            ),
            (FrameType::Error, text.to_string())
        );
    }

    /// Expects the server to close the connection (after any pending frames).
    pub async fn expect_closed(&mut self) {
        assert!(
            self.read_non_heartbeat().await.is_none(),
            "connection should be closed"
        );
    }

    pub async fn expect_message(&mut self) -> WireMessage {
        let frame = self.read_non_heartbeat().await.expect("a message frame");
        assert_eq!(
            frame.frame_type,
            FrameType::Message,
            "got {:?}",
            String::from_utf8_lossy(&frame.data)
        );
        WireMessage::decode(frame.data).expect("valid message")
    }

    /// Asserts that no frame other than heartbeats arrives within `limit`.
    pub async fn expect_silence(&mut self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.read_frame_within(left).await {
                Err(()) => return,
                Ok(Some(f))
                    if f.frame_type == FrameType::Response && &f.data[..] == b"_heartbeat_" =>
                {
                    continue
                }
                Ok(other) => panic!("expected silence, got {other:?}"),
            }
        }
    }

    /// Takes and FINs every message until none comes for `quiet` (or the
    /// connection ends); returns them in the order they came.
    pub async fn fin_until_quiet(&mut self, quiet: Duration) -> Vec<WireMessage> {
        let mut got = Vec::new();
        while let Ok(Some(frame)) = self.read_frame_within(quiet).await {
            if frame.frame_type == FrameType::Message {
                let msg = WireMessage::decode(frame.data).expect("a message frame");
                self.fin(msg.id).await;
                got.push(msg);
            }
        }
        got
    }

    /// The next messages, which must have these bodies, in this order.
    pub async fn expect_bodies(&mut self, bodies: &[&str]) -> Vec<WireMessage> {
        let mut msgs = Vec::new();
        for expected in bodies {
            let msg = self.expect_message().await;
            assert_eq!(body_of(&msg), *expected);
            msgs.push(msg);
        }
        msgs
    }

    /// IDENTIFY with a raw JSON body, and its `OK`.
    pub async fn identify_ok(&mut self, json: &str) {
        self.send(Command::Identify(json.as_bytes().to_vec().into()))
            .await;
        self.expect_response("OK").await;
    }

    pub async fn publish(&mut self, topic: &str, body: &[u8]) {
        self.send(Command::Pub {
            topic: topic.into(),
            body: body.to_vec().into(),
        })
        .await;
        self.expect_response("OK").await;
    }

    /// SUB and wait for its OK.
    pub async fn subscribe(&mut self, topic: &str, channel: &str) {
        self.send(Command::Sub {
            topic: topic.into(),
            channel: channel.into(),
        })
        .await;
        self.expect_response("OK").await;
    }

    pub async fn rdy(&mut self, count: u32) {
        self.send(Command::Rdy(count)).await;
    }

    pub async fn fin(&mut self, id: MessageId) {
        self.send(Command::Fin(id)).await;
    }
}

/// A message's body as text.
pub fn body_of(msg: &WireMessage) -> &str {
    std::str::from_utf8(&msg.body).expect("UTF-8 body")
}

/// A consumer connection already subscribed with the given RDY.
pub async fn consumer(nsqd: &Nsqd, topic: &str, channel: &str, rdy: u32) -> Conn {
    let mut conn = Conn::connect(nsqd).await;
    conn.subscribe(topic, channel).await;
    if rdy > 0 {
        conn.rdy(rdy).await;
    }
    conn
}

impl Conn {
    /// Connects to any address speaking protocol V2.
    pub async fn connect_addr(addr: std::net::SocketAddr) -> Conn {
        Conn::speak_v2(TcpStream::connect(addr).await.expect("connect")).await
    }
}

/// For clients that outlive the nsqd they talk to (crash tests): failures
/// are results, not panics.
impl Conn {
    /// Sends a command; `Err` once the connection is gone.
    pub async fn try_send(&mut self, cmd: Command) -> std::io::Result<()> {
        self.stream.write_all(&cmd.to_bytes()).await
    }

    /// SUB and its OK; `Err` if anything else comes back.
    pub async fn try_subscribe(&mut self, topic: &str, channel: &str) -> Result<(), ()> {
        let sub = Command::Sub {
            topic: topic.into(),
            channel: channel.into(),
        };
        self.try_send(sub).await.map_err(|_| ())?;
        match self.read_frame_within(crate::PATIENCE).await {
            Ok(Some(frame))
                if frame.frame_type == FrameType::Response && &frame.data[..] == b"OK" =>
            {
                Ok(())
            }
            _ => Err(()),
        }
    }
}
