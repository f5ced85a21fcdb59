//! Recordings that land in a real S3 server (SeaweedFS on loopback) while
//! they are recorded, and end as one stitched recording.mp4: after kill -9
//! of the worker, across a make-before-break move, and through an outage of
//! the store. Each test prints the figures it measured.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;
use recfleet_agent::demo::DemoServer;
use recfleet_protocol::manifest::Manifest;
use recfleet_protocol::spec::{RecordingSpec, Viewport};
use recfleet_protocol::{
    now_ms, ConsoleRequest, ConsoleResponse, RecordingId, RecordingState, WorkerName,
};
use recfleet_testkit::{FleetOptions, S3Server, TestFleet};
use recfleet_tests::hooks::receiver;
use recfleet_tests::media;
use recfleet_tests::media::repeated_frames;
use recfleet_tests::recordings::{stop_and_complete, wall_span_ms};

const BUCKET: &str = "recordings";
const PREFIX: &str = "classes";

fn w(name: &str) -> WorkerName {
    WorkerName::new(name).unwrap()
}

fn spec(id: &str, url: String, max_secs: u32) -> RecordingSpec {
    let mut s = RecordingSpec::new(RecordingId::new(id).unwrap(), url);
    s.viewport = Viewport {
        width: 640,
        height: 360,
    };
    s.stop.max_duration_secs = Some(max_secs);
    s
}

const SECRET: &str = "whsec_output_test";

/// A store with a bucket, and a fleet whose output is `s3://recordings/classes`
/// (and that sends its webhooks to `hook`, if given).
async fn fleet_on_s3(hook: Option<SocketAddr>) -> (S3Server, TestFleet, DemoServer) {
    let s3 = S3Server::start().await.unwrap();
    s3.create_bucket(BUCKET).unwrap();
    let mut env = s3.env();
    env.push(("RECFLEET_OUTPUT".into(), format!("s3://{BUCKET}/{PREFIX}")));
    if let Some(addr) = hook {
        env.push((
            "RECFLEET_WEBHOOK_URLS".into(),
            format!("http://{addr}/hook"),
        ));
        env.push(("RECFLEET_WEBHOOK_SECRET".into(), SECRET.into()));
    }
    let fleet = TestFleet::start_with(FleetOptions {
        stitch: true,
        coordinator_env: env,
        ..Default::default()
    })
    .await
    .unwrap();
    let page = DemoServer::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    (s3, fleet, page)
}

