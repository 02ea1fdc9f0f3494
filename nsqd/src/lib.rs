//! nsqd as a library: [`Nsqd::start`] binds the listeners and serves until
//! [`Nsqd::shutdown`]. The binary and the end-to-end tests both use it.

pub mod auth;
pub mod channel;
pub mod cli;
pub mod client_conn;
pub mod command;
pub mod diskqueue;
pub mod e2e;
pub mod guid;
pub mod http;
pub mod log;
pub mod lookup;
pub mod message;
pub mod metadata;
pub mod metrics;
pub mod node;
pub mod options;
pub mod output;
pub mod protocol_v2;
pub mod pump;
pub mod queue;
pub mod server;
pub mod stats;
pub mod statsd;
pub mod stream;
pub mod tcp;
pub mod tls;
pub mod topic;

pub use options::{LogLevel, Options};
pub use server::{Nsqd, StartError};
