//! Helpers for the end-to-end tests in `tests/tests/`: start daemons on
//! loopback port 0 and talk to them over real sockets, as clients do.

use std::path::PathBuf;
use std::time::Duration;

mod conn;
mod http;
mod pki;
mod process;

pub use conn::{consumer, Conn};
pub use http::*;
pub use nsqd::{Nsqd, Options};
pub use pki::TestPki;
pub use process::*;

/// Options for a test nsqd: loopback, port 0, a fresh data directory.
pub fn test_options() -> Options {
    Options {
        tcp_address: "127.0.0.1:0".into(),
        http_address: "127.0.0.1:0".into(),
        broadcast_address: "127.0.0.1".into(),
        data_path: temp_dir("nsqd"),
        ..Options::default()
    }
}

/// A fresh directory under the system temp dir.
pub fn temp_dir(prefix: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

pub async fn start_nsqd(opts: Options) -> Nsqd {
    Nsqd::start(opts).await.expect("nsqd starts")
}

pub async fn start_default_nsqd() -> Nsqd {
    start_nsqd(test_options()).await
}

/// How long a test waits for something that should happen.
pub const PATIENCE: Duration = Duration::from_secs(5);

/// Waits until `check` holds, polling; panics after `PATIENCE`.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Path of an upstream v1.3.0 capture under `tests/fixtures/nsq-samples`.
pub fn sample_path(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/nsq-samples")
        .join(relative)
}

/// An nsqlookupd on loopback, port 0.
pub async fn start_lookupd() -> nsqlookupd::Lookupd {
    nsqlookupd::Lookupd::start(nsqlookupd::Options {
        tcp_address: "127.0.0.1:0".into(),
        http_address: "127.0.0.1:0".into(),
        broadcast_address: "127.0.0.1".into(),
        ..nsqlookupd::Options::default()
    })
    .await
    .expect("nsqlookupd starts")
}

/// Options for a test nsqd that registers with `lookupds`.
pub fn options_with_lookupds(lookupds: &[&nsqlookupd::Lookupd]) -> Options {
    let mut opts = test_options();
    opts.nsqlookupd_tcp_addresses = lookupds.iter().map(|l| l.tcp_addr().to_string()).collect();
    opts
}
