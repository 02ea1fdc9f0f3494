//! The server side of TLS for nsqd and nsqlookupd: the rustls configuration
//! from PEM files and upstream's option values, an HTTPS listener, and the
//! descriptions of a session that nsqd's `/stats` shows. The files, versions
//! and provider are the client's ([`nsq::tls`]).

use nsq::tls::{load_certs, load_key, provider, root_store, TlsError, TlsVersion};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme};
use std::path::PathBuf;
use std::sync::Arc;

pub use tokio_rustls::TlsAcceptor;

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

impl std::str::FromStr for ClientAuthPolicy {
    type Err = TlsError;
    fn from_str(text: &str) -> Result<ClientAuthPolicy, TlsError> {
        ClientAuthPolicy::parse(text)
    }
}

impl std::fmt::Display for ClientAuthPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// As upstream's `/config/tls_client_auth_policy` shows it: the flag's text.
impl serde::Serialize for ClientAuthPolicy {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
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
pub struct HttpsListener {
    streams: tokio::sync::mpsc::Receiver<(HttpsStream, std::net::SocketAddr)>,
    local: std::net::SocketAddr,
    accept_loop: tokio::task::JoinHandle<()>,
}

pub type HttpsStream = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;

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

impl Drop for HttpsListener {
    fn drop(&mut self) {
        self.accept_loop.abort();
    }
}

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
    fn policies_and_session_names_as_upstream_spells_them() {
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
    fn missing_files_are_clear_errors() {
        let err = ServerTlsOptions {
            cert: "/nonexistent/cert.pem".into(),
            key: "/nonexistent/key.pem".into(),
            ..ServerTlsOptions::default()
        }
        .server_config()
        .unwrap_err();
        assert!(err.0.contains("/nonexistent/cert.pem"), "{err}");
    }
}
