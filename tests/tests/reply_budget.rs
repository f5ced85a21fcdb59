//! A console that asks and never reads its answers must not grow the
//! coordinator's memory, nor slow anyone else down: its replies are charged
//! to the reply budgets, and what does not fit is a small error.

use std::time::Duration;

use recfleet_protocol::quic::{self, TransportSettings};
use recfleet_protocol::spec::RecordingSpec;
use recfleet_protocol::{ConsoleRequest, ConsoleResponse, OpenStream, RecordingId, RecordingState};
use recfleet_testkit::TestFleet;

/// The coordinator's default global reply budget (`ServerLimits`).
const REPLY_BUDGET: u64 = 64 << 20;
/// Recordings created, and asked for in one page by each stalled request.
const RECORDINGS: usize = 1000;
const STALLED_REQUESTS: usize = 1000;
const PINGS: usize = 200;

/// Resident memory of a process, bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("process status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kb * 1024
}

async fn connect(fleet: &TestFleet, stem: &str) -> quinn::Connection {
    let endpoint =
        quic::client_endpoint(&fleet.material(stem).unwrap(), TransportSettings::default())
            .unwrap();
    quic::connect(
        &endpoint,
        fleet.local_addr(),
        "localhost",
        Duration::from_secs(5),
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unread_replies_are_bounded_and_pings_still_answered() {
    let mut fleet = TestFleet::start().await.unwrap();
    fleet.wait_workers(0, 20).await.unwrap();
    // 1,000 recordings with 2 KB URLs: a page of them is about 2 MB. With
    // no worker they stay pending.
    let operator = connect(&fleet, "operator").await;
    let url = format!("https://school.example/room?{}", "a".repeat(1990));
    for chunk in (0..RECORDINGS).collect::<Vec<_>>().chunks(50) {
        let mut starts = tokio::task::JoinSet::new();
        for i in chunk {
            let id = RecordingId::new(format!("big-{i:04}")).unwrap();
            let spec = RecordingSpec::new(id, url.clone());
            let operator = operator.clone();
            starts.spawn(async move {
                quic::request::<_, ConsoleResponse>(
                    &operator,
                    &OpenStream::Request(ConsoleRequest::StartRecording(spec)),
                )
                .await
            });
        }
        while let Some(r) = starts.join_next().await {
            let r = r.unwrap();
            assert!(
                matches!(r, Ok(ConsoleResponse::Started { .. })),
                "start: {r:?}"
            );
        }
    }
    let page = page_again();
    match fleet.request(page.clone()).await.unwrap() {
        ConsoleResponse::RecordingsPage { recordings, .. } => {
            assert_eq!(recordings.len(), RECORDINGS);
            assert!(recordings
                .iter()
                .all(|r| r.state == RecordingState::Pending));
        }
        other => panic!("page: {other:?}"),
    }

    let pid = fleet.coordinator_pid().expect("coordinator pid");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss(pid);

    // Sample the coordinator's memory until told to stop.
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let sampler = tokio::spawn(async move {
        let mut peak = 0;
        loop {
            peak = peak.max(rss(pid));
            tokio::select! {
                _ = &mut stopped => return peak,
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
    });

    // A viewer asks for the big page on 1,000 streams and never reads.
    let viewer = connect(&fleet, "viewer").await;
    let flood = tokio::spawn(async move {
        let mut held = Vec::with_capacity(STALLED_REQUESTS);
        for _ in 0..STALLED_REQUESTS {
            let (mut send, recv) = viewer.open_bi().await.unwrap();
            quic::write_frame(&mut send, &OpenStream::Request(page.clone()))
                .await
                .unwrap();
            let _ = send.finish();
            held.push((send, recv));
        }
        (viewer, held)
    });

    // Meanwhile another client pings: every ping is answered.
    let pinger = connect(&fleet, "operator").await;
    for i in 0..PINGS {
        let payload = (i as u32).to_be_bytes().to_vec();
        let answer = tokio::time::timeout(
            Duration::from_secs(15),
            quic::request::<_, ConsoleResponse>(
                &pinger,
                &OpenStream::Request(ConsoleRequest::Ping {
                    payload: payload.clone(),
                }),
            ),
        )
        .await;
        match answer {
            Ok(Ok(ConsoleResponse::Pong { payload: p })) if p == payload => {}
            other => panic!("ping {i}: {other:?}"),
        }
    }
    let (_viewer, held) = tokio::time::timeout(Duration::from_secs(60), flood)
        .await
        .expect("the stalled requests were all sent")
        .unwrap();
    assert_eq!(held.len(), STALLED_REQUESTS);
    // Let the coordinator answer them all (most with a small refusal).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let _ = stop.send(());
    let peak = sampler.await.unwrap();
    let grown = peak.saturating_sub(before);
    assert!(
        grown < REPLY_BUDGET + (64 << 20),
        "the coordinator grew by {} MiB (from {} MiB); logs in {}",
        grown >> 20,
        before >> 20,
        fleet.dir().display()
    );

    eprintln!(
        "coordinator RSS {} MiB before, peak {} MiB",
        before >> 20,
        peak >> 20
    );
    // Now read what the stalled streams got: the few replies the budget
    // admitted (or a reset, if their write timed out first), and for the
    // rest a small refusal that says why: over budget, or no turn at the
    // driver within the request deadline.
    let mut reads = tokio::task::JoinSet::new();
    for (_send, mut recv) in held {
        reads.spawn(async move {
            tokio::time::timeout(
                Duration::from_secs(30),
                quic::read_frame::<ConsoleResponse>(&mut recv),
            )
            .await
        });
    }
    let (mut pages, mut refused, mut busy, mut cut) = (0, 0, 0, 0);
    while let Some(r) = reads.join_next().await {
        match r.unwrap() {
            Ok(Ok(Some(ConsoleResponse::RecordingsPage { recordings, .. }))) => {
                assert_eq!(recordings.len(), RECORDINGS);
                pages += 1;
            }
            Ok(Ok(Some(ConsoleResponse::Error(e)))) => match e.message.as_str() {
                "reply budget exhausted: read your replies" => refused += 1,
                "the coordinator is busy; retry" => busy += 1,
                other => panic!("a stalled request got: {other}"),
            },
            Ok(Err(e)) if e.to_string().contains("reset") => cut += 1,
            other => panic!("a stalled request got {other:?}"),
        }
    }
    eprintln!("stalled requests: {pages} pages, {cut} cut off, {refused} over budget, {busy} busy");
    assert_eq!(pages + refused + busy + cut, STALLED_REQUESTS);
    assert!(refused > 0, "the budget never refused ({pages} pages)");
    // The budget is free again: a reader gets the page.
    match fleet.request(page_again()).await.unwrap() {
        ConsoleResponse::RecordingsPage { recordings, .. } => {
            assert_eq!(recordings.len(), RECORDINGS)
        }
        other => panic!("page: {other:?}"),
    }
}

fn page_again() -> ConsoleRequest {
    ConsoleRequest::ListRecordingsPage {
        states: vec![],
        limit: 1000,
        after: None,
    }
}
