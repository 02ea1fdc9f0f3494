//! The handle that starts and stops an nsqadmin inside a process (the binary,
//! nsq_local and the tests use the same).

use crate::cluster::Cluster;
use crate::ctx::State;
use crate::history::{self, History};
use crate::notify::Notifier;
use crate::options::Options;
use crate::server;
use nsq_daemon::logging::LogLevelHook;

use parking_lot::Mutex;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// A running nsqadmin. Dropping it does not stop it; call [`NsqAdmin::shutdown`].
pub struct NsqAdmin {
    state: Arc<State>,
    http_addr: SocketAddr,
    tasks: JoinSet<()>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Options(String),
    #[error(transparent)]
    Listen(#[from] nsq_daemon::tcp::ListenError),
}

impl NsqAdmin {
    pub async fn start(opts: Options) -> Result<NsqAdmin, StartError> {
        NsqAdmin::start_with_log_hook(opts, None).await
    }

    /// Starts serving; `log_level_hook` is told of `PUT /config/log_level`.
    pub async fn start_with_log_hook(
        opts: Options,
        log_level_hook: Option<LogLevelHook>,
    ) -> Result<NsqAdmin, StartError> {
        opts.validate().map_err(StartError::Options)?;
        let listener = nsq_daemon::tcp::listen("HTTP", &opts.http_address).await?;
        let http_addr = listener
            .local_addr()
            .map_err(|source| nsq_daemon::tcp::ListenError {
                listener: "HTTP",
                addr: opts.http_address.clone(),
                source,
            })?;
        let pool = opts.http_pool().map_err(StartError::Options)?;
        let cluster = Arc::new(Cluster::new(
            pool,
            opts.nsqlookupd_http_addresses.clone(),
            opts.nsqd_http_addresses.clone(),
        ));
        let history = Arc::new(History::new(opts.history_interval, opts.history_retention));
        let notifier = Notifier::new(
            &opts.notification_http_endpoint,
            nsq_daemon::flags::hostname(),
            opts.http_client_request_timeout,
        );
        let state = Arc::new(State {
            log_level: Mutex::new(opts.log_level),
            opts,
            cluster: cluster.clone(),
            history: history.clone(),
            notifier,
            log_level_hook,
            shutdown: CancellationToken::new(),
        });
        let mut tasks = JoinSet::new();
        tracing::info!(address = %http_addr, "HTTP: listening");
        tasks.spawn(server::serve(state.clone(), listener));
        tasks.spawn(history::poll(cluster, history, state.shutdown.clone()));
        Ok(NsqAdmin {
            state,
            http_addr,
            tasks,
        })
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Stops serving and sampling, and waits for both.
    pub async fn shutdown(mut self) {
        tracing::info!("nsqadmin: shutting down");
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
        let opts = Options {
            http_address: addr.clone(),
            nsqd_http_addresses: vec!["127.0.0.1:4151".into()],
            ..Options::default()
        };
        let err = match NsqAdmin::start(opts).await {
            Ok(admin) => {
                admin.shutdown().await;
                panic!("nsqadmin started");
            }
            Err(e) => e.to_string(),
        };
        let expected = format!("HTTP: failed to listen on {addr}: ");
        assert!(err.starts_with(&expected), "{err}");
    }
}
