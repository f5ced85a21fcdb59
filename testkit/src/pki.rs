//! A throwaway fleet PKI: a fresh CA in a directory, certificate files for
//! the processes a test starts (coordinator, operator, viewer, agents), and
//! certificates in memory for clients the test runs itself.

use std::path::{Path, PathBuf};

use recfleet_certs::{CertificateAuthority, Identity, IssueRequest, Role, TlsMaterial};

/// Days the certificates are valid (a run never lasts that long).
const DAYS: u32 = 2;

/// A fresh CA and the certificate files issued by it.
pub struct Pki {
    /// The CA.
    pub ca: CertificateAuthority,
    dir: PathBuf,
    /// Holds the directory of [`Pki::temp`].
    _temp: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pki({})", self.dir.display())
    }
}

impl Pki {
    /// A new CA in `dir` (`ca.pem`, `ca-key.pem`) with certificate files for
    /// `coordinator/test` (`coordinator.pem`), `operator/tester`
    /// (`operator.pem`) and `viewer/watcher` (`viewer.pem`), each with its
    /// `<stem>-key.pem`.
    pub fn new(dir: &Path) -> anyhow::Result<Pki> {
        Self::create(dir, None)
    }

    /// Like [`Pki::new`] in a temporary directory removed with the `Pki`.
    pub fn temp() -> anyhow::Result<Pki> {
        let temp = tempfile::tempdir()?;
        let dir = temp.path().to_path_buf();
        Self::create(&dir, Some(temp))
    }

    fn create(dir: &Path, temp: Option<tempfile::TempDir>) -> anyhow::Result<Pki> {
        let ca = CertificateAuthority::init(dir, false)?;
        let pki = Pki {
            ca,
            dir: dir.to_path_buf(),
            _temp: temp,
        };
        pki.issue_file(Role::Coordinator, "test", "coordinator")?;
        pki.issue_file(Role::Operator, "tester", "operator")?;
        pki.issue_file(Role::Viewer, "watcher", "viewer")?;
        Ok(pki)
    }

    /// Where the files are.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The CA certificate file.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// Issues `role/name` into `<stem>.pem` and `<stem>-key.pem`.
    pub fn issue_file(&self, role: Role, name: &str, stem: &str) -> anyhow::Result<()> {
        let issued = self
            .ca
            .issue_for_days(Identity::new(role, name)?, Vec::new(), DAYS)?;
        recfleet_certs::write_cert_files(&self.dir, stem, &issued, true)?;
        Ok(())
    }

    /// Issues the agent certificate of worker `name` into `agent-<name>.pem`
    /// unless it exists.
    pub fn agent_file(&self, name: &str) -> anyhow::Result<()> {
        let stem = format!("agent-{name}");
        if !self.dir.join(format!("{stem}.pem")).exists() {
            self.issue_file(Role::Agent, name, &stem)?;
        }
        Ok(())
    }

    /// The material of a certificate written to files (`operator`,
    /// `viewer`, `agent-w1`, ...).
    pub fn material(&self, stem: &str) -> anyhow::Result<TlsMaterial> {
        Ok(TlsMaterial::load(
            &self.dir.join("ca.pem"),
            &self.dir.join(format!("{stem}.pem")),
            &self.dir.join(format!("{stem}-key.pem")),
        )?)
    }

    /// TLS material for `role/name` issued in memory.
    pub fn issue(&self, role: Role, name: &str) -> anyhow::Result<TlsMaterial> {
        let issued = self
            .ca
            .issue_for_days(Identity::new(role, name)?, Vec::new(), DAYS)?;
        Ok(self.ca.tls_material(&issued)?)
    }

    /// TLS material for `role/name` carrying the names `sans` (as a
    /// coordinator's does), whatever the role.
    pub fn issue_with_sans(
        &self,
        role: Role,
        name: &str,
        sans: &[&str],
    ) -> anyhow::Result<TlsMaterial> {
        let sans = sans.iter().map(|s| s.to_string()).collect();
        let issued = self
            .ca
            .issue_for_days(Identity::new(role, name)?, sans, DAYS)?;
        Ok(self.ca.tls_material(&issued)?)
    }

    /// TLS material for `role/name` whose validity begins tomorrow.
    pub fn issue_not_yet_valid(&self, role: Role, name: &str) -> anyhow::Result<TlsMaterial> {
        let now = time::OffsetDateTime::now_utc();
        let issued = self.ca.issue(&IssueRequest {
            identity: Identity::new(role, name)?,
            sans: Vec::new(),
            not_before: now + time::Duration::days(1),
            not_after: now + time::Duration::days(30),
        })?;
        Ok(self.ca.tls_material(&issued)?)
    }

    /// TLS material for a leaf signed by this CA that `recfleet-certs`
    /// never issues: URI SANs `uris` as given (none, two identities, another
    /// trust domain), and only `server_auth` usage when asked. For the tests
    /// of what the coordinator refuses.
    pub fn issue_odd(&self, uris: &[&str], server_only: bool) -> anyhow::Result<TlsMaterial> {
        use rcgen::{
            CertificateParams, ExtendedKeyUsagePurpose, Issuer, KeyPair, KeyUsagePurpose, SanType,
        };
        let ca_pem = std::fs::read_to_string(self.dir.join("ca.pem"))?;
        let ca_key = KeyPair::from_pem(&std::fs::read_to_string(self.dir.join("ca-key.pem"))?)?;
        let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key)?;
        let mut params = CertificateParams::default();
        params.subject_alt_names = uris
            .iter()
            .map(|u| Ok(SanType::URI((*u).try_into()?)))
            .collect::<anyhow::Result<_>>()?;
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::days(1);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = if server_only {
            vec![ExtendedKeyUsagePurpose::ServerAuth]
        } else {
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ]
        };
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &issuer)?;
        Ok(TlsMaterial::from_pem(
            ca_pem.as_bytes(),
            cert.pem().as_bytes(),
            key.serialize_pem().as_bytes(),
        )?)
    }

    /// TLS material for `role/name` whose validity ended an hour ago.
    pub fn issue_expired(&self, role: Role, name: &str) -> anyhow::Result<TlsMaterial> {
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
