//! Certificates for the TLS tests, made at test time.

use crate::{temp_dir, test_options, Options, TempDir};
use std::path::PathBuf;

/// A certificate authority and certificates made at test time (rcgen), as
/// PEM files in a fresh directory: a server certificate for `127.0.0.1` and
/// `localhost`, a client certificate (CN `test-client`) from the same CA, and
/// a self-signed client certificate (CN `rogue`) that the CA never signed.
pub struct TestPki {
    /// Removed, with the files, when the `TestPki` is dropped.
    pub dir: TempDir,
    pub ca_cert: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    pub rogue_cert: PathBuf,
    pub rogue_key: PathBuf,
}

impl TestPki {
    pub fn new() -> TestPki {
        use rcgen::{
            BasicConstraints, CertificateParams, DistinguishedName, DnType,
            ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
        };
        let dir = temp_dir("pki");
        let named = |sans: &[&str], cn: &str| {
            let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
            let mut params = CertificateParams::new(sans).expect("certificate params");
            params.distinguished_name = DistinguishedName::new();
            params.distinguished_name.push(DnType::CommonName, cn);
            params
        };
        let write = |name: &str, pem: String| {
            let path = dir.join(name);
            std::fs::write(&path, pem).expect("write PEM");
            path
        };
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca = named(&[], "nsq test CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = ca.self_signed(&ca_key).expect("CA certificate");
        let leaf = |sans: &[&str], cn: &str, usage: ExtendedKeyUsagePurpose| {
            let key = KeyPair::generate().expect("key");
            let mut params = named(sans, cn);
            params.extended_key_usages = vec![usage];
            let cert = params.signed_by(&key, &ca, &ca_key).expect("certificate");
            (cert.pem(), key.serialize_pem())
        };
        let (server, server_key) = leaf(
            &["127.0.0.1", "localhost"],
            "nsqd",
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let (client, client_key) = leaf(&[], "test-client", ExtendedKeyUsagePurpose::ClientAuth);
        let rogue_key = KeyPair::generate().expect("key");
        let rogue = named(&[], "rogue").self_signed(&rogue_key).expect("rogue");
        TestPki {
            ca_cert: write("ca.pem", ca.pem()),
            server_cert: write("server.pem", server),
            server_key: write("server.key", server_key),
            client_cert: write("client.pem", client),
            client_key: write("client.key", client_key),
            rogue_cert: write("rogue.pem", rogue.pem()),
            rogue_key: write("rogue.key", rogue_key.serialize_pem()),
            dir,
        }
    }

    /// Trusts the test CA; with `cert`, shows the client certificate.
    pub fn client_tls(&self, cert: bool) -> nsq::tls::TlsClientOptions {
        nsq::tls::TlsClientOptions {
            root_ca_file: Some(self.ca_cert.clone()),
            cert: cert.then(|| self.client_cert.clone()),
            key: cert.then(|| self.client_key.clone()),
            ..Default::default()
        }
    }

    /// Options for a test nsqd with this PKI's server certificate and an
    /// HTTPS listener on loopback port 0.
    pub fn nsqd_options(&self) -> Options {
        Options {
            tls_cert: self.server_cert.display().to_string(),
            tls_key: self.server_key.display().to_string(),
            https_address: "127.0.0.1:0".into(),
            ..test_options()
        }
    }
}

impl TestPki {
    /// As [`TestPki::nsqd_options`], and nsqd demands a client certificate
    /// signed by this PKI's CA (mutual TLS).
    pub fn nsqd_options_verifying_clients(&self) -> Options {
        Options {
            tls_client_auth_policy: nsq_daemon::tls::ClientAuthPolicy::RequireVerify,
            tls_root_ca_file: self.ca_cert.display().to_string(),
            ..self.nsqd_options()
        }
    }
}

impl Default for TestPki {
    fn default() -> Self {
        TestPki::new()
    }
}
