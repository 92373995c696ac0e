//! The certificates a TLS client trusts: the PEM file a setting names, else the webpki
//! roots. Shared by the PostgreSQL and Kafka clients; errors name the setting and the file.

use std::path::Path;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::RootCertStore;

/// The roots of `ca` (a PEM file, from the variable `setting`), or the webpki roots.
pub fn root_store(ca: Option<&Path>, setting: &str) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    let Some(path) = ca else {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        return Ok(roots);
    };
    let shown = path.display();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{setting} {shown}: {e}"))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{setting} {shown}: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{setting} {shown}: no PEM certificate in it"));
    }
    for cert in certs {
        roots.add(cert).map_err(|e| format!("{setting} {shown}: {e}"))?;
    }
    Ok(roots)
}
