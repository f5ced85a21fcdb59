//! The coordinator's side of a worker's control stream, with a raw QUIC
//! client in place of a worker (no browsers): frames it cannot decode are
//! skipped, a run of them ends the stream but not the connection, and a
//! worker that sends nothing is let go on the session's own clock.

use std::time::Duration;

use quinn::{Connection, ConnectionError, RecvStream, SendStream};
use recfleet_protocol::error::close;
use recfleet_protocol::quic::{self, TransportSettings};
use recfleet_protocol::{
    ConsoleRequest, ConsoleResponse, CoordinatorMessage, ErrorCode, OpenStream, WorkerHello,
    WorkerMessage, WorkerName, WorkerState, WorkerTelemetry,
};
use recfleet_testkit::TestFleet;

/// A frame that is well framed but whose payload is a `WorkerMessage`
/// variant this build does not know (index 99), as a newer worker's would be.
const FROM_THE_FUTURE: [u8; 5] = [0, 0, 0, 1, 99];

/// Connects as worker w1 and says hello; the endpoint is returned to be
/// held as long as the connection.
async fn worker(fleet: &TestFleet) -> (quinn::Endpoint, Connection, SendStream, RecvStream) {
    let endpoint = quic::client_endpoint(
        &fleet.material("agent-w1").unwrap(),
        TransportSettings::default(),
    )
    .unwrap();
    let conn = quic::connect(
        &endpoint,
        fleet.local_addr(),
        "localhost",
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    let hello = WorkerHello {
        name: WorkerName::new("w1").unwrap(),
        version: "test".into(),
        capacity: 1,
        labels: Default::default(),
        running: vec![],
        draining: false,
        host: String::new(),
    };
    quic::write_frame(&mut send, &OpenStream::Worker(hello))
        .await
        .unwrap();
    match quic::read_frame::<CoordinatorMessage>(&mut recv).await {
        Ok(Some(CoordinatorMessage::Welcome { .. })) => {}
        other => panic!("hello: {other:?}"),
    }
    (endpoint, conn, send, recv)
}

fn telemetry() -> WorkerMessage {
    WorkerMessage::Telemetry(WorkerTelemetry {
        at: recfleet_protocol::now_ms(),
        cpu_millicores: 0,
        rss_bytes: 0,
        slots: vec![],
        ..Default::default()
    })
}

async fn w1_state(fleet: &mut TestFleet) -> Option<WorkerState> {
    match fleet.request(ConsoleRequest::ListWorkers).await.unwrap() {
        ConsoleResponse::Workers(list) => list
            .into_iter()
            .find(|w| w.name.as_str() == "w1")
            .map(|w| w.state),
        other => panic!("workers: {other:?}"),
    }
}

async fn wait_state(fleet: &mut TestFleet, want: WorkerState, secs: u64) {
    let until = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let got = w1_state(fleet).await;
        if got == Some(want) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "w1 is {got:?}, not {want:?}; logs in {}",
            fleet.dir().display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn coordinator_log(fleet: &TestFleet) -> String {
    std::fs::read_to_string(fleet.log_path("coordinator")).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_frames_are_skipped_then_end_the_stream_not_the_connection() {
    let mut fleet = TestFleet::start().await.unwrap();
    let (_endpoint, conn, mut send, mut recv) = worker(&fleet).await;
    wait_state(&mut fleet, WorkerState::Ready, 20).await;

    // 15 in a row, then a frame it knows: the run starts again.
    for _ in 0..15 {
        send.write_all(&FROM_THE_FUTURE).await.unwrap();
    }
    quic::write_frame(&mut send, &telemetry()).await.unwrap();
    for _ in 0..15 {
        send.write_all(&FROM_THE_FUTURE).await.unwrap();
    }
    quic::write_frame(&mut send, &telemetry()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(w1_state(&mut fleet).await, Some(WorkerState::Ready));
    assert!(conn.close_reason().is_none());

    // 16 in a row: the stream is reset with PROTOCOL_ERROR...
    for _ in 0..16 {
        send.write_all(&FROM_THE_FUTURE).await.unwrap();
    }
    let read = tokio::time::timeout(Duration::from_secs(5), recv.read(&mut [0u8; 64]))
        .await
        .expect("the coordinator ended the stream");
    match read {
        Err(quinn::ReadError::Reset(code)) => {
            assert_eq!(code.into_inner(), u64::from(close::PROTOCOL_ERROR))
        }
        other => panic!("expected a reset, got {other:?}"),
    }
    wait_state(&mut fleet, WorkerState::Lost, 10).await;
    let log = coordinator_log(&fleet);
    assert!(
        log.contains("16 frames in a row did not decode"),
        "coordinator log: {log}"
    );
    assert!(log.contains("skipped a worker frame that does not decode"));

    // ...but the connection goes on: a new stream on it is answered (with
    // a refusal, since an agent certificate may not use the console).
    assert!(conn.close_reason().is_none(), "{:?}", conn.close_reason());
    let answer: ConsoleResponse =
        quic::request(&conn, &OpenStream::Request(ConsoleRequest::ListWorkers))
            .await
            .unwrap();
    match answer {
        ConsoleResponse::Error(e) => assert_eq!(e.code, ErrorCode::Forbidden),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_sends_nothing_is_let_go_on_the_session_clock() {
    let mut fleet = TestFleet::start().await.unwrap();
    let (_endpoint, conn, mut send, _recv) = worker(&fleet).await;
    wait_state(&mut fleet, WorkerState::Ready, 20).await;
    // Frames every half second keep it (the limit is idle timeout 2 s + 1 s).
    let mut last_frame = tokio::time::Instant::now();
    for _ in 0..10 {
        quic::write_frame(&mut send, &telemetry()).await.unwrap();
        last_frame = tokio::time::Instant::now();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(conn.close_reason().is_none());
    assert_eq!(w1_state(&mut fleet).await, Some(WorkerState::Ready));
    // Then silence: QUIC keep-alives still flow, but no frame does.
    let closed = tokio::time::timeout(Duration::from_secs(10), conn.closed())
        .await
        .expect("the coordinator let the silent worker go");
    let after = last_frame.elapsed();
    match closed {
        ConnectionError::ApplicationClosed(a) => {
            assert_eq!(a.error_code.into_inner(), u64::from(close::UNRESPONSIVE));
            assert_eq!(&a.reason[..], b"silent past the limit");
        }
        other => panic!("closed with {other:?}"),
    }
    assert!(
        after >= Duration::from_millis(2900),
        "let go after only {after:?}"
    );
    wait_state(&mut fleet, WorkerState::Lost, 10).await;
    assert!(coordinator_log(&fleet).contains("silent past the limit"));
}
