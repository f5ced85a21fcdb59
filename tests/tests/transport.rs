//! Real QUIC with real certificates on loopback: who gets in, who is refused
//! and how each side is told, and what bad frames do to a connection.

use std::net::SocketAddr;
use std::time::Duration;

use recfleet_certs::Role;
use recfleet_protocol::quic::{self, TransportError, TransportSettings};
use recfleet_protocol::{ConsoleRequest, ConsoleResponse, OpenStream};
use recfleet_testkit::Pki;
use tokio::sync::mpsc;

const TIMEOUT: Duration = Duration::from_secs(5);

/// A minimal server: answers `WhoAmI` with the peer's identity, reports every
/// accept outcome and stream error on a channel.
struct Server {
    addr: SocketAddr,
    outcomes: mpsc::UnboundedReceiver<Result<String, String>>,
    _endpoint: quinn::Endpoint,
}

async fn start_server(pki: &Pki) -> Server {
    start_server_as(pki, Role::Coordinator, "coord").await
}

/// A server holding a certificate of `role` (a coordinator's, normally)
/// valid for `localhost`.
async fn start_server_as(pki: &Pki, role: Role, name: &str) -> Server {
    let tls = pki.issue_with_sans(role, name, &["localhost"]).unwrap();
    let endpoint = quic::server_endpoint(
        "127.0.0.1:0".parse().unwrap(),
        &tls,
        TransportSettings::default(),
    )
    .unwrap();
    let addr = endpoint.local_addr().unwrap();
    let (tx, outcomes) = mpsc::unbounded_channel();
    let ep = endpoint.clone();
    tokio::spawn(async move {
        while let Some(incoming) = ep.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let peer = match quic::accept(incoming).await {
                    Ok(peer) => peer,
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let _ = tx.send(Ok(peer.identity.to_string()));
                while let Ok((mut send, mut recv)) = peer.connection.accept_bi().await {
                    match quic::read_frame::<OpenStream>(&mut recv).await {
                        Ok(Some(OpenStream::Request(ConsoleRequest::WhoAmI))) => {
                            let resp = ConsoleResponse::Identity {
                                role: peer.identity.role().to_string(),
                                name: peer.identity.name().to_string(),
                                coordinator_version: "test".into(),
                            };
                            let _ = quic::write_frame(&mut send, &resp).await;
                            let _ = send.finish();
                        }
                        Ok(_) => {}
                        Err(e) => {
                            let _ = tx.send(Err(format!("stream: {e}")));
                            quic::reject_stream(&mut send, &mut recv);
                        }
                    }
                }
            });
        }
    });
    Server {
        addr,
        outcomes,
        _endpoint: endpoint,
    }
}

async fn who_am_i(
    client: &quinn::Endpoint,
    addr: SocketAddr,
) -> Result<ConsoleResponse, TransportError> {
    let conn = quic::connect(client, addr, "localhost", TIMEOUT).await?;
    quic::request(&conn, &OpenStream::Request(ConsoleRequest::WhoAmI)).await
}

async fn next_outcome(server: &mut Server) -> Result<String, String> {
    tokio::time::timeout(TIMEOUT, server.outcomes.recv())
        .await
        .expect("server reported nothing")
        .expect("server channel closed")
}

#[tokio::test]
async fn an_operator_is_seen_as_operator_name() {
    let pki = Pki::temp().unwrap();
    let mut server = start_server(&pki).await;
    let client = quic::client_endpoint(
        &pki.issue(Role::Operator, "alice").unwrap(),
        TransportSettings::default(),
    )
    .unwrap();
    let resp = who_am_i(&client, server.addr).await.unwrap();
    assert_eq!(
        resp,
        ConsoleResponse::Identity {
            role: "operator".into(),
            name: "alice".into(),
            coordinator_version: "test".into()
        }
    );
    assert_eq!(next_outcome(&mut server).await, Ok("operator/alice".into()));
}

#[tokio::test]
async fn a_client_of_a_foreign_ca_is_refused_on_both_sides() {
    let pki = Pki::temp().unwrap();
    let foreign = Pki::temp().unwrap();
    let mut server = start_server(&pki).await;
    // The foreign client trusts our CA (so it would accept the server) but
    // its own certificate is signed by another CA.
    let mut material = foreign.issue(Role::Operator, "mallory").unwrap();
    material.ca = pki.issue(Role::Operator, "x").unwrap().ca;
    let client = quic::client_endpoint(&material, TransportSettings::default()).unwrap();
    let err = who_am_i(&client, server.addr)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("refused"), "client saw: {err}");
    let server_side = next_outcome(&mut server).await.unwrap_err();
    assert!(
        server_side.contains("not signed by this fleet's CA"),
        "server saw: {server_side}"
    );
}

#[tokio::test]
async fn a_client_that_does_not_trust_the_server_refuses_it() {
    let pki = Pki::temp().unwrap();
    let foreign = Pki::temp().unwrap();
    let mut server = start_server(&pki).await;
    let client = quic::client_endpoint(
        &foreign.issue(Role::Operator, "bob").unwrap(),
        TransportSettings::default(),
    )
    .unwrap();
    let err = who_am_i(&client, server.addr)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("not signed by this fleet's CA"),
        "client saw: {err}"
    );
    let server_side = next_outcome(&mut server).await.unwrap_err();
    assert!(
        server_side.contains("refused the TLS handshake"),
        "server saw: {server_side}"
    );
}

/// What the client and the server say when the client's certificate is
/// `material`.
async fn refusal_of(pki: &Pki, material: &recfleet_certs::TlsMaterial) -> (String, String) {
    let mut server = start_server(pki).await;
    let client = quic::client_endpoint(material, TransportSettings::default()).unwrap();
    let err = who_am_i(&client, server.addr)
        .await
        .unwrap_err()
        .to_string();
    let server_side = next_outcome(&mut server).await.unwrap_err();
    (err, server_side)
}

