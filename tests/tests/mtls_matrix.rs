//! The mutual-TLS matrix against the real coordinator process: every way a
//! peer can be the wrong one is refused, the client is told why, the
//! coordinator logs why, and the refusal is in the audit trail (as the
//! identity when the handshake said who, else as `unauthenticated@IP`).

use std::time::Duration;

use recfleet_certs::{Role, TlsMaterial};
use recfleet_protocol::quic::{self, TransportSettings};
use recfleet_protocol::{ConsoleRequest, ConsoleResponse, DrainMode, OpenStream, WorkerName};
use recfleet_testkit::procs::workspace_bin;
use recfleet_testkit::{Pki, TestFleet};
use recfleet_tests::tls::client_without_certificate;

const TIMEOUT: Duration = Duration::from_secs(5);

/// What the client is told when it asks `req` with `client`.
async fn ask(fleet: &TestFleet, client: &quinn::Endpoint, req: ConsoleRequest) -> String {
    let conn = match quic::connect(client, fleet.addr, "localhost", TIMEOUT).await {
        Ok(c) => c,
        Err(e) => return e.to_string(),
    };
    match quic::request(&conn, &OpenStream::Request(req)).await {
        Ok(ConsoleResponse::Error(e)) => format!("error: {}", e.message),
        Ok(other) => format!("accepted: {other:?}"),
        Err(e) => e.to_string(),
    }
}

fn endpoint(material: &TlsMaterial) -> quinn::Endpoint {
    quic::client_endpoint(material, TransportSettings::default()).unwrap()
}

struct Case {
    name: &'static str,
    client: quinn::Endpoint,
    req: ConsoleRequest,
    /// In what the client is told (lower case).
    told: &'static str,
    /// In the coordinator's log line and its audit entry.
    logged: &'static str,
    /// The audit entry's actor.
    actor: &'static str,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_wrong_peer_is_refused_told_logged_and_audited() {
    let fleet = TestFleet::start().await.unwrap();
    let pki = fleet.pki.clone();
    let foreign = Pki::temp().unwrap();
    let drain = ConsoleRequest::Drain {
        worker: WorkerName::new("w1").unwrap(),
        mode: DrainMode::Migrate,
        deadline_secs: None,
        force: false,
    };
    let mut foreign_client = foreign.issue(Role::Operator, "mallory").unwrap();
    foreign_client.ca = pki.issue(Role::Operator, "x").unwrap().ca;
    let cases = vec![
        Case {
            name: "no certificate",
            client: client_without_certificate(&pki),
            req: ConsoleRequest::WhoAmI,
            told: "certificate required",
            logged: "the client presented no certificate",
            actor: "unauthenticated@127.0.0.1",
        },
        Case {
            name: "a foreign CA",
            client: endpoint(&foreign_client),
            req: ConsoleRequest::WhoAmI,
            told: "not signed by this fleet's ca",
            logged: "not signed by this fleet's ca",
            actor: "unauthenticated@127.0.0.1",
        },
        Case {
            name: "expired",
            client: endpoint(&pki.issue_expired(Role::Operator, "old").unwrap()),
            req: ConsoleRequest::WhoAmI,
            told: "certificate expired",
            logged: "certificate expired: verification time",
            actor: "unauthenticated@127.0.0.1",
        },
        Case {
            name: "not valid yet",
            client: endpoint(&pki.issue_not_yet_valid(Role::Operator, "early").unwrap()),
            req: ConsoleRequest::WhoAmI,
            told: "not yet valid",
            logged: "certificate not valid yet",
            actor: "unauthenticated@127.0.0.1",
        },
        Case {
            name: "no identity",
            client: endpoint(&pki.issue_odd(&[], false).unwrap()),
            req: ConsoleRequest::WhoAmI,
            told: "no recfleet identity",
            logged: "no recfleet identity",
            actor: "unauthenticated@127.0.0.1",
        },
        Case {
            name: "two identities",
            client: endpoint(
                &pki.issue_odd(
                    &["spiffe://recfleet/operator/a", "spiffe://recfleet/viewer/b"],
                    false,
                )
                .unwrap(),
            ),
            req: ConsoleRequest::WhoAmI,
            told: "more than one recfleet identity",
            logged: "more than one recfleet identity",
            actor: "unauthenticated@127.0.0.1",
        },
        Case {
            name: "another trust domain",
            client: endpoint(
                &pki.issue_odd(&["spiffe://other/operator/a"], false)
                    .unwrap(),
            ),
            req: ConsoleRequest::WhoAmI,
            told: "no recfleet identity",
            logged: "no recfleet identity",
            actor: "unauthenticated@127.0.0.1",
        },
        Case {
            name: "a server-only certificate as a client",
            client: endpoint(
                &pki.issue_odd(&["spiffe://recfleet/operator/s"], true)
                    .unwrap(),
            ),
            req: ConsoleRequest::WhoAmI,
            told: "unsupported certificate",
            logged: "does not allow extended key usage for client authentication",
            actor: "unauthenticated@127.0.0.1",
        },
        Case {
            name: "another protocol version",
            client: quic::client_endpoint_with_alpn(
                &pki.issue(Role::Operator, "old-console").unwrap(),
                TransportSettings::default(),
                b"recfleet/4",
            )
            .unwrap(),
            req: ConsoleRequest::WhoAmI,
            told: "protocol version mismatch: the peer speaks recfleet/4",
            logged: "protocol version mismatch",
            actor: "unauthenticated@127.0.0.1",
        },
        Case {
            name: "a coordinator certificate as a client",
            client: endpoint(&pki.issue(Role::Coordinator, "rogue").unwrap()),
            req: drain.clone(),
            told: "error: coordinator/rogue may not",
            logged: "drain",
            actor: "coordinator/rogue",
        },
        Case {
            name: "a viewer acting",
            client: endpoint(&pki.issue(Role::Viewer, "bob").unwrap()),
            req: drain.clone(),
            told: "error: viewer/bob may not",
            logged: "drain",
            actor: "viewer/bob",
        },
        Case {
            name: "an agent acting as operator",
            client: endpoint(&pki.issue(Role::Agent, "w9").unwrap()),
            req: drain.clone(),
            told: "error: agent/w9 may not",
            logged: "drain",
            actor: "agent/w9",
        },
    ];
    let log = fleet.log_path("coordinator");
    for case in &cases {
        let told = ask(&fleet, &case.client, case.req.clone()).await;
        println!("{}: the client is told: {told}", case.name);
        assert!(
            told.to_lowercase().contains(case.told),
            "{}: the client was told {told:?}, not {:?}",
            case.name,
            case.told
        );
    }
    // A wrong ALPN fails the handshake itself (TLS alert 120).
    let h3 = quic::client_endpoint_with_alpn(
        &pki.issue(Role::Operator, "h3").unwrap(),
        TransportSettings::default(),
        b"h3",
    )
    .unwrap();
    let told = ask(&fleet, &h3, ConsoleRequest::WhoAmI).await;
    println!("a wrong ALPN: the client is told: {told}");
    assert!(told.contains("application protocol"), "{told}");

