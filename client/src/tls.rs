//! TLS for NSQ, with rustls and its `ring` provider: the configurations of
//! both sides built from PEM files and upstream's option values, and the
//! descriptions of a session that nsqd's `/stats` shows.
//!
//! Upstream accepts `ssl3.0` to `tls1.3` as a minimum version; rustls speaks
//! TLS 1.2 and 1.3 only, so anything below 1.2 means 1.2.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig,
    SignatureScheme, SupportedProtocolVersion,
};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use tokio_rustls::{TlsAcceptor, TlsConnector};

/// A TLS setting that cannot be used: a file that does not load, an unknown
/// option value, or a configuration rustls refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TlsError(pub String);

fn file_error(what: &str, path: &Path, e: impl fmt::Display) -> TlsError {
    TlsError(format!("{what} {}: {e}", path.display()))
}

/// The cryptography of every connection: rustls's `ring` provider.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Lowest TLS version a side accepts, by upstream's names (`tls1.2`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum TlsVersion {
    Ssl30,
    /// Upstream's default for nsqd's `--tls-min-version`.
    #[default]
    Tls10,
    Tls11,
    Tls12,
    Tls13,
}

impl TlsVersion {
    /// Parses upstream's spelling, case-insensitively: `ssl3.0`, `tls1.0` ..
    /// `tls1.3`.
    pub fn parse(text: &str) -> Result<TlsVersion, TlsError> {
        Ok(match text.to_ascii_lowercase().as_str() {
            "ssl3.0" => TlsVersion::Ssl30,
            "tls1.0" => TlsVersion::Tls10,
            "tls1.1" => TlsVersion::Tls11,
            "tls1.2" => TlsVersion::Tls12,
            "tls1.3" => TlsVersion::Tls13,
            _ => return Err(TlsError(format!("unknown tlsVersionOption {text:?}"))),
        })
    }

    /// Go's number for the version, as upstream's `/config/tls_min_version` shows it.
    pub fn go_number(self) -> u16 {
        match self {
            TlsVersion::Ssl30 => 0x0300,
            TlsVersion::Tls10 => 0x0301,
            TlsVersion::Tls11 => 0x0302,
            TlsVersion::Tls12 => 0x0303,
            TlsVersion::Tls13 => 0x0304,
        }
    }

    /// The versions rustls may negotiate: 1.2 and 1.3, or 1.3 alone.
    fn protocol_versions(self) -> &'static [&'static SupportedProtocolVersion] {
        static BOTH: [&SupportedProtocolVersion; 2] =
            [&rustls::version::TLS13, &rustls::version::TLS12];
        static ONLY_13: [&SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
        if self == TlsVersion::Tls13 {
            &ONLY_13
        } else {
            &BOTH
        }
    }
}

impl std::str::FromStr for TlsVersion {
    type Err = TlsError;
    fn from_str(s: &str) -> Result<Self, TlsError> {
        TlsVersion::parse(s)
    }
}

impl fmt::Display for TlsVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlsVersion::Ssl30 => "ssl3.0",
            TlsVersion::Tls10 => "tls1.0",
            TlsVersion::Tls11 => "tls1.1",
            TlsVersion::Tls12 => "tls1.2",
            TlsVersion::Tls13 => "tls1.3",
        })
    }
}

/// Whether a server asks clients for a certificate (`--tls-client-auth-policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuthPolicy {
    /// No client certificate is asked for.
    #[default]
    None,
    /// `require`: a certificate must be presented; it is not verified.
    Require,
    /// `require-verify`: a certificate signed by the root CA must be presented.
    RequireVerify,
}

impl ClientAuthPolicy {
    /// `""`, `require` or `require-verify`. Upstream treats any other value
    /// as no client authentication; we refuse it instead of guessing.
    pub fn parse(text: &str) -> Result<ClientAuthPolicy, TlsError> {
        match text {
            "" => Ok(ClientAuthPolicy::None),
            "require" => Ok(ClientAuthPolicy::Require),
            "require-verify" => Ok(ClientAuthPolicy::RequireVerify),
            other => Err(TlsError(format!(
                "unknown TLS client auth policy {other:?} (require or require-verify)"
            ))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ClientAuthPolicy::None => "",
            ClientAuthPolicy::Require => "require",
            ClientAuthPolicy::RequireVerify => "require-verify",
        }
    }
}

/// All certificates of a PEM file, in order.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error("certificate file", path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error("certificate file", path, e))?;
    if certs.is_empty() {
        return Err(file_error("certificate file", path, "no certificate in it"));
    }
    Ok(certs)
}

