//! Identities (`role/name`) and their SPIFFE-style URI form.
//!
//! The URI SAN `spiffe://recfleet/<role>/<name>` is the machine-readable
//! identity in a certificate: SANs are structured and covered by the
//! signature, unlike a free-form subject CN, which is kept for humans only.

use std::fmt;
use std::str::FromStr;

use crate::{CertError, Role};

/// The SPIFFE trust domain of every recfleet identity.
pub const TRUST_DOMAIN: &str = "recfleet";

/// `spiffe://recfleet/` — the prefix of every identity URI.
pub const SPIFFE_PREFIX: &str = "spiffe://recfleet/";

/// Longest allowed name. 63 keeps `<role>-<name>-key.pem` and the DNS-label
/// intuition people bring to names comfortable.
pub const MAX_NAME_LEN: usize = 63;

/// Who a certificate belongs to: a role and a name unique within it.
///
/// Fields are private so that every `Identity` in the program has passed
/// [`validate_name`]; build one with [`Identity::new`] or parse it.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(into = "String", try_from = "String")]
pub struct Identity {
    role: Role,
    name: String,
}

impl Identity {
    /// Validates `name` and builds the identity.
    pub fn new(role: Role, name: impl Into<String>) -> Result<Self, CertError> {
        let name = name.into();
        validate_name(&name)?;
        Ok(Identity { role, name })
    }

    /// The role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The name (unique within the role, by convention of whoever issues).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `spiffe://recfleet/<role>/<name>`, the URI SAN put in certificates.
    pub fn spiffe_uri(&self) -> String {
        format!("{SPIFFE_PREFIX}{}/{}", self.role, self.name)
    }

    /// Parses exactly `spiffe://recfleet/<role>/<name>`; anything else
    /// (other trust domain, extra path segments, query, fragment) is refused,
    /// because a lenient parser here would be an authorization bypass.
    pub fn from_spiffe_uri(uri: &str) -> Result<Self, CertError> {
        let bad = |reason: &str| CertError::InvalidIdentity {
            value: uri.to_owned(),
            reason: reason.to_owned(),
        };
        let rest = uri
            .strip_prefix(SPIFFE_PREFIX)
            .ok_or_else(|| bad("expected it to start with spiffe://recfleet/"))?;
        let (role, name) = rest
            .split_once('/')
            .ok_or_else(|| bad("expected spiffe://recfleet/<role>/<name>"))?;
        let role: Role = role.parse()?;
        Identity::new(role, name)
    }

    /// The default file stem for this identity's files: `<role>-<name>`.
    pub fn file_stem(&self) -> String {
        format!("{}-{}", self.role, self.name)
    }
}

impl fmt::Display for Identity {
    /// `role/name`, the same text as the certificate's subject CN.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.role, self.name)
    }
}

impl FromStr for Identity {
    type Err = CertError;

    /// Parses `role/name` (the [`Display`](fmt::Display) form).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (role, name) = s
            .split_once('/')
            .ok_or_else(|| CertError::InvalidIdentity {
                value: s.to_owned(),
                reason: "expected <role>/<name>".to_owned(),
            })?;
        Identity::new(role.parse()?, name)
    }
}

impl From<Identity> for String {
    fn from(id: Identity) -> String {
        id.to_string()
    }
}

impl TryFrom<String> for Identity {
    type Error = CertError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

/// Checks the naming rules: 1..=63 characters of `[A-Za-z0-9._-]`, starting
/// with a letter or digit.
///
/// The alphabet keeps names safe in URIs, file names and log lines without
/// any escaping; the first-character rule rules out `.`/`..`, hidden files
/// and names that look like CLI options.
pub fn validate_name(name: &str) -> Result<(), CertError> {
    let bad = |reason| {
        Err(CertError::InvalidName {
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("must not be empty");
    }
    if name.len() > MAX_NAME_LEN {
        return bad("must be at most 63 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return bad("may only contain A-Z, a-z, 0-9, '.', '_' and '-'");
    }
    if !name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric())
    {
        return bad("must start with a letter or digit");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["a", "alice", "worker-01", "w.example_1", &"x".repeat(63)] {
            validate_name(ok).unwrap();
        }
        for bad in [
            "",
            "-a",
            ".a",
            "_a",
            "a/b",
            "a b",
            "é",
            "a:b",
            &"x".repeat(64),
        ] {
            let err = validate_name(bad).unwrap_err().to_string();
            assert!(err.contains(&format!("\"{bad}\"")), "{err}");
        }
    }

    #[test]
    fn uri_round_trip() {
        for role in Role::ALL {
            let id = Identity::new(role, "n-1.x").unwrap();
            assert_eq!(Identity::from_spiffe_uri(&id.spiffe_uri()).unwrap(), id);
            assert_eq!(id.to_string().parse::<Identity>().unwrap(), id);
        }
    }

    #[test]
    fn uri_strict() {
        for bad in [
            "spiffe://recfleet/operator",
            "spiffe://recfleet/operator/",
            "spiffe://recfleet/operator/a/b",
            "spiffe://recfleet/admin/a",
            "spiffe://other/operator/a",
            "spiffe://recfleet/operator/a?x=1",
            "SPIFFE://recfleet/operator/a",
            "https://recfleet/operator/a",
        ] {
            assert!(Identity::from_spiffe_uri(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn serde_as_string() {
        let id = Identity::new(Role::Viewer, "v1").unwrap();
        let s: String = id.clone().into();
        assert_eq!(s, "viewer/v1");
        assert!(Identity::try_from("viewer/-x".to_owned()).is_err());
    }
}
