//! The warm pool with real Chromium: a start on a ready slot beats a cold
//! start in the same fleet, both recordings are whole, a ready slot serves
//! one recording only, and the pool refills with a new one.

use std::time::Duration;

use recfleet_agent::demo::DemoServer;
use recfleet_protocol::spec::RecordingSpec;
use recfleet_protocol::{ConsoleRequest, RecordingId};
use recfleet_testkit::{procs, FleetOptions, TestFleet};
use recfleet_tests::media;
use recfleet_tests::recordings::stop_and_complete;

/// The shape the pool keeps: 1280x720 with sound (the default spec).
fn spec(id: &RecordingId, page: &DemoServer) -> RecordingSpec {
    let mut s = RecordingSpec::new(id.clone(), page.url(&format!("title={id}")));
    s.stop.max_duration_secs = Some(600);
    s
}

/// Request -> first frame of the recording, ms.
async fn start_ms(fleet: &mut TestFleet, id: &RecordingId, page: &DemoServer) -> u64 {
    fleet
        .request(ConsoleRequest::StartRecording(spec(id, page)))
        .await
        .unwrap();
    let d = fleet
        .wait_for_polling(id, 60, Duration::from_millis(50), |d| {
            d.info.started_at.is_some()
        })
        .await
        .unwrap();
    d.info.started_at.unwrap().saturating_sub(d.info.created_at)
}

