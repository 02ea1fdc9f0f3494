//! The handle that starts and stops an nsqlookupd inside a process (the
//! binary and the tests use the same), and the state its servers share.

use crate::options::Options;
use crate::registry::Registry;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// The version reported in `/info` and the IDENTIFY answer.
pub const VERSION: &str = "1.3.0";

/// What the TCP and HTTP servers share.
pub struct State {
    pub opts: Options,
    pub registry: Registry,
    pub tcp_addr: SocketAddr,
    pub http_addr: SocketAddr,
    /// Cancelled on shutdown: listeners stop and connections close.
    pub shutdown: CancellationToken,
}

/// A running nsqlookupd. Dropping it does not stop it; call [`Lookupd::shutdown`].
pub struct Lookupd {
    state: Arc<State>,
    tasks: JoinSet<()>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("failed to listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
}

impl Lookupd {
    /// Binds both listeners and starts serving.
    pub async fn start(opts: Options) -> Result<Lookupd, StartError> {
        let listen = |addr: String| async move {
            let listener = TcpListener::bind(&addr)
                .await
                .map_err(|source| StartError::Listen {
                    addr: addr.clone(),
                    source,
                })?;
            let local = listener
                .local_addr()
                .map_err(|source| StartError::Listen { addr, source })?;
            Ok::<_, StartError>((listener, local))
        };
        let (tcp, tcp_addr) = listen(opts.tcp_address.clone()).await?;
        let (http, http_addr) = listen(opts.http_address.clone()).await?;
        let state = Arc::new(State {
            registry: Registry::new(opts.inactive_producer_timeout, opts.tombstone_lifetime),
            opts,
            tcp_addr,
            http_addr,
            shutdown: CancellationToken::new(),
        });
        let mut tasks = JoinSet::new();
        tracing::info!(address = %tcp_addr, "TCP: listening");
        tasks.spawn(crate::tcp::serve(state.clone(), tcp));
        tracing::info!(address = %http_addr, "HTTP: listening");
        tasks.spawn(crate::http::serve(state.clone(), http));
        Ok(Lookupd { state, tasks })
    }

    pub fn tcp_addr(&self) -> SocketAddr {
        self.state.tcp_addr
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.state.http_addr
    }

    /// Stops accepting, closes every connection and waits for both servers.
    pub async fn shutdown(mut self) {
        tracing::info!("shutting down");
        self.state.shutdown.cancel();
        while self.tasks.join_next().await.is_some() {}
    }
}
