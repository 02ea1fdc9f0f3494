//! nsqd as a library: [`Nsqd::start`] binds the listeners and serves until
//! [`Nsqd::shutdown`]. The binary and the end-to-end tests both use it, and
//! nothing else: every module is private to the crate.

mod auth;
mod channel;
mod cli;
mod client_conn;
mod coalesce;
mod command;
mod diskqueue;
mod e2e;
mod guid;
mod http;
mod http_channel;
mod http_replica;
mod log;
mod lookup;
mod message;
mod metadata;
mod metrics;
mod node;
mod options;
mod output;
mod protocol_v2;
mod pump;
mod queue;
mod replica;
mod replication;
mod server;
mod stats;
mod statsd;
mod stream;
mod syncer;
mod tcp;
mod tls;
mod topic;

#[cfg(test)]
mod prop_parse;

pub use cli::CommandLine;
pub use options::{Options, TlsRequired};
pub use server::{Nsqd, StartError};
