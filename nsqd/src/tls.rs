//! nsqd's TLS options as rustls configurations: the server side of TCP
//! upgrades and HTTPS, TLS to lookupds, and the HTTP clients of auth servers
//! and lookupds' HTTP APIs.

use crate::options::{Options, TlsVersion};
use nsq::tls::{TlsClientOptions, TlsError};
use nsq::HttpPool;
use nsq_daemon::tls::{ServerTlsOptions, TlsAcceptor};
use std::path::PathBuf;
use tokio_rustls::TlsConnector;

fn path(text: &str) -> Option<PathBuf> {
    (!text.is_empty()).then(|| PathBuf::from(text))
}

/// The acceptor of TCP upgrades and HTTPS; `None` without `--tls-cert`.
pub fn acceptor(opts: &Options) -> Result<Option<TlsAcceptor>, TlsError> {
    if opts.tls_cert.is_empty() {
        return Ok(None);
    }
    let config = ServerTlsOptions {
        cert: opts.tls_cert.clone().into(),
        key: opts.tls_key.clone().into(),
        root_ca_file: path(&opts.tls_root_ca_file),
        client_auth: opts.tls_client_auth_policy,
        min_version: opts.tls_min_version,
    }
    .server_config()?;
    Ok(Some(TlsAcceptor::from(config)))
}

/// How nsqd dials lookupds with `--lookupd-tls`.
#[derive(Clone)]
pub struct LookupdTls {
    pub connector: TlsConnector,
    pub options: TlsClientOptions,
}

pub fn lookupd(opts: &Options) -> Result<Option<LookupdTls>, TlsError> {
    if !opts.lookupd_tls {
        return Ok(None);
    }
    let options = TlsClientOptions {
        root_ca_file: path(&opts.lookupd_tls_root_ca_file),
        cert: path(&opts.lookupd_tls_cert),
        key: path(&opts.lookupd_tls_key),
        min_version: TlsVersion::Tls12,
        ..TlsClientOptions::default()
    };
    let connector = TlsConnector::from(options.client_config()?);
    Ok(Some(LookupdTls { connector, options }))
}

/// The CA of `--tls-root-ca-file`, which HTTPS auth servers and lookupds
/// must be signed by; `None` for the system's roots.
fn trusted_servers(opts: &Options) -> Option<TlsClientOptions> {
    path(&opts.tls_root_ca_file).map(|ca| TlsClientOptions {
        root_ca_file: Some(ca),
        min_version: opts.tls_min_version,
        ..TlsClientOptions::default()
    })
}

/// The HTTP client of auth servers: upstream's timeouts and trusted CA.
pub fn http_client(opts: &Options) -> Result<reqwest::Client, TlsError> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(opts.http_client_connect_timeout)
        .timeout(opts.http_client_request_timeout);
    if let Some(tls) = trusted_servers(opts) {
        builder = builder.use_preconfigured_tls((*tls.client_config()?).clone());
    }
    builder
        .build()
        .map_err(|e| TlsError(format!("HTTP client: {e}")))
}

/// The HTTP client of lookupds' APIs, with the same timeouts and CA.
pub fn lookupd_http(opts: &Options) -> Result<HttpPool, TlsError> {
    let (connect, request) = (
        opts.http_client_connect_timeout,
        opts.http_client_request_timeout,
    );
    match trusted_servers(opts) {
        Some(tls) => HttpPool::with_tls(connect, request, &tls),
        None => Ok(HttpPool::new(connect, request)),
    }
}
