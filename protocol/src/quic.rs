//! The thin adapter between frames and QUIC: endpoints with mutual TLS,
//! accepting a peer with its identity, and reading/writing frames on streams.
//! Policy (who may open which conversation) lives in the agent, not here.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::{Connection, ConnectionError, Endpoint, RecvStream, SendStream, VarInt};
use recfleet_certs::{Identity, TlsMaterial};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::close;
use crate::frame::{self, FrameError, PREFIX_LEN};
use crate::version;

/// Liveness settings. A dead peer is noticed after `idle_timeout`; keep-alive
/// pings keep a quiet but healthy connection open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransportSettings {
    /// How often to send keep-alive pings when nothing else is sent.
    pub keep_alive: Duration,
    /// How long without any packet from the peer before the connection is dead.
    pub idle_timeout: Duration,
}

impl Default for TransportSettings {
    /// Seconds, not minutes: a worker that vanishes is noticed in about 2 s
    /// (four keep-alives missed), so that failover captures again within 5 s.
    fn default() -> Self {
        TransportSettings {
            keep_alive: Duration::from_millis(500),
            idle_timeout: Duration::from_secs(2),
        }
    }
}

/// What can go wrong on the transport, in words an operator can act on.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// Certificates or keys could not be loaded or used.
    #[error("tls setup: {0}")]
    Tls(String),
    /// The UDP socket could not be opened.
    #[error("cannot open UDP socket on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The peer refused us, or we refused the peer, during the handshake.
    #[error("{0}")]
    Refused(String),
    /// The peer speaks another protocol version.
    #[error("{0}")]
    VersionMismatch(String),
    /// No answer in time.
    #[error("no answer from {0} (is it running, and is its UDP port reachable?)")]
    TimedOut(String),
    /// The connection ended.
    #[error("connection lost: {0}")]
    ConnectionLost(String),
    /// A frame could not be read or decoded.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The stream ended before a complete frame.
    #[error("the peer closed the stream before answering")]
    StreamClosed,
}

impl From<ConnectionError> for TransportError {
    fn from(e: ConnectionError) -> Self {
        describe_connection_error(e)
    }
}

/// Names the TLS alert a peer sent, for the handshake failures that happen
/// in practice (QUIC carries them as crypto error codes 0x100 + alert).
fn alert_meaning(code: u64) -> Option<&'static str> {
    Some(match code.checked_sub(0x100)? {
        40 => "handshake failure",
        42 => "bad certificate (not signed by the expected CA, or unusable)",
        43 => "unsupported certificate",
        44 => "certificate revoked",
        45 => "certificate expired (or not yet valid)",
        46 => "certificate unknown",
        48 => "unknown CA: the certificate is not signed by this fleet's CA",
        49 => "access denied",
        // Every fleet CA has the same subject, so a certificate of another
        // fleet finds "its" issuer here and fails on the signature.
        51 => "bad signature: the certificate is not signed by this fleet's CA",
        116 => "certificate required: the client presented no certificate",
        120 => "no application protocol: the peer does not speak this recfleet protocol version",
        _ => return None,
    })
}

fn describe_connection_error(e: ConnectionError) -> TransportError {
    match e {
        ConnectionError::ApplicationClosed(a) => {
            let reason = String::from_utf8_lossy(&a.reason).into_owned();
            match a.error_code.into_inner() as u32 {
                close::VERSION_MISMATCH => TransportError::VersionMismatch(reason),
                close::FORBIDDEN => TransportError::Refused(format!("refused by peer: {reason}")),
                _ => TransportError::ConnectionLost(format!("closed by peer: {reason}")),
            }
        }
        ConnectionError::ConnectionClosed(c) => {
            let code = u64::from(c.error_code);
            match alert_meaning(code) {
                Some(m) => {
                    TransportError::Refused(format!("the peer refused the TLS handshake: {m}"))
                }
                None => TransportError::ConnectionLost(format!("closed by peer: {c}")),
            }
        }
        ConnectionError::TransportError(t) => {
            let code = u64::from(t.code);
            match alert_meaning(code) {
                Some(m) => {
                    TransportError::Refused(format!("TLS handshake failed here: {m}: {}", t.reason))
                }
                None => TransportError::ConnectionLost(t.to_string()),
            }
        }
        ConnectionError::TimedOut => {
            TransportError::ConnectionLost("timed out: the peer stopped answering".into())
        }
        other => TransportError::ConnectionLost(other.to_string()),
    }
}

