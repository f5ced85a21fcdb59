//! Fleet operations with real processes and real Chromium: drain with
//! migrate, make-before-break reassign, failover after kill -9, and SIGTERM
//! of a worker. Each prints the figures it measured.

use std::time::Duration;

use nix::sys::signal::Signal;
use recfleet_agent::demo::DemoServer;
use recfleet_protocol::quic;
use recfleet_protocol::spec::{RecordingSpec, Viewport};
use recfleet_protocol::{
    ConsoleRequest, ConsoleResponse, DrainMode, ErrorCode, EventKind, RecordingId, RecordingState,
    SubscriptionFrame, WorkerName,
};
use recfleet_testkit::{procs, TestFleet};
use recfleet_tests::recordings::stop_and_complete;

fn spec(id: &str, url: String) -> RecordingSpec {
    let mut s = RecordingSpec::new(RecordingId::new(id).unwrap(), url);
    s.viewport = Viewport {
        width: 640,
        height: 360,
    };
    s.fps = 10;
    s.stop.max_duration_secs = Some(600);
    s
}

async fn start(fleet: &mut TestFleet, s: RecordingSpec) {
    match fleet
        .request(ConsoleRequest::StartRecording(s))
        .await
        .unwrap()
    {
        ConsoleResponse::Started { .. } => {}
        other => panic!("{other:?}"),
    }
}

fn w(name: &str) -> WorkerName {
    WorkerName::new(name).unwrap()
}

