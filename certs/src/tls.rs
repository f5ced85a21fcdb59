//! rustls configurations for mutual TLS inside the fleet.
//!
//! Both sides: TLS 1.3 only, the ring provider, the fleet CA as the only trust
//! root, and a certificate of their own. The server *requires* a client
//! certificate (the certificate is the identity the coordinator authorizes),
//! and 0-RTT is off (early data is replayable, and every request here may act).

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::files::read_file;
use crate::{pem, CertError, Identity, Role};

/// Everything one party needs for mutual TLS: the trust root(s), its own
/// certificate chain and private key, all DER.
pub struct TlsMaterial {
    /// Trusted CA certificates (normally exactly the fleet CA).
    pub ca: Vec<CertificateDer<'static>>,
    /// Own certificate chain, leaf first (normally just the leaf).
    pub chain: Vec<CertificateDer<'static>>,
    /// Own private key.
    pub key: PrivateKeyDer<'static>,
}

impl fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("ca", &self.ca.len())
            .field("chain", &self.chain.len())
            .field("key", &"[secret key elided]")
            .finish()
    }
}

impl Clone for TlsMaterial {
    fn clone(&self) -> Self {
        TlsMaterial {
            ca: self.ca.clone(),
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl TlsMaterial {
    /// Reads the CA certificate, own certificate and own key from PEM files.
    /// Errors name the file and what is wrong with it.
    pub fn load(ca_path: &Path, cert_path: &Path, key_path: &Path) -> Result<Self, CertError> {
        let ca = read_file(ca_path, "reading ca certificate")?;
        let cert = read_file(cert_path, "reading certificate")?;
        let key = read_file(key_path, "reading private key")?;
        Self::parse(
            (&ca, &ca_path.display().to_string()),
            (&cert, &cert_path.display().to_string()),
            (&key, &key_path.display().to_string()),
        )
    }

    /// Builds the material from PEM text (e.g. from [`crate::IssuedCert`]).
    pub fn from_pem(ca_pem: &[u8], cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, CertError> {
        Self::parse(
            (ca_pem, "ca certificate"),
            (cert_pem, "certificate"),
            (key_pem, "private key"),
        )
    }

    fn parse(
        (ca, ca_origin): (&[u8], &str),
        (cert, cert_origin): (&[u8], &str),
        (key, key_origin): (&[u8], &str),
    ) -> Result<Self, CertError> {
        Ok(TlsMaterial {
            ca: pem::certs(ca, ca_origin)?,
            chain: pem::certs(cert, cert_origin)?,
            key: pem::private_key(key, key_origin)?,
        })
    }

    /// The identity in our own leaf certificate.
    pub fn identity(&self) -> Result<Identity, CertError> {
        crate::identity_from_chain(&self.chain)
    }

    fn roots(&self) -> Result<Arc<RootCertStore>, CertError> {
        let mut roots = RootCertStore::empty();
        for ca in &self.ca {
            roots.add(ca.clone())?;
        }
        Ok(Arc::new(roots))
    }
}

/// The crypto provider every config uses: ring, regardless of any
/// process-wide default another crate may have installed.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Server side (the coordinator): requires and verifies a client certificate
/// signed by the CA, TLS 1.3 only, no 0-RTT, the given ALPN protocols.
///
/// The server's own certificate must carry every DNS name / IP address
/// clients dial (see [`crate::IssueRequest::sans`]).
pub fn server_config(material: &TlsMaterial, alpn: &[&[u8]]) -> Result<ServerConfig, CertError> {
    let provider = provider();
    let verifier =
        WebPkiClientVerifier::builder_with_provider(material.roots()?, provider.clone()).build()?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(material.chain.clone(), material.key.clone_key())?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config.max_early_data_size = 0;
    Ok(config)
}

/// Client side (agents, consoles): verifies the server against the CA and the
/// server name it dials (which must be among the server certificate's SANs),
/// and that the server's certificate is a coordinator's (a worker's or an
/// operator's certificate from the same CA must not pass for the fleet's
/// server); presents its own certificate, TLS 1.3 only, no 0-RTT.
pub fn client_config(material: &TlsMaterial, alpn: &[&[u8]]) -> Result<ClientConfig, CertError> {
    let provider = provider();
    let webpki =
        WebPkiServerVerifier::builder_with_provider(material.roots()?, provider.clone()).build()?;
    let verifier = Arc::new(CoordinatorOnly(webpki));
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(material.chain.clone(), material.key.clone_key())?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config.enable_early_data = false;
    Ok(config)
}

/// The CA's and the server name's checks (webpki), then the role: only a
/// coordinator certificate may serve. ("dangerous" is rustls's name for any
/// verifier of one's own; this one only adds a check after webpki's.)
#[derive(Debug)]
struct CoordinatorOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for CoordinatorOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verified = self.0.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        match crate::identity_from_der(end_entity) {
            Ok(id) if id.role() == Role::Coordinator => Ok(verified),
            Ok(id) => Err(rustls::Error::General(format!(
                "the server's certificate is {id}, not a coordinator: this is not the fleet's coordinator"
            ))),
            Err(e) => Err(rustls::Error::General(format!(
                "the server's certificate carries no recfleet identity: {e}"
            ))),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}
