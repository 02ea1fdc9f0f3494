//! Helpers for the end-to-end tests in `tests/tests/e2e/`: start daemons on
//! loopback port 0 and talk to them over real sockets, as clients do.

use std::time::Duration;

mod admin;
mod capture;
mod conn;
mod http;
mod netns;
mod pki;
mod process;
mod temp;
mod v1;

pub use admin::{admin_options, create_channel, notification_sink, AdminCluster};
pub use capture::*;
pub use conn::{body_of, consumer, Conn};
pub use http::*;
pub use netns::Netns;
pub use nsqd::{Nsqd, Options};
pub use pki::TestPki;
pub use process::*;
pub use temp::{temp_dir, TempDir};
pub use v1::*;

/// Options for a test nsqd: loopback, port 0, a fresh data directory (removed
/// when the test process exits, see [`TempDir`]).
pub fn test_options() -> Options {
    Options {
        tcp_address: "127.0.0.1:0".into(),
        http_address: "127.0.0.1:0".into(),
        broadcast_address: "127.0.0.1".into(),
        data_path: temp_dir("nsqd").into_path(),
        ..Options::default()
    }
}

/// Starts nsqd. A fixed port (a restart on the same address) that is in
/// use is tried again for a few seconds: tests running at once take
/// ephemeral ports, and one may hold it for a moment.
pub async fn start_nsqd(opts: Options) -> Nsqd {
    let fixed = [&opts.tcp_address, &opts.http_address]
        .iter()
        .any(|a| !a.ends_with(":0") && a.contains(':'));
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match Nsqd::start(opts.clone()).await {
            Ok(nsqd) => return nsqd,
            Err(e)
                if fixed
                    && tokio::time::Instant::now() < deadline
                    && e.to_string().contains("in use") =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("nsqd starts: {e:?}"),
        }
    }
}

pub async fn start_default_nsqd() -> Nsqd {
    start_nsqd(test_options()).await
}

/// How long a test waits for something that should happen.
pub const PATIENCE: Duration = Duration::from_secs(5);

/// Waits until `check` holds, polling; panics after `PATIENCE`.
pub async fn eventually<F, Fut>(what: &str, check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    eventually_within(what, PATIENCE, check).await
}

/// Waits until `check` holds, polling; panics after `limit`.
pub async fn eventually_within<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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

/// A loopback port that was free a moment ago, for a daemon that must
/// restart on the same address.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
