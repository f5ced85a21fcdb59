//! Errors that cross the wire: a stable numeric code for programs, a message
//! for people, and details (for example every problem of an invalid spec).

use std::fmt;

use serde::{Deserialize, Serialize};

/// A stable error code. The numbers are part of the protocol (since `recfleet/1`) and never change
/// meaning; new codes may be added. A code this build does not know decodes
/// as [`ErrorCode::Other`] instead of failing the whole frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "u16", into = "u16")]
pub enum ErrorCode {
    /// The request is malformed or a value is invalid (details list each problem).
    InvalidInput,
    /// The named recording or worker does not exist.
    NotFound,
    /// The caller's role may not do this.
    Forbidden,
    /// The request conflicts with the current state (e.g. id reused with another spec).
    Conflict,
    /// No worker has the capacity the request needs.
    NoCapacity,
    /// The service cannot do this now (shutting down, store unavailable); retry later.
    Unavailable,
    /// The peer speaks another protocol version.
    VersionMismatch,
    /// A frame or message broke the protocol.
    ProtocolViolation,
    /// A bug or an unexpected failure on the server.
    Internal,
    /// The sender's epoch is superseded: it no longer owns the segment.
    Fenced,
    /// This coordinator is a standby: the leader's address, when known, is
    /// the first of the details (see [`WireError::not_leader`]).
    NotLeader,
    /// A code added after this build.
    Other(u16),
}

impl ErrorCode {
    /// The number on the wire.
    pub fn number(self) -> u16 {
        match self {
            ErrorCode::InvalidInput => 1,
            ErrorCode::NotFound => 2,
            ErrorCode::Forbidden => 3,
            ErrorCode::Conflict => 4,
            ErrorCode::NoCapacity => 5,
            ErrorCode::Unavailable => 6,
            ErrorCode::VersionMismatch => 7,
            ErrorCode::ProtocolViolation => 8,
            ErrorCode::Internal => 9,
            ErrorCode::Fenced => 10,
            ErrorCode::NotLeader => 11,
            ErrorCode::Other(n) => n,
        }
    }

    /// A short snake_case name, used in JSON output and logs.
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::InvalidInput => "invalid_input",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::Conflict => "conflict",
            ErrorCode::NoCapacity => "no_capacity",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::VersionMismatch => "version_mismatch",
            ErrorCode::ProtocolViolation => "protocol_violation",
            ErrorCode::Internal => "internal",
            ErrorCode::Fenced => "fenced",
            ErrorCode::NotLeader => "not_leader",
            ErrorCode::Other(_) => "other",
        }
    }
}

impl From<u16> for ErrorCode {
    fn from(n: u16) -> Self {
        match n {
            1 => ErrorCode::InvalidInput,
            2 => ErrorCode::NotFound,
            3 => ErrorCode::Forbidden,
            4 => ErrorCode::Conflict,
            5 => ErrorCode::NoCapacity,
            6 => ErrorCode::Unavailable,
            7 => ErrorCode::VersionMismatch,
            8 => ErrorCode::ProtocolViolation,
            9 => ErrorCode::Internal,
            10 => ErrorCode::Fenced,
            11 => ErrorCode::NotLeader,
            n => ErrorCode::Other(n),
        }
    }
}

impl From<ErrorCode> for u16 {
    fn from(c: ErrorCode) -> u16 {
        c.number()
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.number())
    }
}

/// An error answer: what went wrong, for a program and for a person.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct WireError {
    /// What kind of failure.
    pub code: ErrorCode,
    /// One sentence a person can act on.
    pub message: String,
    /// Further lines, e.g. every problem of an invalid spec.
    pub details: Vec<String>,
}

impl WireError {
    /// An error with no details.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            details: Vec::new(),
        }
    }

    /// Adds detail lines.
    pub fn with_details(mut self, details: Vec<String>) -> Self {
        self.details = details;
        self
    }

    /// A standby's answer: who leads, if it knows (`host:port`, as the
    /// leader advertises itself).
    pub fn not_leader(leader: Option<&str>) -> Self {
        let message = match leader {
            Some(l) => format!("this coordinator is a standby; the leader is at {l}"),
            None => "this coordinator is a standby and no leader is known yet; retry".into(),
        };
        WireError::new(ErrorCode::NotLeader, message)
            .with_details(leader.map(str::to_string).into_iter().collect())
    }

    /// The leader's address a [`ErrorCode::NotLeader`] answer names.
    pub fn leader(&self) -> Option<&str> {
        (self.code == ErrorCode::NotLeader)
            .then(|| self.details.first().map(String::as_str))
            .flatten()
            .filter(|l| !l.is_empty())
    }
}

/// QUIC application close codes used by recfleet (`CONNECTION_CLOSE` frames).
pub mod close {
    /// Normal close: the peer is done.
    pub const NORMAL: u32 = 0;
    /// A frame did not decode or a message broke the conversation.
    pub const PROTOCOL_ERROR: u32 = 1;
    /// The certificate's role may not open this conversation.
    pub const FORBIDDEN: u32 = 2;
    /// The peer negotiated a protocol version this side does not speak.
    pub const VERSION_MISMATCH: u32 = 3;
    /// The connection was replaced by a newer one from the same identity.
    pub const SUPERSEDED: u32 = 4;
    /// The side is shutting down.
    pub const SHUTDOWN: u32 = 5;
    /// The peer did not keep up: a subscriber that could not take a frame in
    /// time (its stream is reset with this code; reconnect and resync), or a
    /// worker silent past the limit (its connection is closed with it).
    pub const UNRESPONSIVE: u32 = 6;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_unknown_codes_survive() {
        for n in 0..20u16 {
            assert_eq!(ErrorCode::from(n).number(), n);
        }
        let bytes = postcard::to_allocvec(&ErrorCode::Other(999)).unwrap();
        assert_eq!(
            postcard::from_bytes::<ErrorCode>(&bytes).unwrap(),
            ErrorCode::Other(999)
        );
    }
}
