//! The NSQ wire protocol and HTTP API types, shared by the daemons, the tools and
//! applications.
//!
//! * [`protocol`]: the TCP protocol V2 spoken between clients and `nsqd`: frames,
//!   commands, messages, IDENTIFY negotiation, name rules and the snappy/deflate
//!   stream layers.
//! * [`api`]: the JSON documents of nsqd's HTTP API (`/stats`, `/info`), used by
//!   nsqd to write them and by tools to read them.

pub mod api;
#[cfg(feature = "flags")]
pub mod flags;
#[cfg(feature = "server")]
pub mod http_api;
pub mod protocol;