/// Bidirectional streams a client may have open towards the coordinator
/// when it connects: enough for a worker's control stream. quinn keeps state
/// for every stream it allows, so this is kept small for the thousands of
/// workers; the coordinator raises it for consoles once it knows the peer
/// is one ([`CONSOLE_STREAMS`]).
pub const INITIAL_STREAMS: u32 = 4;
/// Bidirectional streams a console (operator, viewer) may have open at once.
pub const CONSOLE_STREAMS: u32 = 256;

fn transport_config(
    settings: TransportSettings,
    remote_streams: u32,
) -> Result<quinn::TransportConfig, TransportError> {
    let mut t = quinn::TransportConfig::default();
    // Zero: this side sends no keep-alives of its own (its peer's keep the
    // connection alive, and their acknowledgements reach this side).
    t.keep_alive_interval((!settings.keep_alive.is_zero()).then_some(settings.keep_alive));
    t.max_idle_timeout(Some(
        settings
            .idle_timeout
            .try_into()
            .map_err(|_| TransportError::Tls("idle timeout too large".into()))?,
    ));
    // Every conversation is a stream the client opens: a client allows the
    // coordinator none; the coordinator allows a few, then more to consoles.
    t.max_concurrent_bidi_streams(VarInt::from_u32(remote_streams));
    t.max_concurrent_uni_streams(VarInt::from_u32(0));
    Ok(t)
}

/// A server endpoint (the coordinator) on `bind`, requiring client certificates.
pub fn server_endpoint(
    bind: SocketAddr,
    tls: &TlsMaterial,
    settings: TransportSettings,
) -> Result<Endpoint, TransportError> {
    let alpns = version::server_alpns();
    let alpn_refs: Vec<&[u8]> = alpns.iter().map(Vec::as_slice).collect();
    let rustls_config = recfleet_certs::server_config(tls, &alpn_refs)
        .map_err(|e| TransportError::Tls(e.to_string()))?;
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(rustls_config)
        .map_err(|e| TransportError::Tls(e.to_string()))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(Arc::new(transport_config(settings, INITIAL_STREAMS)?));
    Endpoint::server(config, bind).map_err(|source| TransportError::Bind { addr: bind, source })
}

/// A client endpoint (worker, console) presenting its certificate.
pub fn client_endpoint(
    tls: &TlsMaterial,
    settings: TransportSettings,
) -> Result<Endpoint, TransportError> {
    client_endpoint_with_alpn(tls, settings, version::ALPN)
}

/// A client endpoint offering another ALPN (tests of version refusal).
pub fn client_endpoint_with_alpn(
    tls: &TlsMaterial,
    settings: TransportSettings,
    alpn: &[u8],
) -> Result<Endpoint, TransportError> {
    let rustls_config = recfleet_certs::client_config(tls, &[alpn])
        .map_err(|e| TransportError::Tls(e.to_string()))?;
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(rustls_config)
        .map_err(|e| TransportError::Tls(e.to_string()))?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(Arc::new(transport_config(settings, 0)?));
    let bind: SocketAddr = ([0, 0, 0, 0], 0).into();
    let mut endpoint =
        Endpoint::client(bind).map_err(|source| TransportError::Bind { addr: bind, source })?;
    endpoint.set_default_client_config(config);
    Ok(endpoint)
}

