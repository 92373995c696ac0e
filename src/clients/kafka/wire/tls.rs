//! TLS to the brokers (`KAFKA_SECURITY_PROTOCOL=ssl|sasl_ssl`), through rustls with the ring
//! provider the other clients use. The chain is verified against `KAFKA_SSL_CA_LOCATION`
//! (else the webpki roots) and the certificate must name the broker's host, as librdkafka's
//! default `ssl.endpoint.identification.algorithm=https` does.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::WireError;

/// A client configuration, built once from the settings.
#[derive(Clone)]
pub struct TlsConfig {
    connector: TlsConnector,
}

impl TlsConfig {
    /// Errors name the CA file.
    pub fn new(ca: Option<&Path>) -> Result<TlsConfig, String> {
        let roots = crate::clients::roots::root_store(ca, "KAFKA_SSL_CA_LOCATION")?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(TlsConfig {
            connector: TlsConnector::from(Arc::new(config)),
        })
    }

    /// The handshake with the broker at `addr` (`host:port`), within `timeout`.
    pub(super) async fn wrap(
        &self,
        addr: &str,
        tcp: TcpStream,
        timeout: Duration,
    ) -> Result<TlsStream<TcpStream>, WireError> {
        let failed = |reason: String| WireError::Tls {
            addr: addr.to_owned(),
            reason,
        };
        let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let name = ServerName::try_from(host.to_owned()).map_err(|e| failed(e.to_string()))?;
        match tokio::time::timeout(timeout, self.connector.connect(name, tcp)).await {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(e)) => Err(failed(e.to_string())),
            Err(_) => Err(failed(format!("no handshake within {timeout:?}"))),
        }
    }
}