/// The first private key (PKCS#8, PKCS#1 or SEC1) of a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| file_error("key file", path, e))
}

/// Trust anchors: the certificates of `ca_file`, or the system's when none is given.
pub fn root_store(ca_file: Option<&Path>) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            for cert in load_certs(path)? {
                roots
                    .add(cert)
                    .map_err(|e| file_error("root CA file", path, e))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                return Err(TlsError(
                    "no system root certificates found; give a root CA file".into(),
                ));
            }
        }
    }
    Ok(roots)
}

/// What a TLS server (nsqd, nsqlookupd) is configured with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerTlsOptions {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Verifies client certificates under `require-verify`.
    pub root_ca_file: Option<PathBuf>,
    pub client_auth: ClientAuthPolicy,
    pub min_version: TlsVersion,
}

impl ServerTlsOptions {
    /// The rustls configuration, after loading and checking every file.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let provider = provider();
        let certs = load_certs(&self.cert)?;
        let key = load_key(&self.key)?;
        let verifier: Arc<dyn ClientCertVerifier> = match self.client_auth {
            ClientAuthPolicy::None => WebPkiClientVerifier::no_client_auth(),
            ClientAuthPolicy::Require => Arc::new(AnyClientCert(provider.clone())),
            ClientAuthPolicy::RequireVerify => {
                let roots = root_store(self.root_ca_file.as_deref())?;
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| TlsError(format!("client certificate verifier: {e}")))?
            }
        };
        let config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(self.min_version.protocol_versions())
            .map_err(|e| TlsError(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs, key)
            .map_err(|e| {
                TlsError(format!(
                    "certificate {} with key {}: {e}",
                    self.cert.display(),
                    self.key.display()
                ))
            })?;
        Ok(Arc::new(config))
    }
}

/// What a TLS client is configured with, by go-nsq's option names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsClientOptions {
    /// CA certificates that sign the server's certificate (`tls_root_ca_file`);
    /// `None` trusts the system's.
    pub root_ca_file: Option<PathBuf>,
    /// Client certificate and key for servers that ask for one (`tls_cert`, `tls_key`).
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// Accept any server certificate (`tls_insecure_skip_verify`). For tests only.
    pub insecure_skip_verify: bool,
    pub min_version: TlsVersion,
    /// The name the server's certificate must carry; by default the host of
    /// the address dialled, as go-nsq does.
    pub server_name: Option<String>,
}

impl TlsClientOptions {
    /// The rustls configuration, after loading and checking every file.
    pub fn client_config(&self) -> Result<Arc<ClientConfig>, TlsError> {
        let provider = provider();
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(self.min_version.protocol_versions())
            .map_err(|e| TlsError(e.to_string()))?;
        let builder = if self.insecure_skip_verify {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyServerCert(provider)))
        } else {
            builder.with_root_certificates(root_store(self.root_ca_file.as_deref())?)
        };
        let config = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => builder
                .with_client_auth_cert(load_certs(cert)?, load_key(key)?)
                .map_err(|e| {
                    TlsError(format!(
                        "client certificate {} with key {}: {e}",
                        cert.display(),
                        key.display()
                    ))
                })?,
            (None, None) => builder.with_no_client_auth(),
            _ => {
                return Err(TlsError(
                    "a client certificate needs both tls_cert and tls_key".into(),
                ))
            }
        };
        Ok(Arc::new(config))
    }

    /// The name to verify for a server dialled at `addr` (`host:port`).
    pub fn server_name_for(&self, addr: &str) -> Result<ServerName<'static>, TlsError> {
        let host = match &self.server_name {
            Some(name) => name.as_str(),
            None => host_of(addr),
        };
        ServerName::try_from(host.to_string())
            .map_err(|e| TlsError(format!("server name {host:?}: {e}")))
    }
}

/// The host part of `host:port`, without the brackets of an IPv6 literal.
fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// What `/stats` shows of a TLS session, with upstream's spellings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionInfo {
    /// `TLS1.2`, `TLS1.3`.
    pub version: String,
    /// The IANA name, e.g. `TLS_AES_128_GCM_SHA256`.
    pub cipher_suite: String,
    /// The ALPN protocol; NSQ clients negotiate none.
    pub negotiated_protocol: String,
    /// The subject common name of the peer's certificate, if it sent one.
    pub peer_common_name: String,
}

