//! What can go wrong in the console, the exit code of each, and a hint a
//! person can act on. The exit codes are part of the console's interface
//! (docs/console.md): scripts branch on them.

use recfleet_client::ClientError;
use recfleet_protocol::quic::TransportError;
use recfleet_protocol::{ErrorCode, WireError};

use crate::context::ContextError;

/// The documented exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Success.
    Ok,
    /// An error of no other kind (a coordinator bug, a protocol violation).
    Other,
    /// The input is wrong: command-line usage, or the coordinator refused a
    /// value (clap also exits 2 on usage errors).
    InvalidInput,
    /// The recording or worker does not exist.
    NotFound,
    /// Refused: the role may not do this, or the TLS handshake or protocol
    /// version was refused.
    Forbidden,
    /// The request conflicts with the current state.
    Conflict,
    /// No worker has the capacity needed.
    NoCapacity,
    /// The coordinator could not be reached, stopped answering, or is
    /// unavailable for now.
    Connection,
    /// `--wait` saw the recording end failed or cancelled.
    RecordingFailed,
    /// The operator declined the confirmation (or there was no terminal to ask on).
    Aborted,
    /// The context (file, flags, certificates) is missing or invalid.
    Config,
}

impl Exit {
    /// The process exit code.
    pub fn code(self) -> u8 {
        match self {
            Exit::Ok => 0,
            Exit::Other => 1,
            Exit::InvalidInput => 2,
            Exit::NotFound => 3,
            Exit::Forbidden => 4,
            Exit::Conflict => 5,
            Exit::NoCapacity => 6,
            Exit::Connection => 7,
            Exit::RecordingFailed => 8,
            Exit::Aborted => 9,
            Exit::Config => 64,
        }
    }

    /// Every code, for the documentation test.
    pub const ALL: [Exit; 11] = [
        Exit::Ok,
        Exit::Other,
        Exit::InvalidInput,
        Exit::NotFound,
        Exit::Forbidden,
        Exit::Conflict,
        Exit::NoCapacity,
        Exit::Connection,
        Exit::RecordingFailed,
        Exit::Aborted,
        Exit::Config,
    ];
}

/// A console failure.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// The context could not be put together.
    #[error(transparent)]
    Context(#[from] ContextError),
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
        /// The address tried.
        addr: String,
        /// What the transport said.
        reason: String,
    },
    /// The transport failed (handshake, lost connection).
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The coordinator answered with an error.
    #[error("{}", .0.message)]
    Wire(WireError),
    /// Connected, but a request got no answer in time.
    #[error("{0}")]
    NoAnswer(String),
    /// The coordinator answered something this console did not expect.
    #[error("unexpected answer from the coordinator: {0}")]
    Unexpected(String),
    /// A value given on the command line is not acceptable.
    #[error("{0}")]
    Invalid(String),
    /// The operator did not confirm.
    #[error("{0}")]
    Aborted(String),
    /// A waited-for recording ended without success.
    #[error("recording {id} ended {state}{}", .reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default())]
    RecordingFailed {
        /// The recording.
        id: String,
        /// Its final state.
        state: String,
        /// Why, if known.
        reason: Option<String>,
    },
    /// The terminal could not be drawn on.
    #[error("terminal: {0}")]
    Terminal(String),
    /// Writing the output failed.
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
}

impl ConsoleError {
    /// The exit code of this failure.
    pub fn exit(&self) -> Exit {
        match self {
            // A context named that is not there is not found, like a
            // worker or recording named that is not there.
            ConsoleError::Context(
                ContextError::UnknownName { .. } | ContextError::NoContexts { .. },
            ) => Exit::NotFound,
            ConsoleError::Context(_) | ConsoleError::Certs(_) => Exit::Config,
            ConsoleError::Address { .. }
            | ConsoleError::Unreachable { .. }
            | ConsoleError::NoAnswer(_) => Exit::Connection,
            ConsoleError::Transport(t) => match t {
                TransportError::Refused(_) | TransportError::VersionMismatch(_) => Exit::Forbidden,
                TransportError::Tls(_) => Exit::Config,
                TransportError::Frame(_) => Exit::Other,
                _ => Exit::Connection,
            },
            ConsoleError::Wire(w) => exit_for_code(w.code),
            ConsoleError::Unexpected(_) => Exit::Other,
            ConsoleError::Invalid(_) => Exit::InvalidInput,
            ConsoleError::Aborted(_) => Exit::Aborted,
            ConsoleError::RecordingFailed { .. } => Exit::RecordingFailed,
            ConsoleError::Output(_) | ConsoleError::Terminal(_) => Exit::Other,
        }
    }

