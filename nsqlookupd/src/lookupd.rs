//! The handle that starts and stops an nsqlookupd inside a process (the
//! binary and the tests use the same): it binds the listeners and builds the
//! [`State`] its servers share.

use crate::options::Options;
use crate::registry::Registry;
use crate::state::State;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// A running nsqlookupd. Dropping it does not stop it; call [`Lookupd::shutdown`].
pub struct Lookupd {
    state: Arc<State>,
    tasks: JoinSet<()>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Listen(#[from] nsq_daemon::tcp::ListenError),
    #[error("TLS: {0}")]
    Tls(String),
}

impl Lookupd {
    /// Binds both listeners and starts serving.
    pub async fn start(opts: Options) -> Result<Lookupd, StartError> {
        let listen = |name: &'static str, addr: String| async move {
            let listener = nsq_daemon::tcp::listen(name, &addr).await?;
            let local = listener
                .local_addr()
                .map_err(|source| nsq_daemon::tcp::ListenError {
                    listener: name,
                    addr,
                    source,
                })?;
            Ok::<_, StartError>((listener, local))
        };
        let tls = match opts.server_tls().map_err(StartError::Tls)? {
            Some(tls) => Some(nsq_daemon::tls::TlsAcceptor::from(
                tls.server_config()
                    .map_err(|e| StartError::Tls(e.to_string()))?,
            )),
            None => None,
        };
        let (tcp, tcp_addr) = listen("TCP", opts.tcp_address.clone()).await?;
        let (http, http_addr) = listen("HTTP", opts.http_address.clone()).await?;
        let tcp_tls = match opts.tcp_tls_address.as_str() {
            "" => None,
            addr => Some(listen("TCP (TLS)", addr.to_string()).await?),
        };
        let https = match opts.https_address.as_str() {
            "" => None,
            addr => Some(listen("HTTPS", addr.to_string()).await?),
        };
        let state = Arc::new(State {
            tcp_tls_addr: tcp_tls.as_ref().map(|(_, addr)| *addr),
            https_addr: https.as_ref().map(|(_, addr)| *addr),
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
        if let (Some((listener, addr)), Some(tls)) = (tcp_tls, tls.clone()) {
            tracing::info!(address = %addr, "TCP (TLS): listening");
            tasks.spawn(crate::tcp::serve_tls(state.clone(), listener, tls));
        }
        if let (Some((listener, addr)), Some(tls)) = (https, tls) {
            tracing::info!(address = %addr, "HTTPS: listening");
            let listener = nsq_daemon::tls::HttpsListener::new(listener, tls);
            tasks.spawn(crate::http::serve_https(state.clone(), listener));
        }
        Ok(Lookupd { state, tasks })
    }

    pub fn tcp_addr(&self) -> SocketAddr {
        self.state.tcp_addr
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.state.http_addr
    }

    pub fn tcp_tls_addr(&self) -> Option<SocketAddr> {
        self.state.tcp_tls_addr
    }

    pub fn https_addr(&self) -> Option<SocketAddr> {
        self.state.https_addr
    }

    /// Stops accepting, closes every connection and waits for both servers.
    pub async fn shutdown(mut self) {
        tracing::info!("nsqlookupd: shutting down");
        self.state.shutdown.cancel();
        while self.tasks.join_next().await.is_some() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_taken_port_is_named_by_its_listener() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap().to_string();
        let options = || Options {
            tcp_address: "127.0.0.1:0".into(),
            http_address: "127.0.0.1:0".into(),
            ..Options::default()
        };
        let cases = [
            (
                "TCP",
                Options {
                    tcp_address: addr.clone(),
                    ..options()
                },
            ),
            (
                "HTTP",
                Options {
                    http_address: addr.clone(),
                    ..options()
                },
            ),
        ];
        for (listener, opts) in cases {
            let err = match Lookupd::start(opts).await {
                Ok(lookupd) => {
                    lookupd.shutdown().await;
                    panic!("nsqlookupd started");
                }
                Err(e) => e.to_string(),
            };
            let expected = format!("{listener}: failed to listen on {addr}: ");
            assert!(err.starts_with(&expected), "{err}");
        }
    }
}
