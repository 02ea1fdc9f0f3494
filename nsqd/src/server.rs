//! An nsqd inside a process (the binary and the tests use the same): binds
//! the listeners, builds the [`Node`], starts its tasks, and stops them all.

use crate::diskqueue::DiskConfig;
use crate::log::{LogWriter, SyncPolicy};
use crate::metadata;
use crate::node::{Node, NodeSetup};
use crate::options::{ClientAuthPolicy, Options, TlsRequired};
use nsq_daemon::logging::LogLevelHook;
use nsq_daemon::tcp::{Listener, LocalAddr};
use std::fs::File;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::task::JoinSet;

/// A running nsqd. Dropping it does not stop it; call [`Nsqd::shutdown`].
pub struct Nsqd {
    node: Arc<Node>,
    tasks: JoinSet<()>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid options: {0}")]
    Options(String),
    #[error(transparent)]
    Listen(#[from] nsq_daemon::tcp::ListenError),
    #[error("data path {path}: {source}")]
    DataPath {
        path: String,
        source: std::io::Error,
    },
    #[error("failed to build TLS config - {0}")]
    Tls(#[from] nsq::tls::TlsError),
}

impl Nsqd {
    /// Binds the listeners and starts serving.
    pub async fn start(opts: Options) -> Result<Nsqd, StartError> {
        Self::start_with_log_hook(opts, None).await
    }

    pub async fn start_with_log_hook(
        mut opts: Options,
        log_level_hook: Option<LogLevelHook>,
    ) -> Result<Nsqd, StartError> {
        opts.validate().map_err(StartError::Options)?;
        // As upstream: asking for client certificates makes TLS required.
        if opts.tls_client_auth_policy != ClientAuthPolicy::None
            && opts.tls_required == TlsRequired::No
        {
            opts.tls_required = TlsRequired::Yes;
        }
        let tls = crate::tls::acceptor(&opts)?;
        let lookupd_tls = crate::tls::lookupd(&opts)?;
        let auth_http = crate::tls::http_client(&opts)?;
        let lookupd_http = crate::tls::lookupd_http(&opts)?;
        // TCP and HTTP listen on a unix socket when their address is a path.
        let listen = nsq_daemon::tcp::listen_tcp_or_unix;
        let tcp = listen("TCP", &opts.tcp_address).await?;
        let http = match opts.http_address.as_str() {
            "" => None,
            addr => Some(listen("HTTP", addr).await?),
        };
        let https = match (&tls, opts.https_address.as_str()) {
            (Some(_), addr) if !addr.is_empty() => {
                Some(nsq_daemon::tcp::listen("HTTPS", addr).await?)
            }
            _ => None,
        };
        // Upstream expands the statsd prefix once, and `/config` shows it so.
        let http_port = match (opts.broadcast_http_port, &http) {
            (0, Some(l)) => l.local_addr().port().unwrap_or(0),
            (port, _) => port,
        };
        opts.statsd_prefix =
            crate::statsd::expand_prefix(&opts.statsd_prefix, &opts.broadcast_address, http_port);
        let data_dir = if opts.data_path.as_os_str().is_empty() {
            std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."))
        } else {
            opts.data_path.clone()
        };
        let data_err = |source| StartError::DataPath {
            path: data_dir.display().to_string(),
            source,
        };
        // As upstream, which fails reading `nsqd.dat` inside it: create_dir_all
        // alone would say "File exists".
        if data_dir.exists() && !data_dir.is_dir() {
            return Err(data_err(std::io::Error::new(
                std::io::ErrorKind::NotADirectory,
                "not a directory",
            )));
        }
        std::fs::create_dir_all(&data_dir).map_err(data_err)?;
        let dir_lock = File::create(data_dir.join("nsqd.lock")).map_err(data_err)?;
        dir_lock.try_lock().map_err(|e| {
            data_err(std::io::Error::other(format!(
                "locked by another nsqd? ({e})"
            )))
        })?;
        let disk = DiskConfig {
            dir: data_dir.clone(),
            max_bytes_per_file: opts.max_bytes_per_file.max(1) as u64,
            sync_every: opts.sync_every.max(1) as u64,
            max_msg_size: opts.max_msg_size as u64,
            unsynced: Default::default(),
        };
        let imported = metadata::import_upstream_queues(&disk).map_err(data_err)?;
        // Log mode: one writer thread for every topic's log; durable (group
        // commit, an OK after the fsync) with `--sync-every=1`.
        let log_writer = match opts.mem_queue_size {
            0 => Some(Arc::new(
                LogWriter::start(SyncPolicy {
                    sync_every: opts.sync_every.max(1) as u64,
                    sync_timeout: opts.sync_timeout,
                })
                .map_err(data_err)?,
            )),
            _ => None,
        };
        let uid = metadata::load_or_create_uid(&data_dir).map_err(data_err)?;
        let replicas = match &log_writer {
            Some(writer) => Some(Arc::new(
                crate::replica::Replicas::open(
                    &data_dir,
                    writer.clone(),
                    crate::log::LogConfig::new(disk.max_bytes_per_file, disk.max_msg_size),
                )
                .map_err(data_err)?,
            )),
            None => None,
        };
        if imported > 0 {
            tracing::info!(
                messages = imported,
                "imported the backlog of an upstream nsqd data directory"
            );
        }
        let bound =
            |l: &tokio::net::TcpListener| l.local_addr().expect("bound socket has an address");
        let node = Node::new(NodeSetup {
            tcp_addr: tcp.local_addr(),
            http_addr: http.as_ref().map(Listener::local_addr),
            https_addr: https.as_ref().map(bound),
            tls,
            lookupd_tls,
            lookupd_http,
            auth_http,
            disk,
            log_writer,
            dir_lock,
            log_level_hook,
            uid,
            replicas,
            opts,
        });
        node.restore().await.map_err(data_err)?;
        node.persist_metadata().map_err(data_err)?;
        node.start_replication();
        if !node.opts.nsqlookupd_tcp_addresses.is_empty() {
            // nsqd on a unix socket announces port 0 unless told otherwise.
            let identity = node.peer_identity();
            for (listener, port) in [("tcp", identity.tcp_port), ("http", identity.http_port)] {
                if port == 0 {
                    tracing::warn!(
                        "{} listens on a unix socket and announces port 0, which nsqlookupd \
                         refuses; give --broadcast-{listener}-port",
                        listener.to_ascii_uppercase()
                    );
                }
            }
        }
        node.lookup
            .set_addresses(node.opts.nsqlookupd_tcp_addresses.clone());
        let mut tasks = JoinSet::new();
        tasks.spawn(node.clone().housekeeping());
        if let Some(replicas) = node.replicas.clone() {
            tasks.spawn(replicas.run_retention(node.shutdown_token()));
            let after = node.opts.replica_promote_after;
            if !after.is_zero() {
                tasks.spawn(node.clone().promote_when_away(after));
            }
        }
        if !node.opts.statsd_address.is_empty() {
            tracing::info!(address = %node.opts.statsd_address, "STATSD: pushing every {:?}", node.opts.statsd_interval);
            tasks.spawn(crate::statsd::run(node.clone()));
        }
        tracing::info!(address = %node.tcp_addr, "TCP: listening");
        tasks.spawn(crate::tcp::serve(node.clone(), tcp));
        if let Some(http) = http {
            tracing::info!(address = %http.local_addr(), "HTTP: listening");
            tasks.spawn(crate::http::serve(node.clone(), http));
        }
        if let (Some(https), Some(tls)) = (https, node.tls.clone()) {
            tracing::info!(address = %bound(&https), "HTTPS: listening");
            let listener = nsq_daemon::tls::HttpsListener::new(https, tls);
            tasks.spawn(crate::http::serve_https(node.clone(), listener));
        }
        Ok(Nsqd { node, tasks })
    }

    /// The TCP address. Panics when nsqd listens on a unix socket: see
    /// [`Nsqd::tcp_listen_addr`].
    pub fn tcp_addr(&self) -> SocketAddr {
        match &self.node.tcp_addr {
            LocalAddr::Tcp(addr) => *addr,
            LocalAddr::Unix(path) => panic!("nsqd listens on the unix socket {}", path.display()),
        }
    }

    /// The HTTP address; `None` when HTTP is disabled or on a unix socket.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        match &self.node.http_addr {
            Some(LocalAddr::Tcp(addr)) => Some(*addr),
            _ => None,
        }
    }

