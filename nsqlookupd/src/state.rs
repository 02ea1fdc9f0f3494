//! What nsqlookupd's TCP and HTTP servers share: the registry, the options
//! and where the listeners are bound. Their start and stop live in
//! `lookupd.rs`, which uses this module and is not used by it.

use crate::options::Options;
use crate::registry::Registry;
use std::net::SocketAddr;
use tokio_util::sync::CancellationToken;

/// What the TCP and HTTP servers share.
pub struct State {
    pub opts: Options,
    pub registry: Registry,
    pub tcp_addr: SocketAddr,
    pub http_addr: SocketAddr,
    /// The TLS listeners (ours), when configured.
    pub tcp_tls_addr: Option<SocketAddr>,
    pub https_addr: Option<SocketAddr>,
    /// Cancelled on shutdown: listeners stop and connections close.
    pub shutdown: CancellationToken,
}