/// The tags of the ready slots' processes on this machine (`<instance>/rN`).
fn ready_tags(prefix: &str) -> std::collections::BTreeSet<String> {
    procs::tagged_with_tags(prefix)
        .into_iter()
        .filter_map(|(_, _, tag)| {
            let last = tag.rsplit('/').next()?.to_string();
            last.starts_with('r').then_some(tag)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_a_warm_start_beats_a_cold_one_and_a_ready_slot_serves_one_recording() {
    let page = DemoServer::start(([127, 0, 0, 1], 0).into()).await.unwrap();
    let mut fleet = TestFleet::start_with(FleetOptions {
        stitch: true,
        ready_slots: 1,
        ..Default::default()
    })
    .await
    .unwrap();
    fleet.add_worker(1, 2).unwrap();
    fleet.wait_workers(1, 30).await.unwrap();
    fleet.wait_ready_slots("w1", 1, 60).await.unwrap();
    // Its cost is sampled once a second, apart from the count: wait for a
    // sample that has it.
    let mut w1 = fleet.wait_ready_slots("w1", 1, 60).await.unwrap();
    for _ in 0..50 {
        if w1.ready.rss_bytes > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        w1 = fleet.wait_ready_slots("w1", 1, 60).await.unwrap();
    }
    println!(
        "w1 waits with {} ready slot: {} millicores, {} MiB",
        w1.ready.ready,
        w1.ready.cpu_millicores,
        w1.ready.rss_bytes >> 20
    );
    assert_eq!(w1.ready.target, 1);
    assert!(w1.ready.rss_bytes > 0, "{:?}", w1.ready);
    let prefix = format!("{}-", fleet.worker_pid("w1").unwrap());
    let first_ready = ready_tags(&prefix);
    assert_eq!(first_ready.len(), 1, "{first_ready:?}");

    // The ready slot takes the first start; the second, right after, finds
    // the pool empty (it refills 3 s after a take) and starts cold.
    let warm = RecordingId::new("warm").unwrap();
    let cold = RecordingId::new("cold").unwrap();
    let warm_ms = start_ms(&mut fleet, &warm, &page).await;
    let cold_ms = start_ms(&mut fleet, &cold, &page).await;
    println!("request -> first frame: warm {warm_ms} ms, cold {cold_ms} ms");
    assert!(
        warm_ms < cold_ms,
        "the warm start ({warm_ms} ms) did not beat the cold one ({cold_ms} ms)"
    );

    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut manifests = Vec::new();
    for id in [&warm, &cold] {
        manifests.push((id.clone(), stop_and_complete(&mut fleet, id).await));
    }
    // The pool refills with a new slot (once no encoder of w1 is behind:
    // two 720p recordings keep two cores busy); the one the warm start took
    // was the recording's, and went with it.
    fleet.wait_ready_slots("w1", 1, 60).await.unwrap();
    let now_ready = ready_tags(&prefix);
    assert_eq!(now_ready.len(), 1, "{now_ready:?}");
    assert!(
        now_ready.is_disjoint(&first_ready),
        "the ready slot that served a recording is still there: {first_ready:?} {now_ready:?}"
    );
    for (id, m) in manifests {
        assert_eq!(m.segments.len(), 1, "{id}: {:?}", m.segments);
        let mp4 = m
            .outputs
            .as_ref()
            .and_then(|o| o.recording.clone())
            .unwrap_or_else(|| panic!("{id}: no recording.mp4"));
        let file = fleet.recordings().join(id.as_str()).join(&mp4.key);
        let p = media::probe(&file).unwrap();
        println!("{id}: {p:?}");
        assert_eq!(p.video, Some((1280, 720)), "{id}");
        assert!(p.audio && p.duration >= 3.0, "{id}: {p:?}");
    }
    fleet.shutdown().await;
}

/// kill -9 of a worker: its guard reports the death at once, so the
/// coordinator does not wait for the connection's idle timeout (15 s here,
/// to tell the two apart), and the recording starts again on the other
/// worker's ready slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_a_killed_worker_is_reported_by_its_guard_and_fails_over_to_a_ready_slot() {
    let page = DemoServer::start(([127, 0, 0, 1], 0).into()).await.unwrap();
    let mut fleet = TestFleet::start_with(FleetOptions {
        ready_slots: 1,
        idle_timeout_ms: Some(15_000),
        ..Default::default()
    })
    .await
    .unwrap();
    fleet.add_worker(1, 1).unwrap();
    fleet.add_worker(2, 1).unwrap();
    fleet.wait_workers(2, 30).await.unwrap();
    for w in ["w1", "w2"] {
        fleet.wait_ready_slots(w, 1, 60).await.unwrap();
    }
    let id = RecordingId::new("failover").unwrap();
    start_ms(&mut fleet, &id, &page).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let d = fleet.show(&id).await.unwrap();
    let holder = d.info.worker.clone().unwrap();
    let other = if holder.as_str() == "w1" { "w2" } else { "w1" };
    // The other worker's pool has refilled meanwhile.
    fleet.wait_ready_slots(other, 1, 60).await.unwrap();
    let killed_at = fleet.kill_worker(holder.as_str()).await.unwrap();
    let d = fleet
        .wait_for_polling(&id, 30, Duration::from_millis(50), |d| {
            d.manifest
                .segments
                .iter()
                .any(|s| s.epoch.0 > 1 && s.first_frame_at.is_some())
        })
        .await
        .unwrap();
    let first = d
        .manifest
        .segments
        .iter()
        .filter(|s| s.epoch.0 > 1)
        .find_map(|s| s.first_frame_at)
        .unwrap();
    let ms = first.saturating_sub(killed_at);
    println!("kill -9 {holder} -> first frame on {other} after {ms} ms");
    assert_eq!(d.info.worker.as_ref().map(|w| w.as_str()), Some(other));
    // Well under the 15 s idle timeout: the guard's report did it.
    assert!(ms < 8_000, "failover took {ms} ms");
    let log = std::fs::read_to_string(fleet.log_path("coordinator")).unwrap();
    assert!(
        log.contains("its guard saw the worker process die"),
        "the coordinator did not hear from the guard"
    );
    let m = stop_and_complete(&mut fleet, &id).await;
    println!("gaps: {:?}", m.gaps);
    assert_eq!(m.gaps.len(), 1, "{:?}", m.gaps);
    fleet.shutdown().await;
}
