//! TLS to PostgreSQL (`POSTGRES_SSLMODE`, or `sslmode` in DATABASE_URL), through rustls and
//! tokio-postgres-rustls. The automaton never accepts a certificate it cannot verify:
//! `require` and `verify-ca` check the chain against `POSTGRES_SSLROOTCERT` (or the
//! webpki roots when none is given) without the host name, as libpq's `verify-ca` does;
//! `verify-full` checks the host name too. `disable` (the default) connects in plain text.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

/// How the connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Plain text.
    Disable,
    /// TLS; the certificate chain is verified, the host name is not (`require`, `verify-ca`).
    VerifyCa,
    /// TLS; the chain and the host name are verified.
    VerifyFull,
}

impl SslMode {
    /// libpq's names. `prefer` and `allow` would fall back to plain text on a failed
    /// handshake, silently: they are refused, pick `disable` or `require`.
    pub fn parse(text: &str) -> Result<SslMode, String> {
        match text.trim() {
            "disable" => Ok(SslMode::Disable),
            "require" | "verify-ca" => Ok(SslMode::VerifyCa),
            "verify-full" => Ok(SslMode::VerifyFull),
            other => Err(format!(
                "sslmode `{other}`: expected `disable`, `require`, `verify-ca` or `verify-full` (`prefer` and `allow` would fall back to plain text silently)"
            )),
        }
    }
}

/// What the connector needs: the mode and, optionally, the CA file to trust.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    pub mode: SslMode,
    pub root_cert: Option<PathBuf>,
}

impl Tls {
    /// The connector, or `None` for plain text. Errors name the CA file.
    pub fn connector(&self) -> Result<Option<MakeRustlsConnect>, String> {
        if self.mode == SslMode::Disable {
            return Ok(None);
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let roots = Arc::new(self.roots()?);
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?;
        let config = match self.mode {
            SslMode::VerifyFull => builder.with_root_certificates(roots).with_no_client_auth(),
            _ => {
                let inner = WebPkiServerVerifier::builder_with_provider(roots, provider)
                    .build()
                    .map_err(|e| format!("TLS: {e}"))?;
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(ChainOnly { inner }))
                    .with_no_client_auth()
            }
        };
        Ok(Some(MakeRustlsConnect::new(config)))
    }

    fn roots(&self) -> Result<RootCertStore, String> {
        crate::clients::roots::root_store(self.root_cert.as_deref(), "POSTGRES_SSLROOTCERT")
    }
}

/// `verify-ca`: the whole webpki verification, except that a certificate for another name
/// is accepted (managed databases are often reached through an address the certificate
/// does not name).
#[derive(Debug)]
struct ChainOnly {
    inner: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