/// Starts recordings while only w1 is up, so that they all run on w1.
async fn fleet_with_recordings_on_w1(ids: &[&str]) -> (TestFleet, DemoServer, Vec<RecordingId>) {
    let page = DemoServer::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let mut fleet = TestFleet::start().await.unwrap();
    fleet.add_worker(1, 2).unwrap();
    fleet.wait_workers(1, 30).await.unwrap();
    let mut out = Vec::new();
    for id in ids {
        start(&mut fleet, spec(id, page.url(&format!("title={id}")))).await;
        let rid = RecordingId::new(*id).unwrap();
        fleet
            .wait_for(&rid, 60, |d| d.info.state == RecordingState::Recording)
            .await
            .unwrap();
        out.push(rid);
    }
    fleet.add_worker(2, 2).unwrap();
    fleet.wait_workers(2, 30).await.unwrap();
    (fleet, page, out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_drain_with_migrate_moves_both_recordings_without_a_gap() {
    let (mut fleet, _page, ids) = fleet_with_recordings_on_w1(&["drain-a", "drain-b"]).await;
    let w1_tag = format!("{}-", fleet.worker_pid("w1").unwrap());
    let mut events = fleet.subscribe().await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let started = std::time::Instant::now();
    let drain = ConsoleRequest::Drain {
        worker: w("w1"),
        mode: DrainMode::Migrate,
        deadline_secs: None,
        force: false,
    };
    match fleet.request(drain).await.unwrap() {
        ConsoleResponse::Accepted { message } => {
            assert!(message.contains("make-before-break"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    let complete_at = loop {
        let frame = tokio::time::timeout(
            Duration::from_secs(120),
            quic::read_frame::<SubscriptionFrame>(&mut events),
        )
        .await
        .expect("drain did not complete in 120 s")
        .unwrap()
        .unwrap();
        if let SubscriptionFrame::Event(e) = frame {
            if let EventKind::DrainProgress {
                worker,
                complete,
                message,
                ..
            } = e.kind
            {
                println!("drain: {message}");
                if worker.as_str() == "w1" && complete {
                    break started.elapsed();
                }
            }
        }
    };
    // Complete means every slot process of w1 is gone already.
    let left = procs::tagged(&w1_tag);
    assert!(
        left.is_empty(),
        "drain reported complete but w1 still runs {left:?}"
    );
    println!(
        "drain-migrate of 2 recordings took {:.1} s ({:.1} s per recording)",
        complete_at.as_secs_f64(),
        complete_at.as_secs_f64() / 2.0
    );
    for id in &ids {
        let d = fleet.show(id).await.unwrap();
        assert_eq!(d.info.worker, Some(w("w2")), "{id}");
        assert_eq!(d.info.state, RecordingState::Recording);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    for id in &ids {
        let m = stop_and_complete(&mut fleet, id).await;
        assert!(
            m.gaps.is_empty(),
            "{id}: a planned move left a gap: {:?}",
            m.gaps
        );
        // w1's segment ended by the move, then w2's. On two cores the
        // drain runs four browsers at once, and a page on w2 that stops
        // answering for 10 s is restarted into another part (supervision
        // at work, not the move's doing): more parts are allowed there, as
        // long as there is no gap.
        assert_eq!(m.segments[0].worker, w("w1"), "{:#?}", m.segments);
        assert_eq!(
            m.segments[0].end_reason,
            Some(recfleet_protocol::SegmentEndReason::Reassigned),
            "{:#?}",
            m.segments
        );
        assert!(
            m.segments.len() >= 2 && m.segments[1..].iter().all(|s| s.worker == w("w2")),
            "{:#?}",
            m.segments
        );
        if m.segments.len() > 2 {
            println!(
                "{id}: w2 restarted its slot under load ({} parts)",
                m.segments.len() - 1
            );
        }
        let overlap: u64 = m.overlaps.iter().map(|o| o.duration_ms).sum();
        println!(
            "{id}: overlap {overlap} ms, captured {} ms",
            m.total_captured_ms
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_reassign_moves_one_recording_and_refuses_a_full_target() {
    let (mut fleet, page, ids) = fleet_with_recordings_on_w1(&["move-me"]).await;
    let id = ids[0].clone();
    // Fill w2: two recordings of cost 1 on a capacity of 2.
    for extra in ["filler-1", "filler-2"] {
        start(&mut fleet, spec(extra, page.url("title=filler"))).await;
    }
    let fillers: Vec<RecordingId> = ["filler-1", "filler-2"]
        .iter()
        .map(|s| RecordingId::new(*s).unwrap())
        .collect();
    for f in &fillers {
        fleet
            .wait_for(f, 60, |d| d.info.state == RecordingState::Recording)
            .await
            .unwrap();
    }
    let on_w2 = fleet.show(&fillers[0]).await.unwrap().info.worker == Some(w("w2"))
        && fleet.show(&fillers[1]).await.unwrap().info.worker == Some(w("w2"));
    if on_w2 {
        match fleet
            .request(ConsoleRequest::Reassign {
                id: id.clone(),
                to: Some(w("w2")),
            })
            .await
            .unwrap()
        {
            ConsoleResponse::Error(e) => {
                assert_eq!(e.code, ErrorCode::NoCapacity, "{e:?}");
                assert!(e.message.contains("no free capacity"), "{}", e.message);
            }
            other => panic!("a move to a full worker was accepted: {other:?}"),
        }
    }
    for f in &fillers {
        stop_and_complete(&mut fleet, f).await;
    }
    let before = fleet.show(&id).await.unwrap();
    match fleet
        .request(ConsoleRequest::Reassign {
            id: id.clone(),
            to: Some(w("w2")),
        })
        .await
        .unwrap()
    {
        ConsoleResponse::Accepted { message } => println!("{message}"),
        other => panic!("{other:?}"),
    }
    let after = fleet
        .wait_for(&id, 60, |d| d.info.worker == Some(w("w2")))
        .await
        .unwrap();
    assert!(after.info.epoch > before.info.epoch);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let m = stop_and_complete(&mut fleet, &id).await;
    assert!(m.gaps.is_empty(), "{:?}", m.gaps);
    let overlap: u64 = m.overlaps.iter().map(|o| o.duration_ms).sum();
    println!(
        "reassign overlap: {overlap} ms; segments {:?}",
        m.segments
            .iter()
            .map(|s| (
                s.worker.as_str(),
                s.first_frame_at,
                s.last_frame_at,
                s.end_reason.clone()
            ))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        m.segments
            .iter()
            .filter(|s| s.worker.as_str() == "w1")
            .count(),
        1
    );
    assert_eq!(
        m.segments
            .iter()
            .filter(|s| s.worker.as_str() == "w2")
            .count(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_kill_9_of_a_worker_fails_over_to_another() {
    let (mut fleet, _page, ids) = fleet_with_recordings_on_w1(&["failover"]).await;
    let id = ids[0].clone();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let killed = std::time::Instant::now();
    fleet.signal_worker("w1", Signal::SIGKILL);
    let d = fleet
        .wait_for(&id, 60, |d| {
            d.info.worker == Some(w("w2")) && d.info.state == RecordingState::Recording
        })
        .await
        .unwrap();
    println!(
        "kill -9 to recording again elsewhere: {:.1} s (epoch {})",
        killed.elapsed().as_secs_f64(),
        d.info.epoch
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let m = stop_and_complete(&mut fleet, &id).await;
    assert_eq!(m.gaps.len(), 1, "{m:#?}");
    let gap = m.gaps[0].duration_ms;
    println!("failover gap in the manifest: {gap} ms");
    // A generous bound: the 5 s goal is measured by the benchmark.
    assert!(gap <= 15_000, "gap of {gap} ms");
    assert!(m
        .segments
        .iter()
        .any(|s| s.end_reason == Some(recfleet_protocol::SegmentEndReason::WorkerLost)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_sigterm_to_a_worker_moves_its_recording_and_it_exits_0() {
    let (mut fleet, _page, ids) = fleet_with_recordings_on_w1(&["evicted"]).await;
    let id = ids[0].clone();
    let w1_tag = format!("{}-", fleet.worker_pid("w1").unwrap());
    tokio::time::sleep(Duration::from_secs(2)).await;
    fleet.signal_worker("w1", Signal::SIGTERM);
    let code = fleet.wait_worker_exit("w1", 90).await;
    assert_eq!(code, Some(0), "w1 did not exit cleanly");
    let left = procs::wait_none_tagged(&w1_tag, 5);
    assert!(left.is_empty(), "w1 left {left:?}");
    let d = fleet
        .wait_for(&id, 30, |d| d.info.worker == Some(w("w2")))
        .await
        .unwrap();
    assert_eq!(d.info.state, RecordingState::Recording);
    if let ConsoleResponse::Workers(list) =
        fleet.request(ConsoleRequest::ListWorkers).await.unwrap()
    {
        let w1 = list.iter().find(|x| x.name.as_str() == "w1").unwrap();
        assert_eq!(
            w1.state,
            recfleet_protocol::WorkerState::Gone,
            "an expected exit is not a failure"
        );
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let m = stop_and_complete(&mut fleet, &id).await;
    assert!(m.gaps.is_empty(), "{:?}", m.gaps);
}
