//! The client against a fake coordinator on loopback (real QUIC and mTLS,
//! no agent): requests and their deadline, pages, reconnecting on demand,
//! and a subscription that resubscribes after its stream is cut.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use quinn::{Connection, RecvStream, SendStream};
use recfleet_certs::{CertificateAuthority, Identity, Role};
use recfleet_client::{connect, Client, ClientError, Subscription, Update};
use recfleet_protocol::quic::{self, TransportSettings};
use recfleet_protocol::{
    ConsoleRequest, ConsoleResponse, Epoch, ErrorCode, Event, EventKind, OpenStream, RecordingId,
    RecordingInfo, RecordingState, SubscriptionFrame, WireError, WorkerInfo, WorkerName,
    WorkerState,
};

const RECORDINGS: u32 = 2500;

#[derive(Default)]
struct Seen {
    connections: Mutex<Vec<Connection>>,
    subscriptions: AtomicU32,
    pages: AtomicU32,
}

struct Fake {
    _endpoint: quinn::Endpoint,
    addr: SocketAddr,
    seen: Arc<Seen>,
    ca: CertificateAuthority,
}

impl Fake {
    async fn start() -> Fake {
        let ca = CertificateAuthority::generate().unwrap();
        let issued = ca
            .issue_for_days(
                Identity::new(Role::Coordinator, "fake").unwrap(),
                Vec::new(),
                1,
            )
            .unwrap();
        let endpoint = quic::server_endpoint(
            ([127, 0, 0, 1], 0).into(),
            &ca.tls_material(&issued).unwrap(),
            TransportSettings::default(),
        )
        .unwrap();
        let addr = endpoint.local_addr().unwrap();
        let seen = Arc::new(Seen::default());
        let (ep, s) = (endpoint.clone(), seen.clone());
        tokio::spawn(async move {
            while let Some(incoming) = ep.accept().await {
                let s = s.clone();
                tokio::spawn(async move {
                    let Ok(peer) = quic::accept(incoming).await else {
                        return;
                    };
                    s.connections.lock().unwrap().push(peer.connection.clone());
                    while let Ok((send, recv)) = peer.connection.accept_bi().await {
                        tokio::spawn(answer(s.clone(), send, recv));
                    }
                });
            }
        });
        Fake {
            _endpoint: endpoint,
            addr,
            seen,
            ca,
        }
    }

    /// An operator's client endpoint of the fake's fleet.
    fn endpoint(&self) -> quinn::Endpoint {
        let issued = self
            .ca
            .issue_for_days(Identity::new(Role::Operator, "op").unwrap(), Vec::new(), 1)
            .unwrap();
        connect::endpoint(&self.ca.tls_material(&issued).unwrap()).unwrap()
    }

    fn client(&self) -> Client {
        Client::new(self.endpoint(), self.addr.to_string(), "localhost")
    }

    fn connections(&self) -> usize {
        self.seen.connections.lock().unwrap().len()
    }

    /// Closes every connection from the coordinator's side.
    fn cut(&self) {
        for c in self.seen.connections.lock().unwrap().iter() {
            c.close(0u32.into(), b"restart");
        }
    }
}

fn worker(name: &str) -> WorkerInfo {
    WorkerInfo {
        name: WorkerName::new(name).unwrap(),
        state: WorkerState::Ready,
        address: "127.0.0.1:1".into(),
        version: "test".into(),
        capacity: 1,
        used: 0,
        labels: Default::default(),
        cpu_millicores: 0,
        rss_bytes: 0,
        rtt_us: 0,
        connected_at: 0,
        last_seen: 0,
        recordings: Vec::new(),
        upload_buffer_bytes: 0,
        upload_buffer_full: false,
        ready: Default::default(),
        admission: Default::default(),
        host: String::new(),
    }
}

