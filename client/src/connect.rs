//! Connecting: a client endpoint from TLS material, and a connection to a
//! coordinator address within a deadline. Failures name the address as it
//! was given (and what it resolved to, when that differs).

use std::net::SocketAddr;
use std::time::Duration;

use quinn::{Connection, Endpoint};
use recfleet_certs::TlsMaterial;
use recfleet_protocol::quic::{self, TransportError, TransportSettings};

use crate::context::Context;
use crate::error::{seconds, ClientError};

/// How long a connection attempt may take, unless the caller says.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the leader a standby named has to answer before the others are
/// tried (a handshake on a working network takes milliseconds).
const HINT_TIMEOUT: Duration = Duration::from_secs(1);

/// Loads the context's certificates.
pub fn load_tls(ctx: &Context) -> Result<TlsMaterial, ClientError> {
    TlsMaterial::load(&ctx.ca, &ctx.cert, &ctx.key).map_err(|e| ClientError::Certs(e.to_string()))
}

/// A client endpoint presenting `tls`, with the default transport settings
/// (keep-alives, a dead peer noticed in about 2 s).
pub fn endpoint(tls: &TlsMaterial) -> Result<Endpoint, ClientError> {
    Ok(quic::client_endpoint(tls, TransportSettings::default())?)
}

/// Resolves `host:port` to its first address.
pub async fn resolve(coordinator: &str) -> Result<SocketAddr, ClientError> {
    let bad = |reason: String| ClientError::Address {
        addr: coordinator.to_string(),
        reason,
    };
    let mut addrs = tokio::net::lookup_host(coordinator)
        .await
        .map_err(|e| bad(e.to_string()))?;
    addrs
        .next()
        .ok_or_else(|| bad("no address found".to_string()))
}

/// A connection and the address it reached.
#[derive(Debug, Clone)]
pub struct Connected {
    /// The connection.
    pub connection: Connection,
    /// The address `coordinator` resolved to.
    pub addr: SocketAddr,
}

/// The coordinators of `given`: `host:port` entries separated by commas.
pub fn addresses(given: &str) -> Vec<String> {
    given
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_string)
        .collect()
}

/// Where to look for the leader among several coordinators.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Redirect {
    /// Where a standby said the leader is: tried first.
    pub leader: Option<String>,
    /// A standby that knew no leader: left out of the next try (when there
    /// are others), so that another is found; on a fast link it would
    /// answer first again.
    pub avoid: Option<SocketAddr>,
}

/// Connects to one of several coordinators: to the leader a standby named
/// if it answers, else to whichever of `all` answers first, all tried at
/// once, so that a dead one costs no more than its handshake's timeout
/// running beside the others; not to a standby that just knew no leader
/// (the try after next includes it again). A name that resolves to several addresses stands for all
/// of them. The error is the first address's.
pub async fn connect_any(
    endpoint: &Endpoint,
    redirect: &Redirect,
    all: &[String],
    server_name: &str,
    timeout: Duration,
) -> Result<Connected, ClientError> {
    let hint = redirect.leader.as_deref();
    if let Some(h) = hint {
        // Briefly: a standby names the leader until its lease runs out, and
        // that leader may be the one that just died.
        if let Ok(c) = connect(endpoint, h, server_name, timeout.min(HINT_TIMEOUT)).await {
            return Ok(c);
        }
    }
    let mut targets: Vec<(String, SocketAddr)> = Vec::new();
    let mut first_error = None;
    for given in all {
        match tokio::net::lookup_host(given.as_str()).await {
            Ok(addrs) => {
                for a in addrs {
                    if !targets.iter().any(|(_, t)| *t == a) {
                        targets.push((given.clone(), a));
                    }
                }
            }
            Err(e) => {
                first_error.get_or_insert(ClientError::Address {
                    addr: given.clone(),
                    reason: e.to_string(),
                });
            }
        }
    }
    if let [(given, _)] = targets.as_slice() {
        return connect(endpoint, given, server_name, timeout).await;
    }
    if let Some(avoid) = redirect.avoid {
        if targets.iter().any(|(_, a)| *a != avoid) {
            targets.retain(|(_, a)| *a != avoid);
        }
    }
    // A JoinSet: the attempts still under way are aborted when it drops.
    let mut attempts = tokio::task::JoinSet::new();
    for (given, addr) in targets {
        let (endpoint, server_name) = (endpoint.clone(), server_name.to_string());
        attempts.spawn(async move {
            quic::connect(&endpoint, addr, &server_name, timeout)
                .await
                .map(|connection| Connected { connection, addr })
                .map_err(|e| connect_error(&given, addr, timeout, e))
        });
    }
    while let Some(r) = attempts.join_next().await {
        match r {
            Ok(Ok(c)) => return Ok(c),
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(_) => {}
        }
    }
    Err(first_error.unwrap_or_else(|| ClientError::Address {
        addr: all.join(","),
        reason: "no coordinator address given".into(),
    }))
}

