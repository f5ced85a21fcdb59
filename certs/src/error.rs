//! The one error type of this crate.
//!
//! Messages are lowercase and carry the offending value or path, so a caller
//! can print them as-is after `error: ` and the user knows what to fix.
//! Underlying errors are part of the message and deliberately *not* exposed
//! as `source()`, so printing the error chain (`{:#}` with anyhow) does not
//! repeat them.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while creating, reading or using certificates.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    /// A role string that is none of the known roles.
    #[error("unknown role \"{value}\" (allowed: {allowed})", allowed = crate::Role::ALLOWED)]
    UnknownRole {
        /// The rejected input.
        value: String,
    },

    /// A name that breaks the identity naming rules.
    #[error("invalid name \"{name}\": {reason}")]
    InvalidName {
        /// The rejected input.
        name: String,
        /// Which rule it breaks.
        reason: &'static str,
    },

    /// A string that should be `role/name` (or a recfleet SPIFFE URI) but is not.
    #[error("invalid identity \"{value}\": {reason}")]
    InvalidIdentity {
        /// The rejected input.
        value: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A subject alternative name that is neither an IP address nor a valid DNS name.
    #[error("invalid san \"{value}\": not an ip address or a valid dns name")]
    InvalidSan {
        /// The rejected input.
        value: String,
    },

    /// A validity window that is empty or reversed.
    #[error(
        "invalid validity: not_after ({}) must be later than not_before ({})",
        rfc3339(not_after),
        rfc3339(not_before)
    )]
    InvalidValidity {
        /// Requested start.
        not_before: time::OffsetDateTime,
        /// Requested end.
        not_after: time::OffsetDateTime,
    },

    /// A leaf that would stay valid after the CA that vouches for it has expired.
    #[error(
        "certificate would outlive the ca: not_after {} is after the ca's {}",
        rfc3339(not_after),
        rfc3339(ca_not_after)
    )]
    OutlivesCa {
        /// Requested end of the leaf.
        not_after: time::OffsetDateTime,
        /// End of the CA certificate.
        ca_not_after: time::OffsetDateTime,
    },

    /// A file that already exists and would be overwritten.
    #[error("{} already exists; use --force to overwrite it", path.display())]
    AlreadyExists {
        /// The file that is in the way.
        path: PathBuf,
    },

    /// A filesystem operation failed.
    #[error("{action} {}: {cause}", path.display())]
    Io {
        /// What was being done, e.g. "reading certificate".
        action: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        cause: io::Error,
    },

    /// PEM input without the expected content, or that does not parse.
    #[error("{origin}: {reason}")]
    Pem {
        /// Where the PEM came from (a path, or a description of in-memory input).
        origin: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A DER certificate that x509-parser cannot read.
    #[error("parsing certificate: {reason}")]
    Parse {
        /// What is wrong with it.
        reason: String,
    },

    /// A certificate without (or with more than one) recfleet identity URI.
    #[error("certificate carries {problem} (expected exactly one spiffe://recfleet/<role>/<name> uri san)")]
    NoIdentity {
        /// "no recfleet identity" or "more than one recfleet identity".
        problem: &'static str,
    },

    /// The peer of a TLS/QUIC connection presented no certificate.
    #[error("peer presented no certificate")]
    NoPeerCertificate,

    /// The CA files do not form a usable CA.
    #[error("{origin}: {reason}")]
    BadCa {
        /// Which CA: "ca in <dir>" or "ca".
        origin: String,
        /// What is wrong (not a CA, key does not match, ...).
        reason: String,
    },

    /// rcgen refused to build a key or certificate.
    #[error("{action}: {cause}")]
    Generate {
        /// What was being generated.
        action: &'static str,
        /// The underlying error.
        cause: rcgen::Error,
    },

    /// rustls refused the material (bad key, key not matching the certificate, ...).
    #[error("building tls config: {0}")]
    Tls(rustls::Error),

    /// rustls could not build a certificate verifier (e.g. no usable root).
    #[error("building certificate verifier: {0}")]
    Verifier(rustls::server::VerifierBuilderError),
}

/// Result with [`CertError`].
pub type Result<T, E = CertError> = std::result::Result<T, E>;

impl CertError {
    /// `true` for errors caused by a bad value the user typed (role, name, SAN,
    /// validity), as opposed to files or crypto; the CLI maps these to exit 64.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            CertError::UnknownRole { .. }
                | CertError::InvalidName { .. }
                | CertError::InvalidIdentity { .. }
                | CertError::InvalidSan { .. }
                | CertError::InvalidValidity { .. }
                | CertError::OutlivesCa { .. }
        )
    }

    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, cause: io::Error) -> Self {
        CertError::Io {
            action,
            path: path.into(),
            cause,
        }
    }

    pub(crate) fn generate(action: &'static str) -> impl FnOnce(rcgen::Error) -> Self {
        move |cause| CertError::Generate { action, cause }
    }
}

impl From<rustls::Error> for CertError {
    fn from(e: rustls::Error) -> Self {
        CertError::Tls(e)
    }
}

impl From<rustls::server::VerifierBuilderError> for CertError {
    fn from(e: rustls::server::VerifierBuilderError) -> Self {
        CertError::Verifier(e)
    }
}

fn rfc3339(t: &time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}
