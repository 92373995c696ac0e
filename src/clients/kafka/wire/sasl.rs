//! SASL over the Kafka protocol (SaslHandshake, then SaslAuthenticate frames): PLAIN and
//! SCRAM-SHA-256/512 (RFC 5802, RFC 7677), the mechanisms of Strimzi, MSK and Confluent
//! Cloud. The password never leaves this file except inside the exchange.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use bytes::Bytes;
use kafka_protocol::messages::{SaslAuthenticateRequest, SaslHandshakeRequest};
use kafka_protocol::protocol::StrBytes;
use ring::{digest, hmac, pbkdf2, rand::SecureRandom};

use super::{Conn, WireError};

/// A mechanism with its credentials. `Debug` hides the password.
#[derive(Clone)]
pub enum Mechanism {
    Plain {
        username: String,
        password: String,
    },
    Scram {
        sha: Sha,
        username: String,
        password: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sha {
    Sha256,
    Sha512,
}

impl std::fmt::Debug for Mechanism {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} as {}", self.name(), self.username())
    }
}

impl Mechanism {
    /// The mechanism `name` (`PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512`, any case).
    pub fn new(name: &str, username: String, password: String) -> Result<Mechanism, String> {
        match name.to_ascii_uppercase().as_str() {
            "PLAIN" => Ok(Mechanism::Plain { username, password }),
            "SCRAM-SHA-256" => Ok(Mechanism::Scram {
                sha: Sha::Sha256,
                username,
                password,
            }),
            "SCRAM-SHA-512" => Ok(Mechanism::Scram {
                sha: Sha::Sha512,
                username,
                password,
            }),
            other => Err(format!(
                "KAFKA_SASL_MECHANISM={other:?}: expected PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"
            )),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Mechanism::Plain { .. } => "PLAIN",
            Mechanism::Scram { sha: Sha::Sha256, .. } => "SCRAM-SHA-256",
            Mechanism::Scram { sha: Sha::Sha512, .. } => "SCRAM-SHA-512",
        }
    }

    fn username(&self) -> &str {
        match self {
            Mechanism::Plain { username, .. } | Mechanism::Scram { username, .. } => username,
        }
    }
}

pub(super) async fn authenticate(conn: &mut Conn, mechanism: &Mechanism) -> Result<(), WireError> {
    let failed = |addr: &str, reason: String| WireError::Sasl {
        addr: addr.to_owned(),
        reason,
    };
    let version = conn.version::<SaslHandshakeRequest>("SaslHandshake", 1)?;
    if version < 1 {
        return Err(failed(
            conn.addr(),
            "the broker only speaks SaslHandshake v0".into(),
        ));
    }
    let mut handshake = SaslHandshakeRequest::default();
    handshake.mechanism = StrBytes::from_static_str(mechanism.name());
    let answer = conn.send(&handshake, version).await?;
    if answer.error_code != 0 {
        let offered: Vec<&str> = answer.mechanisms.iter().map(|m| m.as_str()).collect();
        return Err(failed(
            conn.addr(),
            format!(
                "{} refused; the broker offers {}",
                mechanism.name(),
                offered.join(", ")
            ),
        ));
    }
    match mechanism {
        Mechanism::Plain { username, password } => {
            let token = format!("\0{username}\0{password}");
            exchange(conn, token.into_bytes()).await?;
            Ok(())
        }
        Mechanism::Scram {
            sha,
            username,
            password,
        } => {
            let mut nonce = [0u8; 24];
            ring::rand::SystemRandom::new()
                .fill(&mut nonce)
                .map_err(|_| failed(conn.addr(), "no random nonce".into()))?;
            let mut scram = Scram::new(*sha, username, &B64.encode(nonce));
            let server_first = exchange(conn, scram.client_first().into_bytes()).await?;
            let client_final = scram
                .client_final(password, &String::from_utf8_lossy(&server_first))
                .map_err(|r| failed(conn.addr(), r))?;
            let server_final = exchange(conn, client_final.into_bytes()).await?;
            scram
                .verify(&String::from_utf8_lossy(&server_final))
                .map_err(|r| failed(conn.addr(), r))
        }
    }
}

/// One SaslAuthenticate round: our token out, the broker's back.
async fn exchange(conn: &mut Conn, token: Vec<u8>) -> Result<Bytes, WireError> {
    let version = conn.version::<SaslAuthenticateRequest>("SaslAuthenticate", 1)?;
    let mut request = SaslAuthenticateRequest::default();
    request.auth_bytes = Bytes::from(token);
    let answer = conn.send(&request, version).await?;
    if answer.error_code != 0 {
        let message = answer
            .error_message
            .as_ref()
            .map(|m| m.as_str())
            .unwrap_or_default();
        return Err(WireError::Sasl {
            addr: conn.addr().to_owned(),
            reason: format!("{} {message}", super::BrokerCode(answer.error_code)),
        });
    }
    Ok(answer.auth_bytes)
}

/// The client side of one SCRAM exchange.
struct Scram {
    sha: Sha,
    first_bare: String,
    nonce: String,
    /// Set by `client_final`: what the server's signature must be.
    server_signature: Option<Vec<u8>>,
}