/// Connects to `coordinator` (`host:port`), checking that its certificate
/// is valid for `server_name`; gives up after `timeout`.
pub async fn connect(
    endpoint: &Endpoint,
    coordinator: &str,
    server_name: &str,
    timeout: Duration,
) -> Result<Connected, ClientError> {
    let addr = resolve(coordinator).await?;
    let connection = quic::connect(endpoint, addr, server_name, timeout)
        .await
        .map_err(|e| connect_error(coordinator, addr, timeout, e))?;
    Ok(Connected { connection, addr })
}

/// A failed connection attempt, worded as one: the transport calls a
/// handshake that never got an answer "connection lost", but nothing was
/// ever connected. Refusals and version or TLS problems keep their own
/// variants (and so the console's exit codes and hints).
fn connect_error(
    given: &str,
    addr: SocketAddr,
    timeout: Duration,
    e: TransportError,
) -> ClientError {
    use TransportError as T;
    let named = if given == addr.to_string() {
        given.to_string()
    } else {
        format!("{given} ({addr})")
    };
    match e {
        T::ConnectionLost(reason) => ClientError::Unreachable {
            addr: named,
            reason: if reason.starts_with("timed out") {
                "nothing answered the handshake (timed out)".to_string()
            } else {
                reason
            },
        },
        T::TimedOut(_) => ClientError::Unreachable {
            addr: named,
            reason: format!("no answer within {}", seconds(timeout)),
        },
        other => ClientError::Transport(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handshake_nobody_answered_is_unreachable_and_names_the_address() {
        let addr: SocketAddr = ([10, 0, 0, 1], 7800).into();
        let e = connect_error(
            "coord.example:7800",
            addr,
            CONNECT_TIMEOUT,
            TransportError::TimedOut(addr.to_string()),
        );
        assert_eq!(
            e.to_string(),
            "cannot connect to the coordinator at coord.example:7800 (10.0.0.1:7800): \
             no answer within 5 s"
        );
        let e = connect_error(
            "10.0.0.1:7800",
            addr,
            CONNECT_TIMEOUT,
            TransportError::ConnectionLost("timed out: the peer stopped answering".into()),
        );
        assert_eq!(
            e.to_string(),
            "cannot connect to the coordinator at 10.0.0.1:7800: \
             nothing answered the handshake (timed out)"
        );
    }

    #[test]
    fn refusals_keep_their_own_kind() {
        let addr: SocketAddr = ([127, 0, 0, 1], 7800).into();
        let e = connect_error(
            "127.0.0.1:7800",
            addr,
            CONNECT_TIMEOUT,
            TransportError::Refused("bad certificate".into()),
        );
        assert!(
            matches!(e, ClientError::Transport(TransportError::Refused(_))),
            "{e:?}"
        );
    }

    #[tokio::test]
    async fn an_address_that_does_not_parse_says_so() {
        let e = resolve("no-port-here").await.unwrap_err();
        assert!(
            e.to_string()
                .starts_with("coordinator address \"no-port-here\" does not resolve: "),
            "{e}"
        );
    }
}
