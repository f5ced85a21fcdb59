#![forbid(unsafe_code)]
#![warn(missing_docs)]
//! recfleet's private PKI.
//!
//! One CA per fleet signs a leaf certificate for every party. A leaf carries
//! its holder's [`Identity`] (`role/name`) as the URI SAN
//! `spiffe://recfleet/<role>/<name>`; the coordinator authorizes each request
//! by the [`Role`] in the client certificate of the connection. This crate
//! creates and reads those certificates and builds the matching rustls
//! configs (TLS 1.3, mutual authentication, the CA as the only root).
//!
//! Certificates are made with rcgen (pure Rust on ring, no openssl) and read
//! with x509-parser (rustls itself only verifies; it does not expose SANs).

mod ca;
mod error;
pub mod files;
mod identity;
mod inspect;
mod pem;
mod role;
mod tls;

pub use ca::{
    CertificateAuthority, IssueRequest, IssuedCert, CA_CERT_FILE, CA_COMMON_NAME, CA_KEY_FILE,
    CA_VALIDITY_DAYS, CLOCK_SKEW, DEFAULT_COORDINATOR_SANS, ORGANIZATION,
};
pub use error::{CertError, Result};
pub use files::{write_cert_files, CertPaths};
pub use identity::{validate_name, Identity, MAX_NAME_LEN, SPIFFE_PREFIX, TRUST_DOMAIN};
pub use inspect::{
    describe, describe_der, describe_file, identity_from_any, identity_from_certs,
    identity_from_chain, identity_from_der, CertInfo,
};
pub use role::Role;
pub use tls::{client_config, provider, server_config, TlsMaterial};
