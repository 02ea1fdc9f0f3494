//! TLS to nsqd and nsqlookupd, with rustls and its `ring` provider: a
//! client configuration built from PEM files and go-nsq's option values.
//!
//! Upstream accepts `ssl3.0` to `tls1.3` as a minimum version; rustls speaks
//! TLS 1.2 and 1.3 only, so anything below 1.2 means 1.2.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme, SupportedProtocolVersion,
};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A TLS setting that cannot be used: a file that does not load, an unknown
/// option value, or a configuration rustls refuses.
///
/// ```
/// let err: nsq::tls::TlsError = "tls9".parse::<nsq::tls::TlsVersion>().unwrap_err();
/// assert!(err.to_string().contains("tls9"));
/// ```
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
///
/// ```
/// use nsq::tls::TlsVersion;
///
/// let version: TlsVersion = "TLS1.3".parse()?;
/// assert_eq!(version, TlsVersion::Tls13);
/// assert_eq!(version.to_string(), "tls1.3");
/// # Ok::<(), nsq::tls::TlsError>(())
/// ```
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
    pub fn protocol_versions(self) -> &'static [&'static SupportedProtocolVersion] {
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

/// What a TLS client is configured with, by go-nsq's option names.
///
/// ```no_run
/// use nsq::tls::{TlsClientOptions, TlsVersion};
///
/// let config = nsq::Config {
///     tls_v1: true,
///     tls: TlsClientOptions {
///         root_ca_file: Some("/etc/nsq/ca.pem".into()),
///         cert: Some("/etc/nsq/client.pem".into()),
///         key: Some("/etc/nsq/client.key".into()),
///         min_version: TlsVersion::Tls12,
///         ..TlsClientOptions::default()
///     },
///     ..nsq::Config::default()
/// };
/// // The files are read here, so that a bad path fails before connecting.
/// let producer = nsq::Producer::new("nsqd.internal:4150", config)?;
/// # Ok::<(), nsq::Error>(())
/// ```
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

/// `tls_insecure_skip_verify`: any server certificate is accepted, but the
/// handshake signature made with it is still checked.
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

    #[test]
    fn versions_by_upstream_names() {
        assert_eq!(TlsVersion::parse("TLS1.2").unwrap(), TlsVersion::Tls12);
        assert_eq!(TlsVersion::parse("ssl3.0").unwrap().go_number(), 0x0300);
        assert_eq!(TlsVersion::default().go_number(), 769);
        assert!(TlsVersion::parse("tls2").is_err());
        assert_eq!(TlsVersion::Tls11.protocol_versions().len(), 2);
        assert_eq!(TlsVersion::Tls13.protocol_versions().len(), 1);
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
        let half = TlsClientOptions {
            cert: Some("c.pem".into()),
            insecure_skip_verify: true,
            ..TlsClientOptions::default()
        };
        assert!(half.client_config().unwrap_err().0.contains("tls_key"));
        let missing = TlsClientOptions {
            root_ca_file: Some("/nonexistent/ca.pem".into()),
            ..TlsClientOptions::default()
        };
        assert!(missing
            .client_config()
            .unwrap_err()
            .0
            .contains("/nonexistent/ca.pem"));
    }
}
