//! NSQ for Rust: a producer and a consumer with go-nsq's behaviour, typed
//! clients of the daemons' HTTP APIs, and the wire protocol and JSON
//! documents they speak. A client library only: the daemons' own plumbing
//! lives elsewhere.
//!
//! * [`Producer`]: publishes to one nsqd over one pipelined connection.
//! * [`Consumer`]: receives a channel's messages from many nsqd, found
//!   directly or through nsqlookupd, with flow control (`max_in_flight`),
//!   requeues, backoff and graceful shutdown.
//! * [`Config`]: the options both share, with go-nsq's names and defaults;
//!   [`tls`] its TLS part.
//! * [`NsqdHttp`], [`LookupdHttp`]: nsqd's and nsqlookupd's HTTP APIs
//!   (publishing, stats, admin actions, discovery), over one [`HttpPool`].
//! * [`protocol`]: the TCP protocol V2: frames, commands, messages, IDENTIFY
//!   negotiation, name rules and the snappy/deflate stream layers.
//! * [`api`]: the JSON documents of nsqd's and nsqlookupd's HTTP APIs.
//! * [`conn`]: one raw protocol V2 connection (handshake, framed reads and
//!   writes), for programs that speak the protocol themselves;
//!   [`transport`] its plain-or-TLS halves, which nsqd uses too.
//!
//! # Publishing
//!
//! ```no_run
//! # async fn run() -> Result<(), nsq::Error> {
//! use std::time::Duration;
//!
//! let producer = nsq::Producer::new("127.0.0.1:4150", nsq::Config::default())?;
//! producer.publish("events", "hello").await?;
//! producer.multi_publish("events", ["a", "b", "c"]).await?;
//! producer.deferred_publish("events", Duration::from_secs(5), "later").await?;
//! // Waits for publishes still in progress elsewhere, then disconnects.
//! producer.stop().await;
//! # Ok(())
//! # }
//! ```
//!
//! Errors separate what nsqd refused ([`Error::Protocol`], with the code such as
//! `E_BAD_MESSAGE`) from connection failures ([`Error::Io`], [`Error::Closed`]).
//!
//! # Consuming
//!
//! ```no_run
//! # async fn run() -> Result<(), nsq::Error> {
//! let config = nsq::Config {
//!     max_in_flight: 32,
//!     ..nsq::Config::default()
//! };
//! let consumer = nsq::Consumer::new("events", "archive", config)?;
//! // Ok finishes the message; Err requeues it with a growing delay.
//! consumer.add_concurrent_handlers(
//!     |msg: nsq::Message| async move {
//!         let text = std::str::from_utf8(msg.body())?;
//!         println!("{} (attempt {})", text, msg.attempts());
//!         Ok::<_, std::str::Utf8Error>(())
//!     },
//!     8,
//! )?;
//! consumer.connect_to_lookupd("127.0.0.1:4161").await?;
//! tokio::signal::ctrl_c().await.ok();
//! // CLS on every connection, wait for the handlers, close.
//! consumer.stop().await;
//! # Ok(())
//! # }
//! ```
//!
//! Handlers that need a failure hook (for messages past `max_attempts`) or
//! state implement [`Handler`]; long-running ones can call
//! [`Message::disable_auto_response`] and then [`Message::touch`],
//! [`Message::finish`] or [`Message::requeue`] themselves.

pub mod api;
pub mod config;
pub mod conn;
pub mod consumer;
pub mod error;
pub mod http_client;
pub mod producer;
pub mod protocol;
pub mod tls;
pub mod transport;

pub use config::{Config, ConfigError};
pub use consumer::{Consumer, ConsumerStats, Handler, Message};
pub use error::{Error, ProtocolError, Result};
pub use http_client::{HttpPool, LookupdHttp, NsqdHttp, TopicAction};
pub use producer::Producer;
