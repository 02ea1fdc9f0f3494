//! nsqlookupd as a library: [`Lookupd::start`] binds the listeners and serves
//! until [`Lookupd::shutdown`]. The binary and the end-to-end tests both use it.
//!
//! nsqlookupd is the directory of an NSQ cluster: every nsqd registers its
//! topics and channels over TCP (protocol V1, [`tcp`]); consumers ask over
//! HTTP ([`http`]) where a topic lives. It holds no messages and nothing
//! persists: a restarted lookupd is refilled by the nsqds' re-registrations.

pub mod cli;
pub mod http;
pub mod lookupd;
pub mod metrics;
pub mod options;
pub mod registry;
pub mod tcp;

pub use lookupd::{Lookupd, StartError};
pub use options::{LogLevel, Options};
