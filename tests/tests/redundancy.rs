//! Redundancy 2 with real processes and real Chromium: a recording made by
//! two workers on two hosts at once survives kill -9 of the first copy's
//! worker with no gap in its manifest and no slate in recording.mp4, and a
//! new second copy is placed on the worker left. Prints what it measured.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use recfleet_agent::demo::DemoServer;
use recfleet_protocol::{ConsoleRequest, ConsoleResponse, RecordingId, RecordingState, WorkerName};
use recfleet_testkit::{FleetOptions, TestFleet};
use recfleet_tests::media::{self, repeated_frames};
use recfleet_tests::recordings::{small_spec, stop_and_complete, wall_span_ms};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_redundancy_two_survives_kill_9_of_a_worker_without_a_gap() {
    let page = DemoServer::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let mut fleet = TestFleet::start_with(FleetOptions {
        stitch: true,
        ..Default::default()
    })
    .await
    .unwrap();
    // Two hosts, as the coordinator sees them: the copies never share one
    // while another exists.
    fleet
        .add_worker_with(1, 1, &[("RECFLEET_HOST", "rack-a")])
        .unwrap();
    fleet
        .add_worker_with(2, 1, &[("RECFLEET_HOST", "rack-b")])
        .unwrap();
    fleet.wait_workers(2, 30).await.unwrap();

    let id = RecordingId::new("twice").unwrap();
    let mut spec = small_spec(&id, page.url("title=twice"));
    spec.fps = 5;
    spec.redundancy = 2;
    match fleet
        .request(ConsoleRequest::StartRecording(spec))
        .await
        .unwrap()
    {
        ConsoleResponse::Started { .. } => {}
        other => panic!("{other:?}"),
    }
    let d = fleet
        .wait_for(&id, 90, |d| {
            d.info.state == RecordingState::Recording
                && d.info.copy.as_ref().is_some_and(|c| c.capturing)
        })
        .await
        .unwrap();
    let first = d.info.worker.clone().unwrap();
    let copy = d.info.copy.clone().unwrap().worker;
    assert_ne!(first, copy);
    println!("recording on {first}, its second copy on {copy}");

    // A third worker joins, to take the next second copy.
    fleet
        .add_worker_with(3, 1, &[("RECFLEET_HOST", "rack-c")])
        .unwrap();
    fleet.wait_workers(3, 30).await.unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;

    let killed = Instant::now();
    fleet.signal_worker(first.as_str(), Signal::SIGKILL);
    let d = fleet
        .wait_for(&id, 30, |d| d.info.worker.as_ref() == Some(&copy))
        .await
        .unwrap();
    println!(
        "kill -9 of {first}: {copy} holds the recording after {:.2} s, state {}",
        killed.elapsed().as_secs_f64(),
        d.info.state
    );
    assert_eq!(d.info.state, RecordingState::Recording, "{:?}", d.info);
    let d = fleet
        .wait_for(&id, 90, |d| {
            d.info.copy.as_ref().is_some_and(|c| c.capturing)
        })
        .await
        .unwrap();
    let third = d.info.copy.clone().unwrap().worker;
    assert_eq!(third, WorkerName::new("w3").unwrap());
    assert_eq!(d.info.state, RecordingState::Recording);
    tokio::time::sleep(Duration::from_secs(3)).await;

    let m = stop_and_complete(&mut fleet, &id).await;
    // Nothing was lost: the manifest has no gap, the file no slate.
    assert!(m.gaps.is_empty(), "{:#?}", m.gaps);
    let captured: Vec<_> = m
        .segments
        .iter()
        .filter(|s| s.first_frame_at.is_some())
        .collect();
    assert_eq!(captured.len(), 3, "{:#?}", m.segments);
    assert!(m
        .segments
        .iter()
        .any(|s| s.end_reason == Some(recfleet_protocol::SegmentEndReason::WorkerLost)));
    let outputs = m.outputs.clone().expect("outputs");
    assert!(outputs.gaps_in_file.is_empty(), "{outputs:#?}");
    let mp4 = fleet.recordings().join(id.as_str()).join("recording.mp4");
    let p = media::probe(&mp4).unwrap();
    let span = wall_span_ms(&m) as f64 / 1000.0;
    println!(
        "recording.mp4: {:.2} s for {span:.2} s of wall time, no gap",
        p.duration
    );
    assert!(
        (p.duration - span).abs() <= 1.0,
        "{} s for {span} s of wall time",
        p.duration
    );
    // The picture moves throughout, and no moment is shown twice.
    let hashes = media::frame_hashes(&mp4, 5).unwrap();
    let freeze = media::longest_freeze(&hashes, 5, 0);
    assert!(freeze <= 1.0, "the picture froze for {freeze} s");
    let repeats = repeated_frames(&hashes, 5, &[]);
    assert!(repeats.is_empty(), "frames shown twice: {repeats:?}");
    fleet.shutdown().await;
}
