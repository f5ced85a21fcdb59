//! What can go wrong between an operator client and the coordinator. The
//! messages are the console's (it maps each variant to its own error with an
//! exit code and a hint), so they are written for a person.

use std::time::Duration;

use recfleet_protocol::quic::TransportError;
use recfleet_protocol::{ConsoleResponse, WireError};

/// A failed connection, request or subscription.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Certificates or key could not be loaded.
    #[error("cannot load certificates: {0}")]
    Certs(String),
    /// The coordinator address does not resolve.
    #[error("coordinator address \"{addr}\" does not resolve: {reason}")]
    Address {
        /// The address as given.
        addr: String,
        /// Why.
        reason: String,
    },
    /// No connection could be made: nothing answers at the address.
    #[error("cannot connect to the coordinator at {addr}: {reason}")]
    Unreachable {
        /// The address tried (as given, with what it resolved to).
        addr: String,
        /// What the transport said.
        reason: String,
    },
    /// The transport failed (refused handshake, other version, lost
    /// connection, a frame that cannot be read).
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The coordinator answered with an error.
    #[error("{}", .0.message)]
    Wire(WireError),
    /// The connection is up but the answer did not come within the
    /// request's deadline.
    #[error("no answer from the coordinator at {addr} within {}", seconds(*.after))]
    NoAnswer {
        /// The coordinator as given.
        addr: String,
        /// The deadline.
        after: Duration,
    },
    /// The coordinator answered something this client did not expect.
    #[error("unexpected answer from the coordinator: {0}")]
    Unexpected(String),
    /// Following pages of recordings, a `next` token came back twice (a
    /// coordinator bug that would otherwise loop forever).
    #[error("the coordinator returned the page token \"{0}\" twice")]
    RepeatedPageToken(String),
    /// The coordinator finished the subscription stream.
    #[error("the coordinator ended the subscription")]
    SubscriptionEnded,
}

impl ClientError {
    /// The error for an answer of the wrong kind: `expected {what}, got {name}`.
    pub fn unexpected(what: &str, got: &ConsoleResponse) -> ClientError {
        ClientError::Unexpected(format!("expected {what}, got {}", response_name(got)))
    }
}

/// The variant name of a response, for messages.
pub fn response_name(r: &ConsoleResponse) -> &'static str {
    match r {
        ConsoleResponse::Error(_) => "Error",
        ConsoleResponse::Identity { .. } => "Identity",
        ConsoleResponse::Pong { .. } => "Pong",
        ConsoleResponse::Workers(_) => "Workers",
        ConsoleResponse::Recordings(_) => "Recordings",
        ConsoleResponse::Recording(_) => "Recording",
        ConsoleResponse::Started { .. } => "Started",
        ConsoleResponse::Accepted { .. } => "Accepted",
        ConsoleResponse::RecordingsPage { .. } => "RecordingsPage",
        ConsoleResponse::WebhookDeliveries(_) => "WebhookDeliveries",
        ConsoleResponse::Coordinators(_) => "Coordinators",
        ConsoleResponse::History(_) => "History",
        ConsoleResponse::Audit(_) => "Audit",
    }
}

/// A duration as `5 s`, `2.5 s` or `300 ms`.
pub(crate) fn seconds(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_a_person_writes_them() {
        assert_eq!(seconds(Duration::from_secs(5)), "5 s");
        assert_eq!(seconds(Duration::from_millis(2500)), "2.5 s");
        assert_eq!(seconds(Duration::from_millis(300)), "300 ms");
    }

    #[test]
    fn messages_name_what_was_expected_and_the_address() {
        let e =
            ClientError::unexpected("a worker list", &ConsoleResponse::Pong { payload: vec![] });
        assert_eq!(
            e.to_string(),
            "unexpected answer from the coordinator: expected a worker list, got Pong"
        );
        let e = ClientError::NoAnswer {
            addr: "127.0.0.1:7800".into(),
            after: Duration::from_secs(10),
        };
        assert_eq!(
            e.to_string(),
            "no answer from the coordinator at 127.0.0.1:7800 within 10 s"
        );
    }
}
