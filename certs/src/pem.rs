//! PEM to DER, via rustls-pki-types' own parser (no extra PEM crate).

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::CertError;

fn bad(origin: &str, reason: String) -> CertError {
    CertError::Pem {
        origin: origin.to_owned(),
        reason,
    }
}

/// Every `CERTIFICATE` block in `pem`, in order; at least one.
/// Other blocks (e.g. a key in the same file) are skipped.
pub(crate) fn certs(data: &[u8], origin: &str) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let certs = CertificateDer::pem_slice_iter(data)
        .collect::<Result<Vec<_>, pem::Error>>()
        .map_err(|e| bad(origin, format!("invalid pem: {e}")))?;
    if certs.is_empty() {
        return Err(bad(
            origin,
            "no certificate found (expected a CERTIFICATE pem block)".into(),
        ));
    }
    Ok(certs)
}

/// The first `CERTIFICATE` block in `pem`.
pub(crate) fn first_cert(data: &[u8], origin: &str) -> Result<CertificateDer<'static>, CertError> {
    certs(data, origin)?
        .into_iter()
        .next()
        .ok_or_else(|| bad(origin, "no certificate found".into()))
}

/// The first private key (PKCS#8, SEC1 or PKCS#1) in `pem`.
pub(crate) fn private_key(data: &[u8], origin: &str) -> Result<PrivateKeyDer<'static>, CertError> {
    PrivateKeyDer::from_pem_slice(data).map_err(|e| match e {
        pem::Error::NoItemsFound => bad(
            origin,
            "no private key found (expected a PRIVATE KEY pem block)".into(),
        ),
        e => bad(origin, format!("invalid pem: {e}")),
    })
}
