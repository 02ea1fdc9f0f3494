//! The handle that starts and stops an nsqadmin inside a process (the binary,
//! nsq_local and the tests use the same).

use crate::cluster::Cluster;
use crate::history::{self, History};
use crate::notify::Notifier;
use crate::options::Options;
use crate::server::{self, LogLevelHook, State};

use parking_lot::Mutex;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// The version shown in the UI and sent as the peek consumer's user agent.
pub const VERSION: &str = "1.3.0";

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
    #[error("failed to listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
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
        let listener = TcpListener::bind(&opts.http_address)
            .await
            .map_err(|source| StartError::Listen {
                addr: opts.http_address.clone(),
                source,
            })?;
        let http_addr = listener.local_addr().map_err(|source| StartError::Listen {
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
        tracing::info!("shutting down");
        self.state.shutdown.cancel();
        while self.tasks.join_next().await.is_some() {}
    }
}
