//! The event track of real recordings: events a page emits land at the
//! moment of the video they happened at, also across a failover; a page
//! that floods is limited without touching its neighbour; an empty room and
//! the page's own `recfleet.stop` end a recording; watched elements,
//! chapters and `recfleet record events`.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;
use recfleet_agent::demo::DemoServer;
use recfleet_protocol::events::{EventOptions, TrackEvent};
use recfleet_protocol::manifest::SegmentEndReason;
use recfleet_protocol::spec::RecordingSpec;
use recfleet_protocol::{
    now_ms, ConsoleRequest, EventSource, Manifest, RecordingId, RecordingState,
};
use recfleet_testkit::netns::Netns;
use recfleet_testkit::{FleetOptions, TestFleet};
use recfleet_tests::console::Console;
use recfleet_tests::media;
use recfleet_tests::recordings::{small_spec, stop_and_complete, wait_completed};

/// A fleet that makes recording.mp4, with `workers` workers of capacity
/// `capacity`.
async fn fleet(workers: u32, capacity: u32) -> TestFleet {
    let mut fleet = TestFleet::start_with(FleetOptions {
        stitch: true,
        ..Default::default()
    })
    .await
    .unwrap();
    for n in 1..=workers {
        fleet.add_worker(n, capacity).unwrap();
    }
    fleet.wait_workers(workers as usize, 30).await.unwrap();
    fleet
}

fn spec(id: &RecordingId, url: String) -> RecordingSpec {
    small_spec(id, url)
}

async fn start(fleet: &mut TestFleet, spec: RecordingSpec) {
    fleet
        .request(ConsoleRequest::StartRecording(spec))
        .await
        .unwrap();
}

/// The recording's directory in the fleet's destination.
fn dir_of(fleet: &TestFleet, id: &RecordingId) -> PathBuf {
    fleet.recordings().join(id.as_str())
}

fn joined(dir: &Path) -> Vec<TrackEvent> {
    let text = std::fs::read_to_string(dir.join("events.jsonl")).expect("events.jsonl");
    text.lines()
        .map(|l| serde_json::from_str(l).expect("an event per line"))
        .collect()
}