fn recording(n: u32) -> RecordingInfo {
    RecordingInfo {
        id: RecordingId::new(format!("r{n}")).unwrap(),
        state: RecordingState::Completed,
        url: "https://class.example/".into(),
        worker: None,
        epoch: Epoch(1),
        created_at: u64::from(n),
        started_at: None,
        ended_at: None,
        bytes: 0,
        fps_milli: 0,
        repeated_permille: 0,
        restarts: 0,
        segments: 0,
        reason: None,
        upload_lag_ms: 0,
        health: Default::default(),
        level_db: None,
        copy: None,
    }
}

async fn answer(seen: Arc<Seen>, mut send: SendStream, mut recv: RecvStream) {
    let Ok(Some(first)) = quic::read_frame::<OpenStream>(&mut recv).await else {
        return;
    };
    let reply = match first {
        OpenStream::Request(ConsoleRequest::WhoAmI) => ConsoleResponse::Identity {
            role: "operator".into(),
            name: "op".into(),
            coordinator_version: "fake".into(),
        },
        OpenStream::Request(ConsoleRequest::ListWorkers) => {
            ConsoleResponse::Workers(vec![worker("w1")])
        }
        OpenStream::Request(ConsoleRequest::ListRecordingsPage { limit, after, .. }) => {
            seen.pages.fetch_add(1, Ordering::SeqCst);
            let from: u32 = after.map_or(0, |t| t.parse().unwrap());
            let to = (from + limit).min(RECORDINGS);
            ConsoleResponse::RecordingsPage {
                recordings: (from..to).map(recording).collect(),
                next: (to < RECORDINGS).then(|| to.to_string()),
            }
        }
        OpenStream::Request(ConsoleRequest::ShowRecording { id }) => ConsoleResponse::Error(
            WireError::new(ErrorCode::NotFound, format!("no recording {id}")),
        ),
        // Never answered: the client's deadline is what ends it.
        OpenStream::Request(ConsoleRequest::Ping { .. }) => {
            std::future::pending::<()>().await;
            return;
        }
        OpenStream::Request(other) => panic!("unexpected request {other:?}"),
        OpenStream::Query(q) => panic!("unexpected query {q:?}"),
        OpenStream::Events(r) => panic!("unexpected events request {r:?}"),
        OpenStream::WorkerGone(g) => panic!("unexpected worker report {g:?}"),
        OpenStream::Subscribe => {
            let n = seen.subscriptions.fetch_add(1, Ordering::SeqCst) + 1;
            let seq = u64::from(n) * 10;
            let frames = [
                SubscriptionFrame::Snapshot {
                    seq,
                    workers: vec![worker("w1")],
                    recordings: vec![recording(1)],
                },
                SubscriptionFrame::SnapshotMore {
                    workers: vec![worker("w2")],
                    recordings: Vec::new(),
                },
                SubscriptionFrame::Event(Event {
                    seq: seq + 1,
                    at: 0,
                    kind: EventKind::WorkerLeft {
                        name: WorkerName::new("w2").unwrap(),
                    },
                    by: None,
                }),
            ];
            for f in &frames {
                quic::write_frame(&mut send, f).await.unwrap();
            }
            if n == 1 {
                // The first subscription is cut after its first event.
                let _ = send.finish();
            } else {
                std::future::pending::<()>().await;
            }
            return;
        }
        OpenStream::Worker(_) => return,
    };
    let _ = quic::write_frame(&mut send, &reply).await;
    let _ = send.finish();
}

async fn within<T>(secs: u64, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .expect("timed out")
}

