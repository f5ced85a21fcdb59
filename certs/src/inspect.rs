//! Reading certificates back: the peer's identity, and a summary for `show`.

use std::any::Any;
use std::net::IpAddr;
use std::path::Path;

use rustls::pki_types::CertificateDer;
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

use crate::identity::SPIFFE_PREFIX;
use crate::{pem, CertError, Identity};

fn parse(der: &[u8]) -> Result<X509Certificate<'_>, CertError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| CertError::Parse {
        reason: e.to_string(),
    })?;
    Ok(cert)
}

fn general_names<'a>(cert: &'a X509Certificate<'_>) -> Result<Vec<&'a GeneralName<'a>>, CertError> {
    let san = cert
        .subject_alternative_name()
        .map_err(|e| CertError::Parse {
            reason: format!("subject alternative name: {e}"),
        })?;
    Ok(san
        .map(|s| s.value.general_names.iter().collect())
        .unwrap_or_default())
}

fn identity_of(cert: &X509Certificate<'_>) -> Result<Identity, CertError> {
    let mut found = None;
    for name in general_names(cert)? {
        if let GeneralName::URI(uri) = name {
            // Only URIs in our trust domain count; others (if some other tool
            // added them) are ignored, never half-parsed.
            if uri.starts_with(SPIFFE_PREFIX) {
                if found.is_some() {
                    return Err(CertError::NoIdentity {
                        problem: "more than one recfleet identity",
                    });
                }
                found = Some(Identity::from_spiffe_uri(uri)?);
            }
        }
    }
    found.ok_or(CertError::NoIdentity {
        problem: "no recfleet identity",
    })
}

/// The identity in a (verified) certificate's `spiffe://recfleet/<role>/<name>`
/// URI SAN. Exactly one such URI must be present.
///
/// This does not verify anything: call it on a certificate the TLS stack has
/// already verified against the CA (e.g. the peer certificate of an
/// established connection).
pub fn identity_from_der(cert: &CertificateDer<'_>) -> Result<Identity, CertError> {
    identity_of(&parse(cert)?)
}

/// The identity of the leaf (first) certificate of a peer chain.
pub fn identity_from_chain(chain: &[CertificateDer<'_>]) -> Result<Identity, CertError> {
    identity_from_der(chain.first().ok_or(CertError::NoPeerCertificate)?)
}

/// The identity of a QUIC peer, from `quinn::Connection::peer_identity()`.
///
/// quinn (with rustls) hands out the verified chain as a type-erased
/// `Vec<CertificateDer<'static>>`; taking `Box<dyn Any>` keeps this crate
/// free of a quinn dependency.
pub fn identity_from_certs(peer_identity: Option<Box<dyn Any>>) -> Result<Identity, CertError> {
    let any = peer_identity.ok_or(CertError::NoPeerCertificate)?;
    identity_from_any(any.as_ref())
}

/// Like [`identity_from_certs`] for a borrowed value; accepts a
/// `Vec<CertificateDer<'static>>` (what quinn stores); anything else is
/// treated as "no certificate".
pub fn identity_from_any(peer_identity: &dyn Any) -> Result<Identity, CertError> {
    match peer_identity.downcast_ref::<Vec<CertificateDer<'static>>>() {
        Some(chain) => identity_from_chain(chain),
        None => Err(CertError::NoPeerCertificate),
    }
}

/// A human-oriented summary of a certificate, for `recfleet-certs show`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// The recfleet identity, if the certificate carries exactly one valid
    /// one (`None` for the CA certificate, or foreign certificates).
    pub identity: Option<Identity>,
    /// Subject DN, e.g. `CN=operator/alice, O=recfleet`.
    pub subject: String,
    /// Issuer DN.
    pub issuer: String,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
    /// Subject alternative names, as `URI:…`, `DNS:…`, `IP:…` (others as `OTHER:…`).
    pub sans: Vec<String>,
    /// basicConstraints CA:true.
    pub is_ca: bool,
    /// Serial number, lowercase hex.
    pub serial: String,
}

impl CertInfo {
    /// Whether `now` is after the end of validity.
    pub fn is_expired_at(&self, now: OffsetDateTime) -> bool {
        now > self.not_after
    }

    /// Whether `now` is before the start of validity.
    pub fn is_not_yet_valid_at(&self, now: OffsetDateTime) -> bool {
        now < self.not_before
    }
}

/// Summarizes the first certificate in `cert_pem`.
pub fn describe(cert_pem: &[u8]) -> Result<CertInfo, CertError> {
    describe_der(&pem::first_cert(cert_pem, "certificate")?)
}

/// Summarizes the first certificate in the PEM file at `path`; errors name the file.
pub fn describe_file(path: &Path) -> Result<CertInfo, CertError> {
    let data = crate::files::read_file(path, "reading certificate")?;
    describe_der(&pem::first_cert(&data, &path.display().to_string())?)
}

/// Summarizes a DER certificate.
pub fn describe_der(der: &CertificateDer<'_>) -> Result<CertInfo, CertError> {
    let cert = parse(der)?;
    let sans = general_names(&cert)?
        .into_iter()
        .map(|n| match n {
            GeneralName::URI(u) => format!("URI:{u}"),
            GeneralName::DNSName(d) => format!("DNS:{d}"),
            GeneralName::RFC822Name(e) => format!("EMAIL:{e}"),
            GeneralName::IPAddress(bytes) => match ip_from_bytes(bytes) {
                Some(ip) => format!("IP:{ip}"),
                None => format!("IP:<{} bytes>", bytes.len()),
            },
            other => format!("OTHER:{other:?}"),
        })
        .collect();
    Ok(CertInfo {
        identity: identity_of(&cert).ok(),
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        not_before: cert.validity().not_before.to_datetime(),
        not_after: cert.validity().not_after.to_datetime(),
        sans,
        is_ca: cert.is_ca(),
        serial: cert
            .raw_serial()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
    })
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}
