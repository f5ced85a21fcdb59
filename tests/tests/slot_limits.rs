//! Per-slot resource limits with real Chromium: a page that eats memory
//! reaches its slot's limit and is killed by the kernel inside that slot's
//! control group, its part ends saying "out of memory", and the recording
//! beside it on the same worker goes on untouched.

use recfleet_agent::demo::DemoServer;
use recfleet_protocol::manifest::SegmentEndReason;
use recfleet_protocol::spec::RecordingSpec;
use recfleet_protocol::{ConsoleRequest, RecordingId, RecordingState};
use recfleet_testkit::TestFleet;
use recfleet_tests::recordings::{small_spec, stop_and_complete};

fn spec(id: &RecordingId, url: String) -> RecordingSpec {
    small_spec(id, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_a_page_over_its_memory_limit_is_killed_alone_and_said_so() {
    let page = DemoServer::start(([127, 0, 0, 1], 0).into()).await.unwrap();
    let mut fleet = TestFleet::start().await.unwrap();
    // 700 MiB for everything a slot runs: a 640x360 page with its
    // encoder stays well under; 200 MiB more a second does not.
    fleet
        .add_worker_with(1, 2, &[("RECFLEET_SLOT_MEMORY_MIB", "700")])
        .unwrap();
    fleet.wait_workers(1, 30).await.unwrap();
    let calm = RecordingId::new("calm").unwrap();
    let hog = RecordingId::new("hog").unwrap();
    fleet
        .request(ConsoleRequest::StartRecording(spec(
            &calm,
            page.url("title=calm"),
        )))
        .await
        .unwrap();
    fleet
        .wait_for(&calm, 60, |d| d.info.state == RecordingState::Recording)
        .await
        .unwrap();
    fleet
        .request(ConsoleRequest::StartRecording(spec(
            &hog,
            page.health_url("hog=200"),
        )))
        .await
        .unwrap();
    let d = fleet
        .wait_for(&hog, 90, |d| {
            d.manifest.segments.iter().any(|s| s.end_reason.is_some())
        })
        .await
        .unwrap();
    let ended = d
        .manifest
        .segments
        .iter()
        .find_map(|s| s.end_reason.clone())
        .unwrap();
    println!("the hog's first part ended: {}", ended.describe());
    assert!(
        ended.describe().contains("out of memory") && ended.describe().contains("limit of 700 MiB"),
        "{ended:?}"
    );
    assert!(!matches!(ended, SegmentEndReason::Stopped), "{ended:?}");
    let _ = fleet
        .request(ConsoleRequest::StopRecording { id: hog.clone() })
        .await;
    // The neighbour never noticed: one part, no restart, and whole.
    let c = fleet.show(&calm).await.unwrap();
    assert_eq!(c.info.restarts, 0, "{:?}", c.info);
    let m = stop_and_complete(&mut fleet, &calm).await;
    assert_eq!(m.segments.len(), 1, "{:?}", m.segments);
    assert!(m.gaps.is_empty(), "{:?}", m.gaps);
    fleet.shutdown().await;
}