fn add_worker(fleet: &mut TestFleet, s3: &S3Server, n: u32) {
    let env = s3.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    fleet.add_worker_with(n, 1, &env).unwrap();
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

/// The recording's objects in the bucket, keys relative to its directory.
fn objects(s3: &S3Server, id: &RecordingId) -> Vec<(String, u64)> {
    let prefix = format!("{PREFIX}/{id}/");
    s3.list(BUCKET, &prefix)
        .unwrap()
        .into_iter()
        .map(|(k, n)| (k.trim_start_matches(&prefix).to_string(), n))
        .collect()
}

fn fetch(s3: &S3Server, id: &RecordingId, key: &str, dir: &Path) -> PathBuf {
    let bytes = s3.get(BUCKET, &format!("{PREFIX}/{id}/{key}")).unwrap();
    let path = dir.join(key.replace('/', "_"));
    std::fs::write(&path, bytes).unwrap();
    path
}

/// The manifest as stored, and recording.mp4 downloaded.
fn stored_outputs(s3: &S3Server, id: &RecordingId, dir: &Path) -> (Manifest, PathBuf) {
    std::fs::create_dir_all(dir).unwrap();
    let keys: Vec<String> = objects(s3, id).into_iter().map(|(k, _)| k).collect();
    for k in ["manifest.json", "index.m3u8", "recording.mp4"] {
        assert!(
            keys.iter().any(|x| x == k),
            "no {k} in the bucket: {keys:?}"
        );
    }
    let manifest: Manifest =
        serde_json::from_slice(&std::fs::read(fetch(s3, id, "manifest.json", dir)).unwrap())
            .unwrap();
    assert_eq!(manifest.state, RecordingState::Completed, "{manifest:#?}");
    let mp4 = fetch(s3, id, "recording.mp4", dir);
    let outputs = manifest.outputs.clone().expect("outputs in the manifest");
    let rec = outputs.recording.expect("recording.mp4 in the manifest");
    assert_eq!(rec.bytes, std::fs::metadata(&mp4).unwrap().len());
    assert_eq!(
        rec.url,
        format!("s3://{BUCKET}/{PREFIX}/{id}/recording.mp4")
    );
    (manifest, mp4)
}

/// Wall-clock span from the first captured frame to the last.
/// Mean brightness (0-255) of the frame at `t`.
fn brightness(file: &Path, t: f64) -> f64 {
    let (r, g, b) = media::mean_color(file, t).unwrap();
    (f64::from(r) + f64::from(g) + f64::from(b)) / 3.0
}

/// Each segment's start in the file shows the page at once: not black, and
/// moving within half a second.
fn assert_no_lead_in(file: &Path, starts: &[f64]) {
    let hashes = media::frame_hashes(file, 20).unwrap();
    for start in starts {
        let bright = brightness(file, start + 0.05);
        assert!(bright > 30.0, "black at {start:.2} s: {bright:.0}");
        let from = (start * 20.0).round() as usize;
        let window = &hashes[from.min(hashes.len())..(from + 20).min(hashes.len())];
        let frozen = window.iter().take_while(|h| **h == window[0]).count() as f64 / 20.0;
        println!("segment at {start:.2} s: first picture unchanged for {frozen:.2} s");
        assert!(frozen <= 0.5, "frozen for {frozen} s at {start:.2} s");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_kill_9_mid_recording_to_s3_still_gives_one_stitched_file() {
    let (hook, hooks) = receiver(SECRET, 0).await;
    let (s3, mut fleet, page) = fleet_on_s3(Some(hook)).await;
    add_worker(&mut fleet, &s3, 1);
    fleet.wait_workers(1, 30).await.unwrap();
    let id = RecordingId::new("s3-kill").unwrap();
    start(&mut fleet, spec(id.as_str(), page.url("title=s3"), 30)).await;
    let d = fleet
        .wait_for(&id, 60, |d| d.info.state == RecordingState::Recording)
        .await
        .unwrap();
    add_worker(&mut fleet, &s3, 2);
    fleet.wait_workers(2, 30).await.unwrap();
    let first = d.info.started_at.unwrap();
    tokio::time::sleep(Duration::from_millis(
        (first + 12_000).saturating_sub(now_ms()),
    ))
    .await;
    // Chunks are in the bucket while it records.
    let during = objects(&s3, &id);
    assert!(
        during.iter().filter(|(k, _)| k.ends_with(".m4s")).count() >= 4,
        "{during:?}"
    );
    let killed_at = now_ms();
    fleet.signal_worker("w1", Signal::SIGKILL);
    let d = fleet
        .wait_for(&id, 120, |d| d.info.state.is_terminal())
        .await
        .unwrap();
    assert_eq!(d.info.state, RecordingState::Completed, "{:?}", d.info);
    // Into the fleet's folder, which a failing test keeps for inspection.
    let (m, mp4) = stored_outputs(&s3, &id, &fleet.dir().join("fetched"));

    // What w1 stored before it died reaches to within 2 s of the kill.
    let lost = m
        .segments
        .iter()
        .find(|s| s.worker == w("w1"))
        .expect("w1's segment");
    let stored_until = lost.first_frame_at.unwrap()
        + lost
            .chunks
            .iter()
            .map(|c| c.media_start_ms + c.duration_ms)
            .max()
            .unwrap();
    let behind = killed_at as i64 - stored_until as i64;
    println!(
        "kill at +{} s; w1's stored chunks end {behind} ms before it",
        (killed_at - first) / 1000
    );
    assert!(
        behind <= 2_300,
        "{behind} ms before the kill were lost: {lost:#?}"
    );
    assert!(lost.bytes > 0 && !lost.sha256.is_empty(), "{lost:#?}");

    // One file, as long as the wall time, a slate over the gap.
    let outputs = m.outputs.clone().unwrap();
    assert_eq!(outputs.gaps_in_file.len(), 1, "{outputs:#?}");
    let gap = outputs.gaps_in_file[0];
    let p = media::probe(&mp4).unwrap();
    let span = wall_span_ms(&m) as f64 / 1000.0;
    println!(
        "recording.mp4: {:.2} s for {span:.2} s of wall time; slate {} ms at {} ms",
        p.duration, gap.duration_ms, gap.at_ms
    );
    assert!(
        (p.duration - span).abs() <= 1.0,
        "{} s vs {span} s",
        p.duration
    );
    let (gap_from, gap_to) = (
        gap.at_ms as f64 / 1000.0,
        (gap.at_ms + gap.duration_ms) as f64 / 1000.0,
    );
    assert!(
        brightness(&mp4, (gap_from + gap_to) / 2.0) < 10.0,
        "the slate is not black"
    );
    let samples = media::audio_samples(&mp4).unwrap();
    let at = |t: f64| ((t * 48_000.0) as usize).min(samples.len());
    let slate = &samples[at(gap_from + 0.2)..at(gap_to - 0.2)];
    let slate_db = media::rms_db(slate);
    let loudest = slate
        .chunks(4_800)
        .enumerate()
        .map(|(n, w)| (gap_from + 0.2 + n as f64 * 0.1, media::rms_db(w)))
        .max_by(|a, b| a.1.total_cmp(&b.1));
    assert!(
        slate_db < -80.0,
        "the slate is not silent: {slate_db:.1} dBFS; loudest 100 ms (s, dBFS): {loudest:?}"
    );
    for (a, b) in [(1.0, gap_from - 0.5), (gap_to + 1.0, p.duration - 0.5)] {
        let db = media::rms_db(&samples[at(a)..at(b)]);
        assert!(db > -50.0, "no sound from {a:.1} to {b:.1} s: {db:.1} dBFS");
    }
    // Moving picture outside the slate; nothing shown twice.
    let hashes = media::frame_hashes(&mp4, 5).unwrap();
    let slate = [(gap_from, gap_to)];
    let repeats = repeated_frames(&hashes, 5, &slate);
    assert!(repeats.is_empty(), "frames shown twice: {repeats:?}");
    let before = media::longest_freeze(&hashes[..(gap_from * 5.0) as usize], 5, 0);
    let after = media::longest_freeze(&hashes[(gap_to * 5.0) as usize..], 5, 0);
    assert!(
        before <= 1.0 && after <= 1.0,
        "frozen {before} s / {after} s"
    );
    assert_no_lead_in(&mp4, &[0.0, gap_to]);

    // The platform was told, in order, with signed events; "completed"
    // says where recording.mp4 is, and it is there.
    let until = std::time::Instant::now() + Duration::from_secs(20);
    let types = loop {
        let received = hooks.lock().unwrap().received.clone();
        assert!(
            received.iter().all(|r| r.verified),
            "unsigned: {received:?}"
        );
        let types: Vec<String> = received.iter().map(|r| r.event_type.clone()).collect();
        if types.iter().any(|t| t == "recording.completed") || std::time::Instant::now() > until {
            break types;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    println!("webhooks: {types:?}");
    for t in [
        "recording.started",
        "recording.interrupted",
        "recording.resumed",
        "recording.completed",
    ] {
        assert!(types.iter().any(|x| x == t), "no {t} in {types:?}");
    }
    let completed = hooks
        .lock()
        .unwrap()
        .received
        .iter()
        .find(|r| r.event_type == "recording.completed")
        .cloned()
        .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&completed.body).unwrap();
    assert_eq!(
        body["output"]["mp4"],
        format!("s3://{BUCKET}/{PREFIX}/{id}/recording.mp4"),
        "{body}"
    );
    assert_eq!(
        body["output"]["hls"],
        format!("s3://{BUCKET}/{PREFIX}/{id}/index.m3u8")
    );
    // The demo page emits its slides: the event track is in the bucket too.
    assert_eq!(
        body["output"]["events"],
        format!("s3://{BUCKET}/{PREFIX}/{id}/events.jsonl"),
        "{body}"
    );
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_a_reassign_to_s3_leaves_no_gap_and_nothing_twice_in_recording_mp4() {
    let (s3, mut fleet, page) = fleet_on_s3(None).await;
    add_worker(&mut fleet, &s3, 1);
    fleet.wait_workers(1, 30).await.unwrap();
    let id = RecordingId::new("s3-move").unwrap();
    start(&mut fleet, spec(id.as_str(), page.url("title=move"), 600)).await;
    fleet
        .wait_for(&id, 60, |d| d.info.state == RecordingState::Recording)
        .await
        .unwrap();
    add_worker(&mut fleet, &s3, 2);
    fleet.wait_workers(2, 30).await.unwrap();
    tokio::time::sleep(Duration::from_secs(6)).await;
    match fleet
        .request(ConsoleRequest::Reassign {
            id: id.clone(),
            to: Some(w("w2")),
        })
        .await
        .unwrap()
    {
        ConsoleResponse::Accepted { .. } => {}
        other => panic!("{other:?}"),
    }
    fleet
        .wait_for(&id, 60, |d| d.info.worker == Some(w("w2")))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(6)).await;
    stop_and_complete(&mut fleet, &id).await;
    // Into the fleet's folder, which a failing test keeps for inspection.
    let (m, mp4) = stored_outputs(&s3, &id, &fleet.dir().join("fetched"));
    let overlap: u64 = m.overlaps.iter().map(|o| o.duration_ms).sum();
    let outputs = m.outputs.clone().unwrap();
    assert!(outputs.gaps_in_file.is_empty(), "{outputs:#?}");
    assert_eq!(
        m.segments
            .iter()
            .filter(|s| s.first_frame_at.is_some())
            .count(),
        2
    );
    // Both workers captured the overlap; the file holds it once: its length
    // is the wall time, not the wall time plus the overlap.
    let p = media::probe(&mp4).unwrap();
    let span = wall_span_ms(&m) as f64 / 1000.0;
    println!(
        "reassign: overlap {overlap} ms captured twice; recording.mp4 {:.2} s for {span:.2} s of wall time",
        p.duration
    );
    assert!(overlap >= 300, "no overlap to cut: {m:#?}");
    assert!(
        (p.duration - span).abs() <= 0.2,
        "{} s for {span} s: the overlap is in the file",
        p.duration
    );
    let hashes = media::frame_hashes(&mp4, 5).unwrap();
    let repeats = repeated_frames(&hashes, 5, &[]);
    assert!(repeats.is_empty(), "frames shown twice: {repeats:?}");
    let freeze = media::longest_freeze(&hashes, 5, 0);
    assert!(freeze <= 1.0, "the picture froze for {freeze} s");
    let second = m
        .segments
        .iter()
        .filter_map(|s| s.first_frame_at)
        .max()
        .unwrap();
    let first = m
        .segments
        .iter()
        .filter_map(|s| s.first_frame_at)
        .min()
        .unwrap();
    assert_no_lead_in(&mp4, &[0.0]);
    println!(
        "the switch is at {:.2} s in the file",
        (second - first) as f64 / 1000.0
    );
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_the_store_away_for_20_s_delays_uploads_and_loses_nothing() {
    let (mut s3, mut fleet, page) = fleet_on_s3(None).await;
    add_worker(&mut fleet, &s3, 1);
    fleet.wait_workers(1, 30).await.unwrap();
    let id = RecordingId::new("s3-outage").unwrap();
    start(&mut fleet, spec(id.as_str(), page.url("title=outage"), 600)).await;
    fleet
        .wait_for(&id, 60, |d| d.info.state == RecordingState::Recording)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    s3.stop().await;
    let away = std::time::Instant::now();
    let mut worst_lag = 0u64;
    let mut worst_buffer = 0u64;
    while away.elapsed() < Duration::from_secs(20) {
        let d = fleet.show(&id).await.unwrap();
        assert_eq!(d.info.state, RecordingState::Recording, "{:?}", d.info);
        worst_lag = worst_lag.max(d.info.upload_lag_ms);
        if let ConsoleResponse::Workers(ws) =
            fleet.request(ConsoleRequest::ListWorkers).await.unwrap()
        {
            worst_buffer = worst_buffer.max(ws.iter().map(|w| w.upload_buffer_bytes).sum());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!("store away 20 s: upload lag up to {worst_lag} ms, {worst_buffer} bytes waiting");
    assert!(
        worst_lag >= 10_000,
        "the lag was not reported: {worst_lag} ms"
    );
    assert!(worst_buffer > 0, "the worker's buffer was not reported");
    s3.resume().await.unwrap();
    let back = std::time::Instant::now();
    fleet
        .wait_for_polling(&id, 60, Duration::from_millis(500), |d| {
            d.info.upload_lag_ms < 3_000
        })
        .await
        .unwrap();
    println!(
        "caught up {:.1} s after the store came back",
        back.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop_and_complete(&mut fleet, &id).await;
    // Into the fleet's folder, which a failing test keeps for inspection.
    let (m, mp4) = stored_outputs(&s3, &id, &fleet.dir().join("fetched"));
    // Every chunk arrived: numbered without a hole, and as long as the time.
    let seg = &m.segments[0];
    let seqs: Vec<u32> = seg.chunks.iter().filter_map(|c| c.seq).collect();
    assert_eq!(seqs, (0..seqs.len() as u32).collect::<Vec<_>>(), "{seg:#?}");
    let p = media::probe(&mp4).unwrap();
    let span = wall_span_ms(&m) as f64 / 1000.0;
    println!(
        "recording.mp4 {:.2} s for {span:.2} s of wall time",
        p.duration
    );
    assert!(m.outputs.clone().unwrap().gaps_in_file.is_empty());
    assert!(
        (p.duration - span).abs() <= 1.0,
        "{} s vs {span} s",
        p.duration
    );
    let hashes = media::frame_hashes(&mp4, 5).unwrap();
    let freeze = media::longest_freeze(&hashes, 5, 0);
    assert!(freeze <= 1.0, "the picture froze for {freeze} s");
    fleet.shutdown().await;
}