/// Connects to `addr`, checking that the server's certificate is valid for
/// `server_name` and that the server speaks our version.
pub async fn connect(
    endpoint: &Endpoint,
    addr: SocketAddr,
    server_name: &str,
    timeout: Duration,
) -> Result<Connection, TransportError> {
    let connecting = endpoint
        .connect(addr, server_name)
        .map_err(|e| TransportError::Refused(format!("cannot connect to {addr}: {e}")))?;
    let conn = match tokio::time::timeout(timeout, connecting).await {
        Err(_) => return Err(TransportError::TimedOut(addr.to_string())),
        Ok(Err(e)) => return Err(e.into()),
        Ok(Ok(conn)) => conn,
    };
    // The server accepts some other versions only to refuse them plainly: it
    // closes right after the handshake, and the caller's first request then
    // fails with `VersionMismatch` and the server's message.
    Ok(conn)
}

/// A peer whose handshake succeeded and whose identity is known.
#[derive(Debug)]
pub struct Peer {
    /// The connection.
    pub connection: Connection,
    /// Role and name from its certificate.
    pub identity: Identity,
}

/// Completes an incoming connection: handshake, version check, identity.
/// A peer of another version is closed with a message saying so.
pub async fn accept(incoming: quinn::Incoming) -> Result<Peer, TransportError> {
    let connection = incoming.await?;
    let alpn = connection
        .handshake_data()
        .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|d| d.protocol)
        .unwrap_or_default();
    if alpn != version::ALPN {
        let message = version::mismatch_message(&alpn);
        connection.close(
            VarInt::from_u32(close::VERSION_MISMATCH),
            message.as_bytes(),
        );
        return Err(TransportError::VersionMismatch(message));
    }
    let certs = connection.peer_identity().and_then(|any| {
        any.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
            .ok()
    });
    let identity = match certs.as_deref().and_then(|c| c.first()) {
        Some(cert) => recfleet_certs::identity_from_der(cert),
        None => {
            connection.close(VarInt::from_u32(close::FORBIDDEN), b"no client certificate");
            return Err(TransportError::Refused(
                "the client presented no certificate".into(),
            ));
        }
    };
    match identity {
        Ok(identity) => Ok(Peer {
            connection,
            identity,
        }),
        Err(e) => {
            let message = format!("the certificate's identity is refused: {e}");
            connection.close(VarInt::from_u32(close::FORBIDDEN), message.as_bytes());
            Err(TransportError::Refused(message))
        }
    }
}

/// Writes one frame.
pub async fn write_frame<T: Serialize>(
    send: &mut SendStream,
    msg: &T,
) -> Result<(), TransportError> {
    let bytes = frame::encode(msg)?;
    send.write_all(&bytes).await.map_err(|e| match e {
        // Why the connection went (a TLS refusal that arrived while this
        // frame was being written), not just that it did.
        quinn::WriteError::ConnectionLost(c) => c.into(),
        other => TransportError::ConnectionLost(other.to_string()),
    })
}

/// Reads one frame; `Ok(None)` when the peer finished the stream cleanly
/// between frames. An oversized or malformed frame is an error: the caller
/// closes the stream with [`close::PROTOCOL_ERROR`] (see [`reject_stream`]).
pub async fn read_frame<T: DeserializeOwned>(
    recv: &mut RecvStream,
) -> Result<Option<T>, TransportError> {
    match read_payload(recv).await? {
        Some(payload) => Ok(Some(frame::decode_payload(&payload)?)),
        None => Ok(None),
    }
}

/// One frame read by [`read_frame_lenient`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LenientFrame<T> {
    /// A message.
    Message(T),
    /// A whole frame whose payload did not decode: an unknown variant from a
    /// newer peer, or an invalid value. The stream is still in step (the
    /// frame was read to its end), so the next frame may be read.
    Undecodable(FrameError),
}

impl<T: DeserializeOwned> LenientFrame<T> {
    /// Decodes a payload (without prefix), keeping a decode failure as a
    /// value instead of an error.
    pub fn decode(payload: &[u8]) -> Self {
        match frame::decode_payload(payload) {
            Ok(msg) => LenientFrame::Message(msg),
            Err(e) => LenientFrame::Undecodable(e),
        }
    }
}

