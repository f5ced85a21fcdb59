//! What a page flooding the event track costs (benchmark 9): one worker
//! records two pages at 720p15 side by side, first two calm ones (a slide
//! event a second), then a calm one beside one that emits 10,000 events a
//! second, in one run. Figures: the worker process's CPU (it checks,
//! numbers and writes the events) and the slot processes' CPU (Chromium,
//! ffmpeg, Xvfb, PulseAudio), in cores; the calm recording's frame rate;
//! what the flood kept and dropped.

use std::path::Path;
use std::time::{Duration, Instant};

use recfleet_agent::demo::DemoServer;
use recfleet_protocol::spec::{RecordingSpec, Viewport};
use recfleet_protocol::{ConsoleRequest, RecordingId, RecordingState};
use recfleet_testkit::procs::{descendants, proc_sample, tagged};
use recfleet_testkit::TestFleet;
use serde_json::{json, Value};

use crate::harness::start_fleet;
use crate::Opts;

/// CPU seconds of the slot processes (tagged ones and their children).
fn slot_cpu() -> f64 {
    let mut pids: Vec<i32> = tagged("")
        .into_iter()
        .flat_map(|(pid, _)| {
            let mut all = descendants(pid);
            all.push(pid);
            all
        })
        .collect();
    pids.sort_unstable();
    pids.dedup();
    pids.iter()
        .filter_map(|p| proc_sample(*p as u32))
        .map(|s| s.cpu_secs)
        .sum()
}

fn spec(id: &RecordingId, url: String) -> RecordingSpec {
    let mut s = RecordingSpec::new(id.clone(), url);
    s.viewport = Viewport {
        width: 1280,
        height: 720,
    };
    s.stop.max_duration_secs = Some(1800);
    s
}

/// One phase: recordings of `queries` side by side for `secs`; the
/// worker's and the slots' cores, the recordings' frame rates, and their
/// event summaries.
async fn phase(
    fleet: &mut TestFleet,
    page: &DemoServer,
    name: &str,
    queries: [&str; 2],
    secs: u64,
) -> anyhow::Result<Value> {
    let ids: Vec<RecordingId> = (0..2)
        .map(|i| RecordingId::new(format!("{name}-{i}")))
        .collect::<Result<_, _>>()?;
    for (id, q) in ids.iter().zip(queries) {
        fleet
            .request(ConsoleRequest::StartRecording(spec(id, page.events_url(q))))
            .await?;
    }
    for id in &ids {
        fleet
            .wait_for(id, 90, |d| d.info.state == RecordingState::Recording)
            .await?;
    }
    // Settle: page loads and encoder start-up are not the steady state.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let worker = fleet.worker_pid("w1").unwrap_or(0);
    let (w0, s0, t0) = (proc_sample(worker), slot_cpu(), Instant::now());
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let (w1, s1, wall) = (proc_sample(worker), slot_cpu(), t0.elapsed().as_secs_f64());
    let mut fps = Vec::new();
    for id in &ids {
        fps.push(fleet.show(id).await?.info.fps_milli as f64 / 1000.0);
    }
    let mut tracks = Vec::new();
    for id in &ids {
        fleet
            .request(ConsoleRequest::StopRecording { id: id.clone() })
            .await?;
    }
    for id in &ids {
        let d = fleet
            .wait_for(id, 120, |d| d.info.state.is_terminal())
            .await?;
        let ev = d.manifest.outputs.and_then(|o| o.events);
        tracks.push(json!({
            "kept": ev.as_ref().map(|e| e.total),
            "dropped": ev.as_ref().map(|e| e.dropped),
        }));
    }
    let worker_cores = match (w0, w1) {
        (Some(a), Some(b)) => (b.cpu_secs - a.cpu_secs) / wall,
        _ => f64::NAN,
    };
    let slot_cores = (s1 - s0) / wall;
    println!(
        "    {name}: worker {worker_cores:.3} cores, slots {slot_cores:.2} cores, fps {fps:?}, tracks {tracks:?}"
    );
    Ok(json!({
        "worker_cores": worker_cores,
        "slot_cores": slot_cores,
        "fps": fps,
        "tracks": tracks,
    }))
}

/// Benchmark 9.
pub async fn run(opts: &Opts, agent: &Path, dir: &Path) -> anyhow::Result<Value> {
    let secs = opts.pick(20, 60);
    let page = DemoServer::start(([127, 0, 0, 1], 0).into()).await?;
    let mut fleet = start_fleet(agent, dir, 3000).await?;
    fleet.add_worker(1, 2)?;
    fleet.wait_workers(1, 30).await?;
    let calm = phase(
        &mut fleet,
        &page,
        "calm",
        ["slides=1000", "slides=1000"],
        secs,
    )
    .await?;
    let flood = phase(
        &mut fleet,
        &page,
        "flood",
        ["slides=1000", "slides=1000&flood=10000"],
        secs,
    )
    .await?;
    let ratio =
        |k: &str| flood[k].as_f64().unwrap_or(f64::NAN) / calm[k].as_f64().unwrap_or(f64::NAN);
    Ok(json!({
        "secs": secs,
        "calm": calm,
        "flood": flood,
        "worker_ratio": ratio("worker_cores"),
        "slots_ratio": ratio("slot_cores"),
    }))
}