    // The coordinator's side: each refusal logged with its reason, and
    // audited (operators read the trail).
    let operator = endpoint(&pki.material("operator").unwrap());
    let conn = quic::connect(&operator, fleet.addr, "localhost", TIMEOUT)
        .await
        .unwrap();
    let mut trail = Vec::new();
    for _ in 0..40 {
        trail = match quic::request(
            &conn,
            &OpenStream::Request(ConsoleRequest::Audit { limit: 100 }),
        )
        .await
        .unwrap()
        {
            ConsoleResponse::Audit(entries) => entries,
            other => panic!("no audit trail: {other:?}"),
        };
        // Every case and the wrong ALPN.
        if trail.iter().filter(|e| e.action == "refused").count() > cases.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let text = std::fs::read_to_string(&log).unwrap().to_lowercase();
    for l in text.lines().filter(|l| l.contains("refused")) {
        println!("coordinator: {l}");
    }
    for case in &cases {
        assert!(
            text.lines()
                .any(|l| l.contains("refused") && l.contains(case.logged)),
            "{}: no refusal with {:?} in the coordinator's log {}",
            case.name,
            case.logged,
            log.display()
        );
        assert!(
            trail.iter().any(|e| e.action == "refused"
                && e.actor == case.actor
                && e.target.to_lowercase().contains(case.logged)),
            "{}: not audited as {} with {:?}: {trail:#?}",
            case.name,
            case.actor,
            case.logged
        );
    }
    assert!(
        trail
            .iter()
            .any(|e| e.actor == "unauthenticated@127.0.0.1"
                && e.target.contains("application protocol")),
        "the wrong ALPN is not audited: {trail:#?}"
    );
    fleet.shutdown().await;
}

/// The server side of the matrix: a coordinator refuses to start with a
/// certificate of another role (and its clients refuse such a server:
/// transport.rs).
#[test]
fn a_coordinator_does_not_start_with_another_roles_certificate() {
    let pki = Pki::temp().unwrap();
    pki.agent_file("w1").unwrap();
    let data = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(workspace_bin("recfleet-agent"))
        .arg("coordinator")
        .args(["--listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(data.path())
        .arg("--ca")
        .arg(pki.ca_file())
        .arg("--cert")
        .arg(pki.dir().join("agent-w1.pem"))
        .arg("--key")
        .arg(pki.dir().join("agent-w1-key.pem"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(
        stderr.contains("a coordinator needs a coordinator certificate"),
        "{stderr}"
    );
}
