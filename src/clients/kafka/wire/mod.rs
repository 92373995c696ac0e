//! One connection to one Kafka broker, speaking the wire protocol through the
//! `kafka-protocol` crate's message types: TCP (with TLS for `ssl`/`sasl_ssl`), ApiVersions
//! to learn which versions the broker speaks, then SASL when configured. Requests are sent
//! one at a time (a lag collection sends a handful per broker and tick), each bounded by
//! `KAFKA_TIMEOUT`; any failure drops the connection and the next request dials again.
//!
//! Our own client instead of librdkafka: lag reads need a group coordinator lookup for many
//! groups at once (FindCoordinator v4) and the committed offsets of many groups in one
//! request (OffsetFetch v8), which librdkafka 2.12 cannot send (one group per request, and
//! about 11 cached coordinators); and a daemon that reads offsets does not need a consumer
//! runtime of several threads and its own TLS library.

mod sasl;
mod tls;

use std::collections::HashMap;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiVersionsRequest, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

pub use sasl::Mechanism;
pub use tls::TlsConfig;

/// A response larger than this is refused (a lag collection's biggest answer, the metadata
/// of every topic, is far smaller; a garbage size must not allocate gigabytes).
const MAX_RESPONSE: usize = 64 * 1024 * 1024;

/// Why a request to a broker failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WireError {
    #[error("cannot connect to {addr}: {reason}")]
    Connect { addr: String, reason: String },
    #[error("no answer from {addr} within {timeout:?}")]
    Timeout { addr: String, timeout: Duration },
    #[error("connection to {addr} failed: {reason}")]
    Io { addr: String, reason: String },
    #[error("TLS to {addr}: {reason}")]
    Tls { addr: String, reason: String },
    #[error("SASL authentication at {addr} failed: {reason}")]
    Sasl { addr: String, reason: String },
    /// The broker speaks no version of a request this client knows.
    #[error("{addr} does not support {api} (versions {ours} known here)")]
    Unsupported {
        addr: String,
        api: &'static str,
        ours: String,
    },
    #[error("{addr} sent an answer that does not parse: {reason}")]
    Protocol { addr: String, reason: String },
    /// The broker answered with an error code.
    #[error("{what}: {code}")]
    Broker { what: String, code: BrokerCode },
}

/// A Kafka error code, shown by name (`UNKNOWN_TOPIC_OR_PARTITION (3)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BrokerCode(pub i16);

impl std::fmt::Display for BrokerCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match kafka_protocol::ResponseError::try_from_code(self.0) {
            Some(e) => write!(f, "{e:?} ({})", self.0),
            None => write!(f, "error code {}", self.0),
        }
    }
}

/// What every connection is opened with.
#[derive(Clone)]
pub struct Security {
    pub tls: Option<TlsConfig>,
    pub sasl: Option<Mechanism>,
    pub timeout: Duration,
    pub caps: VersionCaps,
}

/// The newest versions of the batched group requests sent. Lower caps speak as to a broker
/// before Kafka 2.8 (FindCoordinator v3) or 3.0 (OffsetFetch v7): one request per group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionCaps {
    pub find_coordinator: i16,
    pub offset_fetch: i16,
}

impl Default for VersionCaps {
    fn default() -> Self {
        VersionCaps {
            find_coordinator: 4,
            offset_fetch: 8,
        }
    }
}

trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// An open, authenticated connection.
pub struct Conn {
    addr: String,
    io: Box<dyn Io>,
    correlation: i32,
    /// The broker's version range per API key.
    versions: HashMap<i16, (i16, i16)>,
    timeout: Duration,
}