    /// The stable snake_case name of the failure, for JSON output.
    pub fn kind(&self) -> &'static str {
        match self {
            ConsoleError::Wire(w) => w.code.name(),
            _ => match self.exit() {
                Exit::Ok => "ok",
                Exit::Other => "other",
                Exit::InvalidInput => "invalid_input",
                Exit::NotFound => "not_found",
                Exit::Forbidden => "forbidden",
                Exit::Conflict => "conflict",
                Exit::NoCapacity => "no_capacity",
                Exit::Connection => "connection",
                Exit::RecordingFailed => "recording_failed",
                Exit::Aborted => "aborted",
                Exit::Config => "config",
            },
        }
    }

    /// Detail lines (every problem of an invalid spec, for example).
    pub fn details(&self) -> &[String] {
        match self {
            ConsoleError::Wire(w) => &w.details,
            _ => &[],
        }
    }

    /// What the person can do about it.
    pub fn hint(&self) -> Option<String> {
        let h = match self {
            ConsoleError::Context(ContextError::Missing { .. })
            | ConsoleError::Context(ContextError::Read { .. }) => {
                "run `recfleet-agent dev` to write a context for a local fleet, or pass \
                 --coordinator, --ca, --cert and --key (or RECFLEET_* variables)"
            }
            ConsoleError::Context(ContextError::UnknownName { .. }) => {
                "`recfleet context list` shows the contexts of the file; `recfleet-agent dev` \
                 writes one named dev"
            }
            ConsoleError::Context(ContextError::NoContexts { .. }) => {
                "run `recfleet-agent dev` to write a context for a local fleet, or write the file \
                 (docs/console.md)"
            }
            ConsoleError::Context(ContextError::NoCurrent { .. }) => {
                "pick one with `recfleet context use NAME`, or pass --context-name NAME"
            }
            ConsoleError::Context(_) => "fix the context file, or pass --context FILE",
            ConsoleError::Certs(_) => "check the --ca, --cert and --key paths of the context",
            ConsoleError::Address { .. } => "give the coordinator as HOST:PORT, e.g. 127.0.0.1:7800",
            ConsoleError::Transport(TransportError::Refused(_)) => {
                "the certificate is not accepted: check that it was issued by this fleet's CA \
                 and that --server-name matches the coordinator certificate"
            }
            ConsoleError::Transport(TransportError::VersionMismatch(_)) => {
                "install a console of the coordinator's version"
            }
            ConsoleError::Transport(_)
            | ConsoleError::Unreachable { .. }
            | ConsoleError::NoAnswer(_) => {
                "is the coordinator running, and is its UDP port reachable from here?"
            }
            ConsoleError::Wire(w) => match w.code {
                ErrorCode::Forbidden => {
                    "acting needs an operator certificate, watching an operator's or a viewer's; \
                     `recfleet whoami` shows yours"
                }
                ErrorCode::NotFound => "`recfleet workers` and `recfleet recordings` list what exists",
                ErrorCode::NoCapacity => {
                    "add workers, free capacity, or relax the labels; the recording waits as pending otherwise"
                }
                ErrorCode::Conflict => "check the current state with `recfleet recordings` or `recfleet workers`",
                ErrorCode::Unavailable => {
                    "the coordinator cannot do this now (see its message); retry later if it is busy"
                }
                ErrorCode::InvalidInput => "fix the values listed above and retry",
                _ => return None,
            },
            ConsoleError::Aborted(_) => "pass --yes to confirm without a prompt",
            _ => return None,
        };
        Some(h.to_string())
    }
}