impl Scram {
    fn new(sha: Sha, username: &str, nonce: &str) -> Scram {
        // RFC 5802 5.1: `=` and `,` are escaped in the name.
        let name = username.replace('=', "=3D").replace(',', "=2C");
        Scram {
            sha,
            first_bare: format!("n={name},r={nonce}"),
            nonce: nonce.to_owned(),
            server_signature: None,
        }
    }

    fn client_first(&self) -> String {
        format!("n,,{}", self.first_bare)
    }

    fn client_final(&mut self, password: &str, server_first: &str) -> Result<String, String> {
        let field = |key: &str| {
            server_first
                .split(',')
                .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
                .ok_or_else(|| format!("the server's first message lacks `{key}`: {server_first:?}"))
        };
        let nonce = field("r")?;
        if !nonce.starts_with(&self.nonce) || nonce.len() == self.nonce.len() {
            return Err("the server's nonce does not extend ours".into());
        }
        let salt = B64.decode(field("s")?).map_err(|e| format!("salt: {e}"))?;
        let iterations: u32 = field("i")?.parse().map_err(|e| format!("iterations: {e}"))?;
        let iterations = std::num::NonZeroU32::new(iterations).ok_or("0 iterations")?;
        let (algorithm, hmac_algorithm, digest_algorithm, len) = match self.sha {
            Sha::Sha256 => (pbkdf2::PBKDF2_HMAC_SHA256, hmac::HMAC_SHA256, &digest::SHA256, 32),
            Sha::Sha512 => (pbkdf2::PBKDF2_HMAC_SHA512, hmac::HMAC_SHA512, &digest::SHA512, 64),
        };
        let mut salted = vec![0u8; len];
        pbkdf2::derive(algorithm, iterations, &salt, password.as_bytes(), &mut salted);
        let salted = hmac::Key::new(hmac_algorithm, &salted);
        let client_key = hmac::sign(&salted, b"Client Key");
        let stored_key = digest::digest(digest_algorithm, client_key.as_ref());
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{server_first},{without_proof}", self.first_bare);
        let signature = hmac::sign(
            &hmac::Key::new(hmac_algorithm, stored_key.as_ref()),
            auth_message.as_bytes(),
        );
        let proof: Vec<u8> = client_key
            .as_ref()
            .iter()
            .zip(signature.as_ref())
            .map(|(k, s)| k ^ s)
            .collect();
        let server_key = hmac::sign(&salted, b"Server Key");
        let server_signature = hmac::sign(
            &hmac::Key::new(hmac_algorithm, server_key.as_ref()),
            auth_message.as_bytes(),
        );
        self.server_signature = Some(server_signature.as_ref().to_vec());
        Ok(format!("{without_proof},p={}", B64.encode(proof)))
    }

    /// The server proves it knows the password too.
    fn verify(&self, server_final: &str) -> Result<(), String> {
        if let Some(error) = server_final.strip_prefix("e=") {
            return Err(format!("the server refused: {error}"));
        }
        let given = server_final
            .strip_prefix("v=")
            .and_then(|v| B64.decode(v.split(',').next().unwrap_or_default()).ok());
        match (&self.server_signature, given) {
            (Some(expected), Some(given)) if *expected == given => Ok(()),
            _ => Err("the server's signature does not match: not the broker we know".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scram_sha_256_matches_rfc_7677() {
        let mut scram = Scram::new(Sha::Sha256, "user", "rOprNGfwEbeRWgbNEkqO");
        assert_eq!(scram.client_first(), "n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        let server_first =
            "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        assert_eq!(
            scram.client_final("pencil", server_first).unwrap(),
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
             p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        assert_eq!(
            scram.verify("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="),
            Ok(())
        );
        assert!(scram.verify("v=AAAA").is_err());
        assert_eq!(
            scram.verify("e=invalid-proof"),
            Err("the server refused: invalid-proof".into())
        );
    }

    #[test]
    fn a_server_nonce_that_does_not_extend_ours_is_refused() {
        let mut scram = Scram::new(Sha::Sha512, "a=b,c", "abc");
        assert_eq!(scram.client_first(), "n,,n=a=3Db=2Cc,r=abc");
        assert!(scram.client_final("pw", "r=xyz,s=AAAA,i=4096").is_err());
        assert!(scram.client_final("pw", "r=abc,s=AAAA,i=4096").is_err());
        assert!(scram.client_final("pw", "r=abcd,s=AAAA").is_err());
        assert!(scram.client_final("pw", "r=abcd,s=AAAA,i=4096").is_ok());
    }

    #[test]
    fn mechanisms_by_name_and_the_password_never_shown() {
        let m = Mechanism::new("scram-sha-512", "svc".into(), "hunter2".into()).unwrap();
        assert_eq!(m.name(), "SCRAM-SHA-512");
        assert_eq!(format!("{m:?}"), "SCRAM-SHA-512 as svc");
        assert!(Mechanism::new("GSSAPI", "a".into(), "b".into()).is_err());
    }
}