impl Conn {
    /// Dials `addr` (`host:port`), then TLS, ApiVersions and SASL as `security` says.
    pub async fn open(addr: &str, security: &Security) -> Result<Conn, WireError> {
        let timeout = security.timeout;
        let dial = tokio::time::timeout(timeout, TcpStream::connect(addr)).await;
        let tcp = match dial {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(e)) => return Err(connect(addr, e.to_string())),
            Err(_) => return Err(connect(addr, format!("no connection within {timeout:?}"))),
        };
        // Requests are small and awaited one by one: Nagle would only add delay.
        let _ = tcp.set_nodelay(true);
        let io: Box<dyn Io> = match &security.tls {
            None => Box::new(tcp),
            Some(tls) => Box::new(tls.wrap(addr, tcp, timeout).await?),
        };
        let mut conn = Conn {
            addr: addr.to_owned(),
            io,
            correlation: 0,
            versions: HashMap::new(),
            timeout,
        };
        // Version 0 is the one every broker answers (a newer one may be refused by an old
        // broker with a v0 answer).
        let request = ApiVersionsRequest::default();
        let answer = conn.send(&request, 0).await?;
        if answer.error_code != 0 {
            return Err(conn.broker("ApiVersions", answer.error_code));
        }
        conn.versions = answer
            .api_keys
            .iter()
            .map(|k| (k.api_key, (k.min_version, k.max_version)))
            .collect();
        if let Some(mechanism) = &security.sasl {
            sasl::authenticate(&mut conn, mechanism).await?;
        }
        Ok(conn)
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The newest version of `R` both sides speak, at most `cap` (the newest whose fields
    /// this client fills).
    pub fn version<R: Request>(&self, api: &'static str, cap: i16) -> Result<i16, WireError> {
        let (min, max) = self.versions.get(&R::KEY).copied().unwrap_or((0, -1));
        let top = max.min(cap).min(R::VERSIONS.max);
        let bottom = min.max(R::VERSIONS.min);
        if top < bottom {
            return Err(WireError::Unsupported {
                addr: self.addr.clone(),
                api,
                ours: format!("{}..{}", R::VERSIONS.min, cap.min(R::VERSIONS.max)),
            });
        }
        Ok(top)
    }

    /// Sends `request` as `version` and reads its answer, within the timeout.
    pub async fn send<R: Request>(&mut self, request: &R, version: i16) -> Result<R::Response, WireError> {
        let timeout = self.timeout;
        match tokio::time::timeout(timeout, self.exchange(request, version)).await {
            Ok(answer) => answer,
            Err(_) => Err(WireError::Timeout {
                addr: self.addr.clone(),
                timeout,
            }),
        }
    }

    async fn exchange<R: Request>(&mut self, request: &R, version: i16) -> Result<R::Response, WireError> {
        self.correlation = self.correlation.wrapping_add(1);
        let id = self.correlation;
        let mut header = RequestHeader::default();
        header.request_api_key = R::KEY;
        header.request_api_version = version;
        header.correlation_id = id;
        header.client_id = Some(StrBytes::from_static_str("automaton"));
        let mut frame = BytesMut::new();
        frame.put_i32(0);
        header
            .encode(&mut frame, R::header_version(version))
            .and_then(|()| request.encode(&mut frame, version))
            .map_err(|e| self.protocol(format!("encoding: {e}")))?;
        let size = i32::try_from(frame.len() - 4).map_err(|_| self.protocol("request too large".into()))?;
        frame[..4].copy_from_slice(&size.to_be_bytes());
        self.io.write_all(&frame).await.map_err(|e| self.io_error(e))?;
        self.io.flush().await.map_err(|e| self.io_error(e))?;
        let mut body = self.read_frame().await?;
        let response_header = ResponseHeader::decode(&mut body, R::Response::header_version(version))
            .map_err(|e| self.protocol(format!("response header: {e}")))?;
        if response_header.correlation_id != id {
            return Err(self.protocol(format!(
                "answer {} to request {id}",
                response_header.correlation_id
            )));
        }
        let answer = R::Response::decode(&mut body, version).map_err(|e| self.protocol(e.to_string()))?;
        Ok(answer)
    }

    async fn read_frame(&mut self) -> Result<Bytes, WireError> {
        let mut size = [0u8; 4];
        self.io
            .read_exact(&mut size)
            .await
            .map_err(|e| self.io_error(e))?;
        let size = usize::try_from(i32::from_be_bytes(size)).unwrap_or(usize::MAX);
        if size > MAX_RESPONSE {
            return Err(self.protocol(format!("a frame of {size} bytes")));
        }
        let mut body = vec![0u8; size];
        self.io
            .read_exact(&mut body)
            .await
            .map_err(|e| self.io_error(e))?;
        Ok(Bytes::from(body))
    }

    fn io_error(&self, e: std::io::Error) -> WireError {
        let reason = match e.kind() {
            std::io::ErrorKind::UnexpectedEof => "the broker closed the connection".to_owned(),
            _ => e.to_string(),
        };
        WireError::Io {
            addr: self.addr.clone(),
            reason,
        }
    }

    fn protocol(&self, reason: String) -> WireError {
        WireError::Protocol {
            addr: self.addr.clone(),
            reason,
        }
    }

    pub fn broker(&self, what: &str, code: i16) -> WireError {
        WireError::Broker {
            what: format!("{what} at {}", self.addr),
            code: BrokerCode(code),
        }
    }
}

fn connect(addr: &str, reason: String) -> WireError {
    WireError::Connect {
        addr: addr.to_owned(),
        reason,
    }
}