/// The client's failures, as the console words and classifies them (each
/// keeps the message it had when the console had a client of its own).
impl From<ClientError> for ConsoleError {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Certs(m) => ConsoleError::Certs(m),
            ClientError::Address { addr, reason } => ConsoleError::Address { addr, reason },
            ClientError::Unreachable { addr, reason } => ConsoleError::Unreachable { addr, reason },
            ClientError::Transport(t) => ConsoleError::Transport(t),
            ClientError::Wire(w) => ConsoleError::Wire(w),
            ClientError::Unexpected(m) => ConsoleError::Unexpected(m),
            e @ (ClientError::RepeatedPageToken(_) | ClientError::SubscriptionEnded) => {
                ConsoleError::Unexpected(e.to_string())
            }
            e @ ClientError::NoAnswer { .. } => ConsoleError::NoAnswer(e.to_string()),
        }
    }
}

/// The exit code of a coordinator error code.
pub fn exit_for_code(code: ErrorCode) -> Exit {
    match code {
        ErrorCode::InvalidInput => Exit::InvalidInput,
        ErrorCode::NotFound => Exit::NotFound,
        ErrorCode::Forbidden | ErrorCode::VersionMismatch => Exit::Forbidden,
        ErrorCode::Conflict | ErrorCode::Fenced => Exit::Conflict,
        ErrorCode::NoCapacity => Exit::NoCapacity,
        ErrorCode::Unavailable | ErrorCode::NotLeader => Exit::Connection,
        ErrorCode::ProtocolViolation | ErrorCode::Internal | ErrorCode::Other(_) => Exit::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_distinct() {
        let mut codes: Vec<u8> = Exit::ALL.iter().map(|e| e.code()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), Exit::ALL.len());
    }

    #[test]
    fn wire_errors_map_to_their_codes() {
        let e = ConsoleError::Wire(WireError::new(
            ErrorCode::Forbidden,
            "viewers may not drain",
        ));
        assert_eq!(e.exit().code(), 4);
        assert_eq!(e.kind(), "forbidden");
        assert!(e.hint().unwrap().contains("operator"));
        let e = ConsoleError::Wire(WireError::new(ErrorCode::NotFound, "no worker w9"));
        assert_eq!(e.exit(), Exit::NotFound);
    }

    #[test]
    fn client_errors_keep_the_console_messages_and_codes() {
        let e = ConsoleError::from(ClientError::Unreachable {
            addr: "127.0.0.1:7800".into(),
            reason: "no answer within 5 s".into(),
        });
        assert_eq!(e.exit(), Exit::Connection);
        assert_eq!(
            e.to_string(),
            "cannot connect to the coordinator at 127.0.0.1:7800: no answer within 5 s"
        );
        let e = ConsoleError::from(ClientError::RepeatedPageToken("t1".into()));
        assert_eq!(e.exit(), Exit::Other);
        assert_eq!(
            e.to_string(),
            "unexpected answer from the coordinator: the coordinator returned the page token \"t1\" twice"
        );
        let e = ConsoleError::from(ClientError::SubscriptionEnded);
        assert_eq!(
            e.to_string(),
            "unexpected answer from the coordinator: the coordinator ended the subscription"
        );
        let e = ConsoleError::from(ClientError::NoAnswer {
            addr: "c:7800".into(),
            after: std::time::Duration::from_secs(10),
        });
        assert_eq!(e.exit(), Exit::Connection);
        assert_eq!(e.kind(), "connection");
        assert_eq!(
            e.to_string(),
            "no answer from the coordinator at c:7800 within 10 s"
        );
        let e = ConsoleError::from(ClientError::Transport(TransportError::VersionMismatch(
            "v2".into(),
        )));
        assert_eq!(e.exit(), Exit::Forbidden);
    }
}
