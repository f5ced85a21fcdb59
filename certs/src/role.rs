//! Roles: what a certificate's holder is allowed to do.
//!
//! The coordinator authorizes every request by the role in the client
//! certificate, so the role set is closed and spelled exactly one way.

use std::fmt;
use std::str::FromStr;

use crate::CertError;

/// The kind of party a certificate identifies.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The fleet's server. Its certificate also carries the DNS names / IPs
    /// clients dial. It is a server identity, not a console user.
    Coordinator,
    /// A recording worker; may only speak the worker protocol.
    Agent,
    /// A human (or script) that may watch the fleet and act on it.
    Operator,
    /// A human (or dashboard) that may only watch.
    Viewer,
}

impl Role {
    /// Every role, in a stable order.
    pub const ALL: [Role; 4] = [Role::Coordinator, Role::Agent, Role::Operator, Role::Viewer];

    /// The allowed spellings, for error messages and help text.
    pub const ALLOWED: &'static str = "coordinator, agent, operator, viewer";

    /// The lowercase name used in URIs, file names and the CLI.
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Coordinator => "coordinator",
            Role::Agent => "agent",
            Role::Operator => "operator",
            Role::Viewer => "viewer",
        }
    }

    /// May subscribe to fleet state and events (console read access).
    ///
    /// Only console roles: an agent's key sits on a worker machine and the
    /// coordinator's on the server, so neither is granted console rights.
    pub const fn can_read_fleet(self) -> bool {
        matches!(self, Role::Operator | Role::Viewer)
    }

    /// May change the fleet (start/stop recordings, drain agents, ...).
    pub const fn can_operate(self) -> bool {
        matches!(self, Role::Operator)
    }

    /// May speak the worker protocol, and nothing else.
    pub const fn is_agent(self) -> bool {
        matches!(self, Role::Agent)
    }

    /// Is the coordinator (server) identity.
    pub const fn is_coordinator(self) -> bool {
        matches!(self, Role::Coordinator)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = CertError;

    /// Exact lowercase match only: the same spelling is used inside
    /// certificates, so accepting variants here would invite mismatches.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| CertError::UnknownRole {
                value: s.to_owned(),
            })
    }
}
