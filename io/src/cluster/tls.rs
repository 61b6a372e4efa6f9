//! TLS to Redis (`rediss://`): the connection dialled through [`Net`](crate::net::Net)
//! is wrapped in a rustls client session (ring), so TLS works over any network,
//! the simulated one included. The server's certificate is checked against the
//! Mozilla roots (`webpki-roots`), or against the certificates of `--redis-ca-file`
//! alone (a Redis with a certificate of its own CA).

use std::sync::Arc;

use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

/// How a `rediss://` connection checks the server.
#[derive(Clone, Debug)]
pub struct RedisTls {
    config: Arc<ClientConfig>,
}

impl RedisTls {
    /// Checks servers against the Mozilla roots.
    pub fn public_roots() -> Result<RedisTls, String> {
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        RedisTls::with_roots(roots)
    }

    /// Checks servers against the certificates of the PEM text `pem` alone.
    pub fn from_ca_pem(pem: &[u8]) -> Result<RedisTls, String> {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|error| format!("not a PEM certificate: {error}"))?;
            roots
                .add(cert)
                .map_err(|error| format!("unusable CA certificate: {error}"))?;
        }
        if roots.is_empty() {
            return Err("no certificate in it".to_owned());
        }
        RedisTls::with_roots(roots)
    }

    fn with_roots(roots: RootCertStore) -> Result<RedisTls, String> {
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|error| format!("TLS: {error}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(RedisTls {
            config: Arc::new(config),
        })
    }

    /// Runs the TLS handshake with `host` over `stream`.
    pub async fn connect<S>(
        &self,
        host: &str,
        stream: S,
    ) -> Result<tokio_rustls::client::TlsStream<S>, String>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let name = ServerName::try_from(host.trim_start_matches('[').trim_end_matches(']'))
            .map_err(|error| format!("{host:?} is not a TLS server name: {error}"))?
            .to_owned();
        TlsConnector::from(self.config.clone())
            .connect(name, stream)
            .await
            .map_err(|error| format!("TLS handshake with {host}: {error}"))
    }
}
