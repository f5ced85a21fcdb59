//! The private certificate authority and leaf issuance.
//!
//! One self-signed CA per fleet is the only trust root: every party gets a
//! leaf signed by it, and TLS configs trust nothing else. There are no
//! intermediates (path length 0), which keeps verification and rotation simple.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SanType,
};
use rustls::pki_types::{CertificateDer, ServerName};
use time::{Duration, OffsetDateTime};

use crate::files::{read_file, write_pair};
use crate::tls::TlsMaterial;
use crate::{pem, CertError, Identity, Role};

/// File name of the CA certificate inside the CA directory.
pub const CA_CERT_FILE: &str = "ca.pem";
/// File name of the CA private key inside the CA directory (mode 0600).
pub const CA_KEY_FILE: &str = "ca-key.pem";
/// Subject CN of the CA.
pub const CA_COMMON_NAME: &str = "recfleet CA";
/// Subject O of every certificate this crate makes.
pub const ORGANIZATION: &str = "recfleet";
/// How long a new CA is valid. Long, because replacing it means reissuing
/// every certificate in the fleet.
pub const CA_VALIDITY_DAYS: i64 = 3650;
/// How far back `not_before` is set for certificates issued "now", so that a
/// peer whose clock is slightly behind does not reject a fresh certificate.
pub const CLOCK_SKEW: Duration = Duration::minutes(5);
/// SANs a coordinator certificate gets when none are requested: enough for a
/// single-machine setup.
pub const DEFAULT_COORDINATOR_SANS: [&str; 2] = ["localhost", "127.0.0.1"];

/// The fleet's certificate authority: its certificate and signing key.
pub struct CertificateAuthority {
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    not_after: OffsetDateTime,
    key_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// What to put in a leaf certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssueRequest {
    /// Who the certificate is for (becomes the URI SAN and the subject CN).
    pub identity: Identity,
    /// Extra DNS names or IP addresses, for the coordinator's server
    /// certificate: it must carry every name/IP clients dial. Empty for a
    /// coordinator means [`DEFAULT_COORDINATOR_SANS`].
    pub sans: Vec<String>,
    /// Start of validity. May be in the past.
    pub not_before: OffsetDateTime,
    /// End of validity. May be in the past (for testing expiry).
    pub not_after: OffsetDateTime,
}

impl IssueRequest {
    /// Valid from now (minus [`CLOCK_SKEW`]) for `days` days; `days` must be >= 1.
    pub fn for_days(identity: Identity, sans: Vec<String>, days: u32) -> Result<Self, CertError> {
        let now = now();
        let not_before = now - CLOCK_SKEW;
        let not_after = now + Duration::days(i64::from(days));
        if days == 0 {
            return Err(CertError::InvalidValidity {
                not_before: now,
                not_after,
            });
        }
        Ok(IssueRequest {
            identity,
            sans,
            not_before,
            not_after,
        })
    }
}

/// A freshly issued leaf: certificate and private key, both PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct IssuedCert {
    /// Who it is for.
    pub identity: Identity,
    /// The certificate (PEM, one `CERTIFICATE` block).
    pub cert_pem: String,
    /// The private key (PEM, PKCS#8). Secret.
    pub key_pem: String,
}

impl fmt::Debug for IssuedCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedCert")
            .field("identity", &self.identity)
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"[secret key elided]")
            .finish()
    }
}

impl fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("not_after", &self.not_after)
            .field("key", &"[secret key elided]")
            .finish_non_exhaustive()
    }
}

