//! The plumbing that NSQ's daemons (nsqd, nsqlookupd, nsqadmin) and tools
//! share and that a client never needs. Internal: not published, and free to
//! change with the daemons. The `nsq` client crate knows nothing of it.

pub mod flags;
pub mod http_api;
pub mod http_server;
pub mod limits;
pub mod logging;
pub mod lookup_protocol;
pub mod metrics;
pub mod signals;
pub mod sockopt;
pub mod tcp;
pub mod tls;

/// The NSQ release whose protocols, HTTP APIs and flags these programs
/// implement. The daemons report it (`/info`, `/stats`, IDENTIFY, lookupd
/// registrations) and every program prints it for `--version`.
pub const VERSION: &str = "1.3.0";

/// What `--version` prints and a daemon logs first: upstream's form, plus
/// where the program comes from.
pub fn version_line(program: &str) -> String {
    format!("{program} v{VERSION} (rust)")
}