impl SessionInfo {
    pub fn of(conn: &rustls::CommonState) -> SessionInfo {
        SessionInfo {
            version: conn
                .protocol_version()
                .map_or_else(String::new, version_name),
            cipher_suite: conn
                .negotiated_cipher_suite()
                .map_or_else(String::new, |s| cipher_suite_name(s.suite())),
            negotiated_protocol: conn
                .alpn_protocol()
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .unwrap_or_default(),
            peer_common_name: conn
                .peer_certificates()
                .and_then(|certs| certs.first())
                .and_then(|cert| subject_common_name(cert))
                .unwrap_or_default(),
        }
    }
}

/// Upstream's name of a TLS version: `TLS1.2`, or `Unknown <n>`.
pub fn version_name(version: rustls::ProtocolVersion) -> String {
    match version {
        rustls::ProtocolVersion::TLSv1_0 => "TLS1.0".into(),
        rustls::ProtocolVersion::TLSv1_1 => "TLS1.1".into(),
        rustls::ProtocolVersion::TLSv1_2 => "TLS1.2".into(),
        rustls::ProtocolVersion::TLSv1_3 => "TLS1.3".into(),
        other => format!("Unknown {}", u16::from(other)),
    }
}

/// The IANA name of a cipher suite. (Upstream's table predates TLS 1.3 and
/// prints `Unknown <n>` for most suites rustls offers; names are more useful.)
pub fn cipher_suite_name(suite: rustls::CipherSuite) -> String {
    match suite.as_str() {
        Some(name) => match name.strip_prefix("TLS13_") {
            Some(rest) => format!("TLS_{rest}"),
            None => name.to_string(),
        },
        None => format!("Unknown {}", u16::from(suite)),
    }
}

/// The last common name (OID 2.5.4.3) in a certificate's subject, as Go's
/// `Subject.CommonName`. `None` for a malformed certificate or no CN.
pub fn subject_common_name(cert: &[u8]) -> Option<String> {
    const CN: &[u8] = &[0x55, 0x04, 0x03];
    let (_, cert, _) = der_read(cert)?;
    let (_, mut tbs, _) = der_read(cert)?;
    // TBSCertificate: [0] version (optional), serial, signature, issuer, validity, subject.
    if tbs.first() == Some(&0xa0) {
        tbs = der_read(tbs)?.2;
    }
    for _ in 0..4 {
        tbs = der_read(tbs)?.2;
    }
    let (tag, mut rdns, _) = der_read(tbs)?;
    if tag != 0x30 {
        return None;
    }
    let mut found = None;
    while !rdns.is_empty() {
        let (_, mut set, rest) = der_read(rdns)?;
        rdns = rest;
        while !set.is_empty() {
            let (_, attribute, rest) = der_read(set)?;
            set = rest;
            let (oid_tag, oid, value) = der_read(attribute)?;
            if oid_tag == 0x06 && oid == CN {
                let (_, text, _) = der_read(value)?;
                found = Some(String::from_utf8_lossy(text).into_owned());
            }
        }
    }
    found
}

/// One DER element: its tag, its contents and what follows it.
fn der_read(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |len, &b| (len << 8) | b as usize);
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// An HTTPS listener for `axum::serve`: TCP connections are accepted and
/// their handshakes run concurrently (a slow client delays no other), and
/// only completed TLS streams are handed to the server.
#[cfg(feature = "server")]
pub struct HttpsListener {
    streams: tokio::sync::mpsc::Receiver<(HttpsStream, std::net::SocketAddr)>,
    local: std::net::SocketAddr,
    accept_loop: tokio::task::JoinHandle<()>,
}

#[cfg(feature = "server")]
pub type HttpsStream = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;

#[cfg(feature = "server")]
impl HttpsListener {
    /// Handshakes in progress at once; more connections wait in the backlog.
    const MAX_HANDSHAKES: usize = 256;
    const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