fn percentile(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_each_flash_and_its_event_are_the_same_moment_of_the_video_across_a_failover() {
    let page = DemoServer::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let mut fleet = fleet(2, 1).await;
    let id = RecordingId::new("flashes").unwrap();
    // A flash every 1.5 s, a tick every 100 ms. Captured at 30 fps: the
    // file's frames are the ruler, and a frame is when the flash is seen,
    // up to a frame after it was painted (at 15 fps that sampling alone
    // spans the whole 67 ms).
    let mut s = spec(&id, page.events_url("flash=1500&tick=100"));
    s.fps = 30;
    start(&mut fleet, s).await;
    let d = fleet
        .wait_for(&id, 60, |d| d.info.state == RecordingState::Recording)
        .await
        .unwrap();
    let first = d.info.started_at.unwrap();
    let holder = d.info.worker.clone().unwrap();
    tokio::time::sleep(Duration::from_millis(
        (first + 18_000).saturating_sub(now_ms()),
    ))
    .await;
    let killed_at = now_ms();
    fleet.signal_worker(holder.as_str(), Signal::SIGKILL);
    let d = fleet
        .wait_for(&id, 60, |d| {
            d.info.state == RecordingState::Recording && d.info.worker.as_ref() != Some(&holder)
        })
        .await
        .unwrap();
    assert!(d.info.epoch.0 >= 2, "{:?}", d.info);
    tokio::time::sleep(Duration::from_secs(21)).await;
    let m = stop_and_complete(&mut fleet, &id).await;

    let dir = dir_of(&fleet, &id);
    let events = joined(&dir);
    let flashes: Vec<&TrackEvent> = events.iter().filter(|e| e.kind == "flash").collect();
    let segments: std::collections::BTreeSet<&str> =
        flashes.iter().map(|e| e.segment.as_str()).collect();
    assert!(
        segments.len() >= 2,
        "flashes of one segment only: {segments:?}"
    );
    // The killed worker's page: its events reach to within 2 s of the kill
    // (one probe's drain, then the upload).
    let last_before = events
        .iter()
        .filter(|e| e.segment == "e1-p0" && e.kind == "tick")
        .map(|e| e.wall_ms)
        .max()
        .unwrap();
    let lost = killed_at as i64 - last_before as i64;
    println!("the killed worker's events end {lost} ms before the kill");
    // Ticks come every 100 ms.
    assert!(
        lost <= 2_000 + 100,
        "{lost} ms of events lost with the worker"
    );
    let onsets = media::flash_onsets(&dir.join("recording.mp4")).unwrap();
    // Each flash event against the nearest flash in the file.
    let mut diffs = Vec::new();
    for e in &flashes {
        let at = e.media_ms.unwrap() as f64;
        let nearest = onsets
            .iter()
            .map(|o| o * 1000.0 - at)
            .min_by(|a, b| a.abs().total_cmp(&b.abs()))
            .unwrap();
        // A flash lost with the killed worker's last seconds has no
        // picture: it is more than a flash period away from any.
        if nearest.abs() < 700.0 {
            diffs.push(nearest);
        }
    }
    let abs: Vec<f64> = diffs.iter().map(|d| d.abs()).collect();
    let p95 = percentile(abs.clone(), 0.95);
    println!(
        "{} flash events ({} in the file, {} matched) over segments {segments:?}; \
         frame minus event: median {:.0} ms, p95 |diff| {p95:.0} ms, max {:.0} ms; diffs {diffs:?}",
        flashes.len(),
        onsets.len(),
        diffs.len(),
        percentile(diffs.clone(), 0.5),
        percentile(abs, 1.0),
    );
    assert!(diffs.len() >= 20, "only {} flashes matched", diffs.len());
    assert!(p95 <= 67.0, "p95 {p95} ms");
    // And each event lies in the frame that first shows its flash: after
    // the frame before it was taken (33 ms), before it was (a few ms of
    // paint aside).
    assert!(
        diffs.iter().all(|d| (-5.0..=33.4 + 17.0).contains(d)),
        "events outside the frame that shows them: {diffs:?}"
    );
    // The manifest counts them.
    let counted = m.outputs.as_ref().and_then(|o| o.events.as_ref()).unwrap();
    assert_eq!(
        counted.counts.get("flash").copied(),
        Some(flashes.len() as u64)
    );
    assert!(
        counted
            .counts
            .get("browser.navigation")
            .copied()
            .unwrap_or(0)
            >= 2,
        "{counted:?}"
    );
}

/// Events of `kind` in the finished recording `id`, with the manifest.
fn finished(fleet: &TestFleet, id: &RecordingId) -> Vec<TrackEvent> {
    joined(&dir_of(fleet, id))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_a_page_flooding_events_is_limited_and_its_neighbour_keeps_every_event() {
    let page = DemoServer::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let mut fleet = fleet(1, 2).await;
    let flood = RecordingId::new("flood").unwrap();
    let calm = RecordingId::new("calm").unwrap();
    start(&mut fleet, spec(&flood, page.events_url("flood=10000"))).await;
    start(&mut fleet, spec(&calm, page.events_url("slides=500"))).await;
    for id in [&flood, &calm] {
        fleet
            .wait_for(id, 60, |d| d.info.state == RecordingState::Recording)
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_secs(20)).await;
    let m_flood: Manifest = stop_and_complete(&mut fleet, &flood).await;
    let m_calm: Manifest = stop_and_complete(&mut fleet, &calm).await;

    let seg = &m_flood.segments[0];
    let secs = (seg.ended_at.unwrap() - seg.started_at) as f64 / 1000.0;
    let ev = m_flood
        .outputs
        .as_ref()
        .and_then(|o| o.events.clone())
        .unwrap();
    let kept = ev.counts.get("flood").copied().unwrap_or(0);
    println!(
        "flood: {secs:.1} s, {kept} kept, {} dropped, counts {:?}",
        ev.dropped, ev.counts
    );
    // 10,000 a second offered; about 200 a second kept.
    assert!(ev.dropped as f64 >= 8_000.0 * (secs - 5.0), "{ev:?}");
    assert!(kept as f64 <= 200.0 * secs + 400.0 + 200.0, "{ev:?}");
    assert!(kept as f64 >= 150.0 * (secs - 5.0), "{ev:?}");
    // recfleet's own events are counted beside.
    assert!(ev.counts.get("recfleet.dropped").copied().unwrap_or(0) >= 1);

    // The neighbour: every slide, in order, none dropped.
    let calm_events = finished(&fleet, &calm);
    let slides: Vec<u64> = calm_events
        .iter()
        .filter(|e| e.kind == "slide")
        .map(|e| {
            serde_json::from_str::<serde_json::Value>(&e.data).unwrap()["n"]
                .as_u64()
                .unwrap()
        })
        .collect();
    let ev_calm = m_calm
        .outputs
        .as_ref()
        .and_then(|o| o.events.clone())
        .unwrap();
    println!("calm: {} slides, dropped {}", slides.len(), ev_calm.dropped);
    assert_eq!(ev_calm.dropped, 0);
    assert!(slides.len() >= 35, "{slides:?}");
    assert!(slides.windows(2).all(|w| w[1] == w[0] + 1), "{slides:?}");
    // And its video moved all along.
    let mp4 = dir_of(&fleet, &calm).join("recording.mp4");
    let p = media::probe(&mp4).unwrap();
    assert!(p.duration >= 18.0, "{p:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_an_empty_room_and_the_pages_own_stop_end_their_recordings() {
    // The browser runs in a network namespace of the test's own: the page's
    // WebRTC call goes over the namespace's address and nowhere else.
    let net = Netns::create(9);
    let host = net.host_ip();
    let page = DemoServer::start((IpAddr::from([0, 0, 0, 0]), 0).into())
        .await
        .unwrap();
    let url = |query: &str| format!("http://{host}:{}/events.html?{query}", page.addr().port());
    let mut fleet = TestFleet::start_with(FleetOptions {
        stitch: true,
        listen_ip: [0, 0, 0, 0].into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let coordinator = SocketAddr::new(host, fleet.addr.port());
    fleet
        .add_worker_in_netns_with(
            1,
            2,
            &net.name,
            coordinator,
            &[(
                "RECFLEET_CHROMIUM_ARGS",
                "--disable-features=WebRtcHideLocalIpsWithMdns",
            )],
        )
        .unwrap();
    fleet.wait_workers(1, 30).await.unwrap();
    // A call whose only peer leaves after 8 s; empty for 4 s ends it.
    let room = RecordingId::new("room").unwrap();
    let mut s = spec(&room, url("rtc=1&gone=8"));
    s.stop.empty_room_timeout_secs = Some(4);
    start(&mut fleet, s).await;
    // Slides every second, watched and emitted; the page stops itself at 7 s.
    let slides = RecordingId::new("slides").unwrap();
    let mut s = spec(&slides, url("slides=1000&stop=7"));
    s.events = Box::new(EventOptions {
        watch_text: vec!["#slide".into()],
        chapters: Some("slide".into()),
    });
    start(&mut fleet, s).await;

    for id in [&room, &slides] {
        wait_completed(&mut fleet, id, 90).await;
    }

    // The room: connected, then the peer gone, then stopped 4 s later.
    let d = fleet.show(&room).await.unwrap();
    let seg = &d.manifest.segments[0];
    assert_eq!(seg.end_reason, Some(SegmentEndReason::EmptyRoom), "{seg:?}");
    let events = finished(&fleet, &room);
    let webrtc: Vec<(u64, String)> = events
        .iter()
        .filter(|e| e.kind == "browser.webrtc")
        .map(|e| {
            let v: serde_json::Value = serde_json::from_str(&e.data).unwrap();
            (e.wall_ms, v["state"].as_str().unwrap_or("").to_string())
        })
        .collect();
    println!("room: {webrtc:?}, ended {:?}", seg.ended_at);
    let connected = webrtc
        .iter()
        .find(|(_, s)| s == "connected")
        .unwrap_or_else(|| panic!("the call never connected: {webrtc:?}"));
    let gone = webrtc
        .iter()
        .find(|(at, s)| *at > connected.0 && s == "closed")
        .unwrap_or_else(|| panic!("no peer left: {webrtc:?}"));
    let ended = seg.ended_at.unwrap();
    println!(
        "room: connected {} ms before the peer left; ended {} ms after",
        gone.0 - connected.0,
        ended - gone.0
    );
    assert!(
        ended >= gone.0 + 4_000,
        "ended {} ms after the peer left",
        ended - gone.0
    );
    assert!(
        ended <= gone.0 + 4_000 + 8_000,
        "ended {} ms after the peer left",
        ended - gone.0
    );

    // The page's own stop; the watched element and the slides as chapters.
    let d = fleet.show(&slides).await.unwrap();
    assert_eq!(
        d.manifest.segments[0].end_reason,
        Some(SegmentEndReason::PageEnded),
        "{:?}",
        d.manifest.segments
    );
    let events = finished(&fleet, &slides);
    let watched: Vec<String> = events
        .iter()
        .filter(|e| e.source == EventSource::Watch)
        .map(|e| {
            serde_json::from_str::<serde_json::Value>(&e.data).unwrap()["text"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert!(watched.len() >= 5, "{watched:?}");
    assert!(
        watched.iter().all(|t| t.starts_with("Slide ")),
        "{watched:?}"
    );
    assert!(
        events.iter().any(|e| e.kind == "recfleet.stop"),
        "no stop event"
    );
    let vtt = std::fs::read_to_string(dir_of(&fleet, &slides).join("chapters.vtt")).unwrap();
    println!("{vtt}");
    assert!(vtt.starts_with("WEBVTT\n"), "{vtt}");
    assert!(vtt.matches(" --> ").count() >= 5, "{vtt}");
    assert!(vtt.contains("\nSlide 3\n"), "{vtt}");

    // The console lists them.
    let console = Console::flags(&fleet, "viewer");
    let run = console
        .run(&[
            "record",
            "events",
            slides.as_str(),
            "--type",
            "slide",
            "-o",
            "json",
        ])
        .await;
    let listed = run.json();
    let listed = listed
        .as_array()
        .unwrap_or_else(|| panic!("not a JSON array: {run}"));
    assert!(listed.len() >= 5, "{listed:?}");
    assert!(listed.iter().all(|e| e["type"] == "slide"), "{listed:?}");
    assert!(listed
        .windows(2)
        .all(|w| w[0]["media_ms"].as_i64() <= w[1]["media_ms"].as_i64()));
    let table = console
        .run(&["record", "events", slides.as_str(), "--tail", "3"])
        .await;
    println!("{}", table.stdout);
    assert!(table.stdout.contains("recfleet.stop"), "{}", table.stdout);
}