/// Like [`read_frame`], but a well-framed payload that does not decode is
/// returned as [`LenientFrame::Undecodable`] rather than as an error, so the
/// caller may skip it (the compatibility rule: a peer may send variants this
/// build does not know). Errors are what breaks the stream itself: a bad or
/// oversized length prefix, a frame cut short, a reset or lost connection.
pub async fn read_frame_lenient<T: DeserializeOwned>(
    recv: &mut RecvStream,
) -> Result<Option<LenientFrame<T>>, TransportError> {
    Ok(read_payload(recv)
        .await?
        .map(|payload| LenientFrame::decode(&payload)))
}

/// Reads one frame's payload (without its prefix) and leaves decoding to
/// the caller; `Ok(None)` when the peer finished the stream cleanly between
/// frames. Every error is a framing or transport error (an oversized or
/// truncated frame, a reset, a lost connection): after one, the stream is
/// unusable. A payload that then fails [`frame::decode_payload`] was still
/// framed correctly, so the next frame can be read.
pub async fn read_frame_bytes(recv: &mut RecvStream) -> Result<Option<Vec<u8>>, TransportError> {
    read_payload(recv).await
}

/// Reads the next frame's payload (without its prefix); `Ok(None)` when the
/// stream finished cleanly between frames. Only framing is checked here.
async fn read_payload(recv: &mut RecvStream) -> Result<Option<Vec<u8>>, TransportError> {
    let mut prefix = [0u8; PREFIX_LEN];
    match recv.read_exact(&mut prefix).await {
        Ok(()) => {}
        Err(quinn::ReadExactError::FinishedEarly(0)) => return Ok(None),
        Err(quinn::ReadExactError::FinishedEarly(n)) => {
            return Err(FrameError::Truncated {
                needed: PREFIX_LEN,
                available: n,
            }
            .into())
        }
        Err(quinn::ReadExactError::ReadError(e)) => return Err(read_error(e)),
    }
    let len = frame::payload_len(prefix)?;
    let mut payload = vec![0u8; len];
    match recv.read_exact(&mut payload).await {
        Ok(()) => {}
        Err(quinn::ReadExactError::FinishedEarly(n)) => {
            return Err(FrameError::Truncated {
                needed: PREFIX_LEN + len,
                available: PREFIX_LEN + n,
            }
            .into())
        }
        Err(quinn::ReadExactError::ReadError(e)) => return Err(read_error(e)),
    }
    Ok(Some(payload))
}

fn read_error(e: quinn::ReadError) -> TransportError {
    match e {
        quinn::ReadError::ConnectionLost(c) => c.into(),
        quinn::ReadError::Reset(code) => {
            TransportError::ConnectionLost(format!("stream reset by peer (code {code})"))
        }
        other => TransportError::ConnectionLost(other.to_string()),
    }
}

/// Abandons a stream after a protocol error, telling the peer why by code.
pub fn reject_stream(send: &mut SendStream, recv: &mut RecvStream) {
    let code = VarInt::from_u32(close::PROTOCOL_ERROR);
    let _ = recv.stop(code);
    let _ = send.reset(code);
}