#[tokio::test]
async fn typed_requests_pages_and_error_answers() {
    let fake = Fake::start().await;
    let client = fake.client();
    assert!(
        client.addr().is_none(),
        "nothing connects before it is needed"
    );
    let me = within(10, client.whoami()).await.unwrap();
    assert_eq!((me.role.as_str(), me.name.as_str()), ("operator", "op"));
    assert_eq!(client.addr(), Some(fake.addr));

    let workers = within(10, client.workers()).await.unwrap();
    assert_eq!(workers.len(), 1);

    let all = within(10, client.recordings_all(&[])).await.unwrap();
    assert_eq!(all.len(), RECORDINGS as usize);
    assert_eq!(all[1234].id.as_str(), "r1234");
    assert_eq!(fake.seen.pages.load(Ordering::SeqCst), 3, "pages of 1000");

    let err = within(10, client.show(RecordingId::new("nope").unwrap()))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::Wire(w) if w.code == ErrorCode::NotFound),
        "{err:?}"
    );
    // One connection for all of it.
    assert_eq!(fake.connections(), 1);
}

#[tokio::test]
async fn a_request_without_an_answer_ends_at_its_deadline() {
    let fake = Fake::start().await;
    let client = fake
        .client()
        .with_request_timeout(Duration::from_millis(300));
    let err = within(
        10,
        client.request(ConsoleRequest::Ping {
            payload: Vec::new(),
        }),
    )
    .await
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "no answer from the coordinator at {} within 300 ms",
            fake.addr
        )
    );
    // The connection is still good.
    within(10, client.whoami()).await.unwrap();
}

#[tokio::test]
async fn a_lost_connection_is_made_again_by_the_next_request() {
    let fake = Fake::start().await;
    let client = fake.client();
    within(10, client.whoami()).await.unwrap();
    fake.cut();
    // Once the close reaches the client, the connection is forgotten...
    within(10, async {
        while client.addr().is_some() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    // ...and the next request connects again.
    within(10, client.whoami()).await.unwrap();
    assert_eq!(fake.connections(), 2);
}

#[tokio::test]
async fn nothing_listening_is_unreachable_and_names_the_address() {
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let fake = Fake::start().await;
    let client = Client::new(fake.endpoint(), format!("127.0.0.1:{port}"), "localhost")
        .with_connect_timeout(Duration::from_millis(500));
    let err = within(10, client.workers()).await.unwrap_err();
    assert!(
        err.to_string().starts_with(&format!(
            "cannot connect to the coordinator at 127.0.0.1:{port}: "
        )),
        "{err}"
    );
}

async fn next(sub: &mut Subscription) -> Update {
    within(10, sub.next()).await.expect("the task runs")
}

#[tokio::test]
async fn a_cut_subscription_resubscribes_and_starts_from_a_fresh_snapshot() {
    let fake = Fake::start().await;
    let client = fake.client();
    let mut sub =
        Subscription::with_backoff(client, Duration::from_millis(10), Duration::from_millis(50));

    for round in 1..=2u64 {
        match next(&mut sub).await {
            Update::Connected { identity, .. } => assert_eq!(identity.name, "op"),
            other => panic!("round {round}: {other:?}"),
        }
        match next(&mut sub).await {
            Update::Frame(f) if matches!(*f, SubscriptionFrame::Snapshot { seq, .. } if seq == round * 10) =>
                {}
            other => panic!("round {round}: {other:?}"),
        }
        assert!(matches!(
            next(&mut sub).await,
            Update::Frame(f) if matches!(*f, SubscriptionFrame::SnapshotMore { .. })
        ));
        assert!(matches!(
            next(&mut sub).await,
            Update::Frame(f) if matches!(*f, SubscriptionFrame::Event(_))
        ));
        if round == 1 {
            match next(&mut sub).await {
                Update::Disconnected { error, retry_in } => {
                    assert!(matches!(error, ClientError::SubscriptionEnded), "{error:?}");
                    assert!(retry_in <= Duration::from_millis(50), "{retry_in:?}");
                }
                other => panic!("{other:?}"),
            }
        }
    }
    assert_eq!(fake.seen.subscriptions.load(Ordering::SeqCst), 2);
    // The stream was cut, not the connection: the same one is used again.
    assert_eq!(fake.connections(), 1);
}
