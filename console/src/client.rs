//! The console's side of the wire: connect with the context's certificate,
//! send requests, open a subscription. No policy and no output here.

use std::net::SocketAddr;
use std::time::Duration;

use quinn::{Connection, Endpoint, RecvStream, SendStream};
use recfleet_certs::TlsMaterial;
use recfleet_protocol::quic::{self, TransportSettings};
use recfleet_protocol::{ConsoleRequest, ConsoleResponse, OpenStream, SubscriptionFrame};

use crate::context::Context;
use crate::error::ConsoleError;

/// How long a connection attempt may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A connected console.
#[derive(Debug)]
pub struct Client {
    connection: Connection,
    /// Kept alive for as long as the connection.
    _endpoint: Endpoint,
    /// The address connected to.
    pub addr: SocketAddr,
}

/// Resolves `host:port` to the first address.
pub async fn resolve_addr(coordinator: &str) -> Result<SocketAddr, ConsoleError> {
    let bad = |reason: String| ConsoleError::Address {
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

/// Loads the context's certificates.
pub fn load_tls(ctx: &Context) -> Result<TlsMaterial, ConsoleError> {
    TlsMaterial::load(&ctx.ca, &ctx.cert, &ctx.key).map_err(|e| ConsoleError::Certs(e.to_string()))
}

/// A failed connection attempt, worded as one: the transport calls a
/// handshake that never got an answer "connection lost", but nothing was
/// ever connected. Refusals and version or TLS problems keep their own
/// codes and hints.
fn connect_error(given: &str, addr: SocketAddr, e: quic::TransportError) -> ConsoleError {
    use quic::TransportError as T;
    let named = if given == addr.to_string() {
        given.to_string()
    } else {
        format!("{given} ({addr})")
    };
    match e {
        T::ConnectionLost(reason) => ConsoleError::Unreachable {
            addr: named,
            reason: if reason.starts_with("timed out") {
                "nothing answered the handshake (timed out)".to_string()
            } else {
                reason
            },
        },
        T::TimedOut(_) => ConsoleError::Unreachable {
            addr: named,
            reason: format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()),
        },
        other => ConsoleError::Transport(other),
    }
}

impl Client {
    /// Connects to the context's coordinator.
    pub async fn connect(ctx: &Context) -> Result<Client, ConsoleError> {
        let tls = load_tls(ctx)?;
        let addr = resolve_addr(&ctx.coordinator).await?;
        let endpoint = quic::client_endpoint(&tls, TransportSettings::default())?;
        let connection = quic::connect(&endpoint, addr, &ctx.server_name, CONNECT_TIMEOUT)
            .await
            .map_err(|e| connect_error(&ctx.coordinator, addr, e))?;
        Ok(Client {
            connection,
            _endpoint: endpoint,
            addr,
        })
    }

    /// A handle on the connection, for tasks that send requests.
    pub fn connection(&self) -> Connection {
        self.connection.clone()
    }

    /// Sends one request; an error answer becomes [`ConsoleError::Wire`].
    pub async fn request(&self, req: ConsoleRequest) -> Result<ConsoleResponse, ConsoleError> {
        request_on(&self.connection, req).await
    }

    /// Opens an event subscription.
    pub async fn subscribe(&self) -> Result<Subscription, ConsoleError> {
        subscribe_on(&self.connection).await
    }

    /// Closes the connection cleanly.
    pub fn close(&self) {
        self.connection.close(0u32.into(), b"console done");
    }
}

/// Sends one request on `conn`; an error answer becomes [`ConsoleError::Wire`].
pub async fn request_on(
    conn: &Connection,
    req: ConsoleRequest,
) -> Result<ConsoleResponse, ConsoleError> {
    match quic::request::<OpenStream, ConsoleResponse>(conn, &OpenStream::Request(req)).await? {
        ConsoleResponse::Error(e) => Err(ConsoleError::Wire(e)),
        other => Ok(other),
    }
}

/// Opens an event subscription on `conn`.
pub async fn subscribe_on(conn: &Connection) -> Result<Subscription, ConsoleError> {
    let (mut send, recv) = conn.open_bi().await.map_err(quic::TransportError::from)?;
    quic::write_frame(&mut send, &OpenStream::Subscribe).await?;
    // The send side stays open (not finished) for the life of the
    // subscription: the coordinator may take a finished stream as "gone".
    Ok(Subscription { _send: send, recv })
}

/// An open subscription: a snapshot, then events.
#[derive(Debug)]
pub struct Subscription {
    _send: SendStream,
    recv: RecvStream,
}

impl Subscription {
    /// The next frame; `Ok(None)` when the coordinator ended the stream.
    pub async fn next(&mut self) -> Result<Option<SubscriptionFrame>, ConsoleError> {
        Ok(quic::read_frame::<SubscriptionFrame>(&mut self.recv).await?)
    }
}
