//! A throwaway fleet PKI for tests: a CA and certificates for any identity.

use recfleet_certs::{CertificateAuthority, Identity, IssueRequest, Role, TlsMaterial};

/// A CA held in memory.
pub struct TestPki {
    /// The CA.
    pub ca: CertificateAuthority,
}

impl std::fmt::Debug for TestPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TestPki")
    }
}

impl TestPki {
    /// A new CA.
    pub fn new() -> anyhow::Result<Self> {
        Ok(TestPki {
            ca: CertificateAuthority::generate()?,
        })
    }

    /// TLS material for `role/name`, valid for a day.
    pub fn material(&self, role: Role, name: &str) -> anyhow::Result<TlsMaterial> {
        let issued = self
            .ca
            .issue_for_days(Identity::new(role, name)?, Vec::new(), 1)?;
        Ok(self.ca.tls_material(&issued)?)
    }

    /// TLS material for `role/name` whose validity ended an hour ago.
    pub fn expired_material(&self, role: Role, name: &str) -> anyhow::Result<TlsMaterial> {
        let now = time::OffsetDateTime::now_utc();
        let issued = self.ca.issue(&IssueRequest {
            identity: Identity::new(role, name)?,
            sans: Vec::new(),
            not_before: now - time::Duration::days(2),
            not_after: now - time::Duration::hours(1),
        })?;
        Ok(self.ca.tls_material(&issued)?)
    }
}