impl CertificateAuthority {
    /// Creates a new CA in memory (nothing is written). Tests use this
    /// directly; [`init`](Self::init) uses it and then writes the files.
    pub fn generate() -> Result<Self, CertError> {
        let key = KeyPair::generate().map_err(CertError::generate("generating ca key"))?;
        let now = now();
        let mut params = CertificateParams::default();
        params.distinguished_name = distinguished_name(CA_COMMON_NAME);
        params.not_before = now - CLOCK_SKEW;
        params.not_after = now + Duration::days(CA_VALIDITY_DAYS);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params
            .self_signed(&key)
            .map_err(CertError::generate("self-signing ca certificate"))?;
        let not_after = params.not_after;
        Ok(CertificateAuthority {
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            not_after,
            key_pem: key.serialize_pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// Creates a new CA and writes `ca.pem` and `ca-key.pem` (0600) in `dir`,
    /// creating `dir` with mode 0700 if needed.
    ///
    /// Refuses if either file exists unless `force`: replacing a CA silently
    /// would invalidate every certificate of the fleet.
    pub fn init(dir: &Path, force: bool) -> Result<Self, CertError> {
        let ca = Self::generate()?;
        ca.write(dir, force)?;
        Ok(ca)
    }

    /// Writes this CA's files into `dir` (see [`init`](Self::init)).
    pub fn write(&self, dir: &Path, force: bool) -> Result<(), CertError> {
        write_pair(
            dir,
            (&Self::cert_path(dir), self.cert_pem.as_bytes()),
            (&Self::key_path(dir), self.key_pem.as_bytes()),
            force,
        )
    }

    /// Loads the CA written by [`init`](Self::init) from `dir`.
    pub fn load(dir: &Path) -> Result<Self, CertError> {
        let cert_path = Self::cert_path(dir);
        let key_path = Self::key_path(dir);
        let cert = read_file(&cert_path, "reading ca certificate")?;
        let key = read_file(&key_path, "reading ca key")?;
        let not_utf8 = |p: &Path| CertError::Pem {
            origin: p.display().to_string(),
            reason: "not a pem file (not utf-8)".into(),
        };
        let cert = String::from_utf8(cert).map_err(|_| not_utf8(&cert_path))?;
        let key = String::from_utf8(key).map_err(|_| not_utf8(&key_path))?;
        Self::build(
            &cert,
            &key,
            &cert_path.display().to_string(),
            &key_path.display().to_string(),
            Some(dir),
        )
    }

    /// Builds the CA from its certificate and key PEM.
    ///
    /// Checks that the certificate is a CA and that the key belongs to it;
    /// otherwise every certificate issued would fail verification later, far
    /// from the actual mistake.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, CertError> {
        Self::build(cert_pem, key_pem, "ca certificate", "ca key", None)
    }

    fn build(
        cert_pem: &str,
        key_pem: &str,
        cert_origin: &str,
        key_origin: &str,
        dir: Option<&Path>,
    ) -> Result<Self, CertError> {
        let bad = |reason: &str| CertError::BadCa {
            origin: match dir {
                Some(d) => format!("ca in {}", d.display()),
                None => "ca".to_owned(),
            },
            reason: reason.to_owned(),
        };
        let cert_der = pem::first_cert(cert_pem.as_bytes(), cert_origin)?;
        let key = KeyPair::from_pem(key_pem).map_err(|e| CertError::Pem {
            origin: key_origin.into(),
            reason: format!("not a usable private key: {e}"),
        })?;
        let (_, x509) =
            x509_parser::parse_x509_certificate(&cert_der).map_err(|e| CertError::Pem {
                origin: cert_origin.into(),
                reason: format!("not a valid certificate: {e}"),
            })?;
        if !x509.is_ca() {
            return Err(bad(
                "the certificate is not a ca certificate (basicConstraints CA:false)",
            ));
        }
        if x509.public_key().raw != key.subject_public_key_info().as_slice() {
            return Err(bad("the private key does not belong to the ca certificate"));
        }
        let not_after = x509.validity().not_after.to_datetime();
        let issuer = Issuer::from_ca_cert_der(&cert_der, key)
            .map_err(|e| bad(&format!("cannot use the certificate as issuer: {e}")))?;
        Ok(CertificateAuthority {
            cert_pem: cert_pem.to_owned(),
            cert_der,
            not_after,
            key_pem: key_pem.to_owned(),
            issuer,
        })
    }

    /// `<dir>/ca.pem`
    pub fn cert_path(dir: &Path) -> PathBuf {
        dir.join(CA_CERT_FILE)
    }

    /// `<dir>/ca-key.pem`
    pub fn key_path(dir: &Path) -> PathBuf {
        dir.join(CA_KEY_FILE)
    }

    /// The CA certificate, PEM. Distribute it to every party as the trust root.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// End of the CA's validity.
    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }

    /// Issues a leaf certificate.
    ///
    /// Every leaf has both ServerAuth and ClientAuth extended key usage: the
    /// coordinator is a server and everyone (including it) may be a client,
    /// and one kind of leaf is simpler than two. Validity in the past is
    /// allowed on purpose (tests need expired certificates); a validity that
    /// ends before it starts, or after the CA expires, is refused.
    pub fn issue(&self, req: &IssueRequest) -> Result<IssuedCert, CertError> {
        let not_before = truncate(req.not_before);
        let not_after = truncate(req.not_after);
        if not_after <= not_before {
            return Err(CertError::InvalidValidity {
                not_before,
                not_after,
            });
        }
        if not_after > self.not_after {
            return Err(CertError::OutlivesCa {
                not_after,
                ca_not_after: self.not_after,
            });
        }

        let mut sans = vec![SanType::URI(ia5(req.identity.spiffe_uri())?)];
        let mut requested: Vec<&str> = req.sans.iter().map(String::as_str).collect();
        if requested.is_empty() && req.identity.role() == Role::Coordinator {
            requested = DEFAULT_COORDINATOR_SANS.to_vec();
        }
        for s in requested {
            let san = parse_san(s)?;
            if !sans.contains(&san) {
                sans.push(san);
            }
        }

        let mut params = CertificateParams::default();
        params.distinguished_name = distinguished_name(&req.identity.to_string());
        params.subject_alt_names = sans;
        params.not_before = not_before;
        params.not_after = not_after;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;

        let key = KeyPair::generate().map_err(CertError::generate("generating key"))?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(CertError::generate("signing certificate"))?;
        Ok(IssuedCert {
            identity: req.identity.clone(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Issues a leaf valid from now for `days` days (see [`IssueRequest::for_days`]).
    pub fn issue_for_days(
        &self,
        identity: Identity,
        sans: Vec<String>,
        days: u32,
    ) -> Result<IssuedCert, CertError> {
        self.issue(&IssueRequest::for_days(identity, sans, days)?)
    }

    /// TLS material for `issued`, trusting this CA: handy for in-memory setups
    /// and tests that never touch the filesystem.
    pub fn tls_material(&self, issued: &IssuedCert) -> Result<TlsMaterial, CertError> {
        TlsMaterial::from_pem(
            self.cert_pem.as_bytes(),
            issued.cert_pem.as_bytes(),
            issued.key_pem.as_bytes(),
        )
    }
}

fn now() -> OffsetDateTime {
    truncate(OffsetDateTime::now_utc())
}

/// Certificates store whole seconds; compare like with like.
fn truncate(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_nanosecond(0).unwrap_or(t)
}

fn distinguished_name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn.push(DnType::OrganizationName, ORGANIZATION);
    dn
}

fn ia5(s: String) -> Result<rcgen::string::Ia5String, CertError> {
    rcgen::string::Ia5String::try_from(s.clone()).map_err(|_| CertError::InvalidSan { value: s })
}

/// An IP address, or a DNS name that rustls would accept as a server name
/// (the names clients dial must pass the same check when they connect).
fn parse_san(s: &str) -> Result<SanType, CertError> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    match ServerName::try_from(s) {
        Ok(ServerName::DnsName(_)) => Ok(SanType::DnsName(ia5(s.to_ascii_lowercase())?)),
        _ => Err(CertError::InvalidSan {
            value: s.to_owned(),
        }),
    }
}