    /// Where TCP clients connect: an address or a unix socket's path.
    pub fn tcp_listen_addr(&self) -> &LocalAddr {
        &self.node.tcp_addr
    }

    /// Where HTTP clients connect, when HTTP is enabled.
    pub fn http_listen_addr(&self) -> Option<&LocalAddr> {
        self.node.http_addr.as_ref()
    }

    pub fn https_addr(&self) -> Option<SocketAddr> {
        self.node.https_addr
    }

    /// Stops accepting, closes every connection and waits for the listeners.
    pub async fn shutdown(mut self) {
        tracing::info!("nsqd: shutting down");
        self.node.begin_shutdown();
        while self.tasks.join_next().await.is_some() {}
        let node = self.node.clone();
        let saved = tokio::task::spawn_blocking(move || node.save_state()).await;
        match saved {
            Ok(Ok(())) => tracing::info!("state saved"),
            Ok(Err(e)) => tracing::error!(error = %e, "failed to write nsqd.dat"),
            Err(e) => tracing::error!(error = %e, "saving state panicked"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::TempDir;

    fn options(dir: &TempDir) -> Options {
        Options {
            tcp_address: "127.0.0.1:0".into(),
            http_address: "127.0.0.1:0".into(),
            https_address: "127.0.0.1:0".into(),
            broadcast_address: "127.0.0.1".into(),
            data_path: dir.path().to_path_buf(),
            ..Options::default()
        }
    }

    async fn refusal(opts: Options) -> String {
        match Nsqd::start(opts).await {
            Ok(nsqd) => {
                nsqd.shutdown().await;
                panic!("nsqd started");
            }
            Err(e) => e.to_string(),
        }
    }

    #[tokio::test]
    async fn a_data_path_naming_a_file_is_not_a_directory() {
        let dir = TempDir::new("data-file");
        let file = dir.path().join("nsqd-data");
        std::fs::write(&file, b"").unwrap();
        let err = refusal(Options {
            data_path: file.clone(),
            ..options(&dir)
        })
        .await;
        assert_eq!(
            err,
            format!("data path {}: not a directory", file.display())
        );
    }

    #[tokio::test]
    async fn a_taken_port_is_named_by_its_listener() {
        let dir = TempDir::new("taken-port");
        let pem = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&cert, pem.cert.pem()).unwrap();
        std::fs::write(&key, pem.key_pair.serialize_pem()).unwrap();
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap().to_string();
        let tls = Options {
            tls_cert: cert.display().to_string(),
            tls_key: key.display().to_string(),
            ..options(&dir)
        };
        let cases = [
            (
                "TCP",
                Options {
                    tcp_address: addr.clone(),
                    ..options(&dir)
                },
            ),
            (
                "HTTP",
                Options {
                    http_address: addr.clone(),
                    ..options(&dir)
                },
            ),
            (
                "HTTPS",
                Options {
                    https_address: addr.clone(),
                    ..tls
                },
            ),
        ];
        for (listener, opts) in cases {
            let err = refusal(opts).await;
            let expected = format!("{listener}: failed to listen on {addr}: ");
            assert!(err.starts_with(&expected), "{err}");
        }
    }
}