#[tokio::test]
async fn an_expired_certificate_is_refused() {
    let pki = Pki::temp().unwrap();
    let old = pki.issue_expired(Role::Operator, "old").unwrap();
    let (err, server_side) = refusal_of(&pki, &old).await;
    assert!(err.contains("expired"), "client saw: {err}");
    assert!(
        server_side.to_lowercase().contains("expired"),
        "server saw: {server_side}"
    );
}

#[tokio::test]
async fn a_certificate_not_valid_yet_is_refused() {
    let pki = Pki::temp().unwrap();
    let early = pki.issue_not_yet_valid(Role::Operator, "early").unwrap();
    let (err, server_side) = refusal_of(&pki, &early).await;
    assert!(
        err.to_lowercase().contains("certificate"),
        "client saw: {err}"
    );
    assert!(
        server_side.contains("not valid yet"),
        "server saw: {server_side}"
    );
}

#[tokio::test]
async fn a_server_that_is_not_a_coordinator_is_refused_by_its_clients() {
    // A worker's certificate from the fleet's own CA, valid for the name
    // dialled: it still is not the fleet's server.
    let pki = Pki::temp().unwrap();
    for role in [Role::Agent, Role::Operator] {
        let server = start_server_as(&pki, role, "impostor").await;
        let client = quic::client_endpoint(
            &pki.issue(Role::Operator, "alice").unwrap(),
            TransportSettings::default(),
        )
        .unwrap();
        let err = who_am_i(&client, server.addr)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("{role}/impostor, not a coordinator")),
            "client saw: {err}"
        );
    }
}

#[tokio::test]
async fn a_client_without_certificate_is_refused() {
    let pki = Pki::temp().unwrap();
    let mut server = start_server(&pki).await;
    let client = recfleet_tests::tls::client_without_certificate(&pki);
    let err = who_am_i(&client, server.addr)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("certificate required") || err.contains("certificate"),
        "client saw: {err}"
    );
    let server_side = next_outcome(&mut server).await.unwrap_err();
    assert!(
        server_side.to_lowercase().contains("certificate"),
        "server saw: {server_side}"
    );
}

#[tokio::test]
async fn another_protocol_version_is_told_so_plainly() {
    let pki = Pki::temp().unwrap();
    let mut server = start_server(&pki).await;
    let client = quic::client_endpoint_with_alpn(
        &pki.issue(Role::Operator, "old-console").unwrap(),
        TransportSettings::default(),
        b"recfleet/0",
    )
    .unwrap();
    let err = who_am_i(&client, server.addr).await.unwrap_err();
    assert!(matches!(err, TransportError::VersionMismatch(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        "protocol version mismatch: the peer speaks recfleet/0, this build speaks recfleet/6"
    );
    let server_side = next_outcome(&mut server).await.unwrap_err();
    assert!(
        server_side.contains("speaks recfleet/0"),
        "server saw: {server_side}"
    );
}

#[tokio::test]
async fn an_unknown_alpn_is_refused_in_the_handshake() {
    let pki = Pki::temp().unwrap();
    let mut server = start_server(&pki).await;
    let client = quic::client_endpoint_with_alpn(
        &pki.issue(Role::Operator, "h3").unwrap(),
        TransportSettings::default(),
        b"h3",
    )
    .unwrap();
    let err = who_am_i(&client, server.addr)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("protocol version"), "client saw: {err}");
    assert!(next_outcome(&mut server).await.is_err());
}

#[tokio::test]
async fn garbage_and_oversized_frames_close_the_stream_not_the_server() {
    let pki = Pki::temp().unwrap();
    let mut server = start_server(&pki).await;
    let client = quic::client_endpoint(
        &pki.issue(Role::Viewer, "v").unwrap(),
        TransportSettings::default(),
    )
    .unwrap();
    let conn = quic::connect(&client, server.addr, "localhost", TIMEOUT)
        .await
        .unwrap();
    assert_eq!(next_outcome(&mut server).await, Ok("viewer/v".into()));

    // Garbage: a frame whose payload is no message.
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(&[0, 0, 0, 3, 0xff, 0xff, 0xff])
        .await
        .unwrap();
    let _ = send.finish();
    assert!(quic::read_frame::<ConsoleResponse>(&mut recv)
        .await
        .is_err());
    let seen = next_outcome(&mut server).await.unwrap_err();
    assert!(seen.contains("malformed frame"), "server saw: {seen}");

    // Oversized: the prefix announces 100 MB; refused before reading it.
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(&100_000_000u32.to_be_bytes()).await.unwrap();
    assert!(quic::read_frame::<ConsoleResponse>(&mut recv)
        .await
        .is_err());
    let seen = next_outcome(&mut server).await.unwrap_err();
    assert!(seen.contains("oversized frame"), "server saw: {seen}");

    // Truncated: the stream ends inside a frame.
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(&[0, 0, 0, 9, 1]).await.unwrap();
    let _ = send.finish();
    assert!(quic::read_frame::<ConsoleResponse>(&mut recv)
        .await
        .is_err());
    let seen = next_outcome(&mut server).await.unwrap_err();
    assert!(seen.contains("truncated frame"), "server saw: {seen}");

    // The connection is still good for real requests.
    let resp: ConsoleResponse = quic::request(&conn, &OpenStream::Request(ConsoleRequest::WhoAmI))
        .await
        .unwrap();
    assert!(matches!(resp, ConsoleResponse::Identity { .. }));
}
