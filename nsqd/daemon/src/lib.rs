//! The plumbing that NSQ's daemons (nsqd, nsqlookupd, nsqadmin) and tools
//! share and that a client never needs. Internal: not published, and free to
//! change with the daemons. The `nsq` client crate knows nothing of it.

pub mod flags;
pub mod http_api;
pub mod logging;
pub mod lookup_protocol;
pub mod metrics;
pub mod signals;
pub mod tcp;
pub mod tls;
