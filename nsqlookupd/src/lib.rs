//! nsqlookupd as a library: [`Lookupd::start`] binds the listeners and serves
//! until [`Lookupd::shutdown`]. The binary and the end-to-end tests both use it.
//!
//! nsqlookupd is the directory of an NSQ cluster: every nsqd registers its
//! topics and channels over TCP (protocol V1, `tcp.rs`); consumers ask over
//! HTTP (`http.rs`) where a topic lives. It holds no messages and nothing
//! persists: a restarted lookupd is refilled by the nsqds' re-registrations.

mod cli;
mod http;
mod lookupd;
mod metrics;
mod options;
mod registry;
mod state;
mod tcp;

pub use cli::CommandLine;
pub use lookupd::{Lookupd, StartError};
pub use options::Options;