    pub fn new(listener: tokio::net::TcpListener, acceptor: TlsAcceptor) -> HttpsListener {
        let local = listener
            .local_addr()
            .unwrap_or_else(|_| std::net::SocketAddr::from(([0, 0, 0, 0], 0)));
        let (done, streams) = tokio::sync::mpsc::channel(64);
        let slots = Arc::new(tokio::sync::Semaphore::new(Self::MAX_HANDSHAKES));
        let accept_loop = tokio::spawn(async move {
            loop {
                let Ok(slot) = slots.clone().acquire_owned().await else {
                    return;
                };
                let (tcp, peer) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::warn!(error = %e, "HTTPS: accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                let acceptor = acceptor.clone();
                let done = done.clone();
                tokio::spawn(async move {
                    let handshake =
                        tokio::time::timeout(Self::HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await;
                    drop(slot);
                    match handshake {
                        Ok(Ok(tls)) => {
                            let _ = done.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "HTTPS: TLS handshake failed")
                        }
                        Err(_) => tracing::debug!(%peer, "HTTPS: TLS handshake timed out"),
                    }
                });
            }
        });
        HttpsListener {
            streams,
            local,
            accept_loop,
        }
    }
}

#[cfg(feature = "server")]
impl Drop for HttpsListener {
    fn drop(&mut self) {
        self.accept_loop.abort();
    }
}

#[cfg(feature = "server")]
impl axum::serve::Listener for HttpsListener {
    type Io = HttpsStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.streams.recv().await {
            Some(accepted) => accepted,
            // The accept loop only ends with the listener itself.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// The handshake-signature checks of both lenient verifiers: only the
/// certificate is taken on trust, never the signature made with it.
macro_rules! handshake_signature_checks {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls12_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls13_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    };
}

/// `require`: any client certificate is accepted, as Go's
/// `RequireAnyClientCert`, but the handshake signature is still checked.
#[derive(Debug)]
struct AnyClientCert(Arc<CryptoProvider>);

impl ClientCertVerifier for AnyClientCert {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    handshake_signature_checks!();
}

/// `tls_insecure_skip_verify`: any server certificate is accepted.
#[derive(Debug)]
struct AnyServerCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    handshake_signature_checks!();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_with_cn(cn: &str) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "nsq tests");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn reads_the_subject_common_name() {
        assert_eq!(
            subject_common_name(&cert_with_cn("worker-7")).as_deref(),
            Some("worker-7")
        );
        let der = cert_with_cn("x");
        for cut in 0..der.len() {
            // Any truncation is an answer or None, never a panic.
            let _ = subject_common_name(&der[..cut]);
        }
        assert_eq!(subject_common_name(b"\x30\x84\xff\xff\xff\xff"), None);
    }

    #[test]
    fn versions_and_policies_by_upstream_names() {
        assert_eq!(TlsVersion::parse("TLS1.2").unwrap(), TlsVersion::Tls12);
        assert_eq!(TlsVersion::parse("ssl3.0").unwrap().go_number(), 0x0300);
        assert_eq!(TlsVersion::default().go_number(), 769);
        assert!(TlsVersion::parse("tls2").is_err());
        assert_eq!(TlsVersion::Tls11.protocol_versions().len(), 2);
        assert_eq!(TlsVersion::Tls13.protocol_versions().len(), 1);
        assert_eq!(
            ClientAuthPolicy::parse("require-verify").unwrap(),
            ClientAuthPolicy::RequireVerify
        );
        assert!(ClientAuthPolicy::parse("maybe").is_err());
        assert_eq!(
            cipher_suite_name(rustls::CipherSuite::TLS13_AES_128_GCM_SHA256),
            "TLS_AES_128_GCM_SHA256"
        );
        assert_eq!(
            cipher_suite_name(rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256),
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
        );
        assert_eq!(version_name(rustls::ProtocolVersion::TLSv1_3), "TLS1.3");
    }

    #[test]
    fn server_names_from_addresses() {
        let opts = TlsClientOptions::default();
        assert_eq!(
            opts.server_name_for("127.0.0.1:4150").unwrap(),
            ServerName::try_from("127.0.0.1").unwrap()
        );
        assert_eq!(
            opts.server_name_for("[::1]:4150").unwrap(),
            ServerName::try_from("::1").unwrap()
        );
        assert!(opts.server_name_for("nsqd.example:4150").is_ok());
        let named = TlsClientOptions {
            server_name: Some("nsqd.internal".into()),
            ..TlsClientOptions::default()
        };
        assert_eq!(
            named.server_name_for("10.0.0.1:4150").unwrap(),
            ServerName::try_from("nsqd.internal").unwrap()
        );
    }

    #[test]
    fn missing_files_are_clear_errors() {
        let err = ServerTlsOptions {
            cert: "/nonexistent/cert.pem".into(),
            key: "/nonexistent/key.pem".into(),
            ..ServerTlsOptions::default()
        }
        .server_config()
        .unwrap_err();
        assert!(err.0.contains("/nonexistent/cert.pem"), "{err}");
        let half = TlsClientOptions {
            cert: Some("c.pem".into()),
            insecure_skip_verify: true,
            ..TlsClientOptions::default()
        };
        assert!(half.client_config().unwrap_err().0.contains("tls_key"));
    }
}