/// One request on its own stream: open, send `first`, finish, read the answer.
pub async fn request<Req: Serialize, Resp: DeserializeOwned>(
    conn: &Connection,
    first: &Req,
) -> Result<Resp, TransportError> {
    let (mut send, mut recv) = conn.open_bi().await?;
    write_frame(&mut send, first).await?;
    let _ = send.finish();
    read_frame(&mut recv)
        .await?
        .ok_or(TransportError::StreamClosed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use recfleet_certs::{CertificateAuthority, Identity, Role};
    use serde::Deserialize;

    /// What an older peer knows.
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Old {
        A(u32),
        B,
    }

    /// What a newer peer sends: `Old` with a variant appended.
    #[derive(Debug, Serialize, Deserialize)]
    enum New {
        A(u32),
        B,
        C(String),
    }

    #[test]
    fn a_payload_that_does_not_decode_is_a_value_not_an_error() {
        let known = frame::encode(&New::A(7)).unwrap();
        assert_eq!(
            LenientFrame::<Old>::decode(&known[PREFIX_LEN..]),
            LenientFrame::Message(Old::A(7))
        );
        let unknown = frame::encode(&New::C("x".into())).unwrap();
        match LenientFrame::<Old>::decode(&unknown[PREFIX_LEN..]) {
            LenientFrame::Undecodable(FrameError::Malformed(why)) => {
                assert!(why.contains("unknown variant"), "{why}")
            }
            other => panic!("{other:?}"),
        }
        let mut trailing = frame::encode(&New::B).unwrap();
        trailing.push(0);
        assert_eq!(
            LenientFrame::<Old>::decode(&trailing[PREFIX_LEN..]),
            LenientFrame::Undecodable(FrameError::TrailingBytes(1))
        );
    }

    async fn loopback() -> (Connection, Connection, Endpoint, Endpoint) {
        let ca = CertificateAuthority::generate().unwrap();
        let material = |role, name| {
            let issued = ca
                .issue_for_days(Identity::new(role, name).unwrap(), Vec::new(), 1)
                .unwrap();
            ca.tls_material(&issued).unwrap()
        };
        let server = server_endpoint(
            ([127, 0, 0, 1], 0).into(),
            &material(Role::Coordinator, "c"),
            TransportSettings::default(),
        )
        .unwrap();
        let client =
            client_endpoint(&material(Role::Agent, "w"), TransportSettings::default()).unwrap();
        let addr = server.local_addr().unwrap();
        let accepting = tokio::spawn({
            let server = server.clone();
            async move { accept(server.accept().await.unwrap()).await.unwrap() }
        });
        let conn = connect(&client, addr, "localhost", Duration::from_secs(5))
            .await
            .unwrap();
        let peer = accepting.await.unwrap();
        (conn, peer.connection, server, client)
    }

    #[tokio::test]
    async fn lenient_reads_skip_undecodable_frames_and_fail_on_framing() {
        let (client, server, _s, _c) = loopback().await;
        let (mut send, _recv) = client.open_bi().await.unwrap();
        write_frame(&mut send, &New::A(1)).await.unwrap();
        write_frame(&mut send, &New::C("from the future".into()))
            .await
            .unwrap();
        write_frame(&mut send, &New::B).await.unwrap();
        // A frame cut short: 5 bytes announced, 2 sent.
        send.write_all(&[0, 0, 0, 5, 1, 2]).await.unwrap();
        send.finish().unwrap();
        let (_send, mut recv) = server.accept_bi().await.unwrap();
        assert_eq!(
            read_frame_lenient::<Old>(&mut recv).await.unwrap(),
            Some(LenientFrame::Message(Old::A(1)))
        );
        assert!(matches!(
            read_frame_lenient::<Old>(&mut recv).await.unwrap(),
            Some(LenientFrame::Undecodable(FrameError::Malformed(_)))
        ));
        assert_eq!(
            read_frame_lenient::<Old>(&mut recv).await.unwrap(),
            Some(LenientFrame::Message(Old::B))
        );
        assert!(matches!(
            read_frame_lenient::<Old>(&mut recv).await,
            Err(TransportError::Frame(FrameError::Truncated { .. }))
        ));

        // An oversized length is refused before its payload is read.
        let (mut send, _recv) = client.open_bi().await.unwrap();
        send.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
        let (_send, mut recv) = server.accept_bi().await.unwrap();
        assert!(matches!(
            read_frame_lenient::<Old>(&mut recv).await,
            Err(TransportError::Frame(FrameError::Oversized { .. }))
        ));

        // A clean finish between frames is the end, not an error.
        let (mut send, _recv) = client.open_bi().await.unwrap();
        write_frame(&mut send, &New::B).await.unwrap();
        send.finish().unwrap();
        let (_send, mut recv) = server.accept_bi().await.unwrap();
        assert_eq!(
            read_frame_lenient::<Old>(&mut recv).await.unwrap(),
            Some(LenientFrame::Message(Old::B))
        );
        assert_eq!(read_frame_lenient::<Old>(&mut recv).await.unwrap(), None);
    }
}
