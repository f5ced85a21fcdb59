//! The benchmarks with real Chromium: start latency (3), failover after
//! kill -9 of a worker (4), density of one worker (5).

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use recfleet_agent::demo::DemoServer;
use recfleet_protocol::spec::{RecordingSpec, Viewport};
use recfleet_protocol::{ConsoleRequest, ConsoleResponse, RecordingId, RecordingState};
use serde_json::{json, Value};

use recfleet_testkit::procs::{
    cores_between, machine_cores_between, machine_sample, proc_sample, MachineSample,
};
use recfleet_testkit::TestFleet as Fleet;

use crate::harness::start_fleet;
use crate::stats::Summary;
use crate::Opts;

const POLL: Duration = Duration::from_millis(50);

fn spec(id: &str, page: &DemoServer, fps: u8) -> anyhow::Result<RecordingSpec> {
    spec_of(id, page, fps, "")
}

/// A 720p recording of the demo page with `extra` query parameters (e.g.
/// `teacher=loopback`, the heavy page).
fn spec_of(id: &str, page: &DemoServer, fps: u8, extra: &str) -> anyhow::Result<RecordingSpec> {
    let query = if extra.is_empty() {
        format!("title={id}")
    } else {
        format!("title={id}&{extra}")
    };
    let mut s = RecordingSpec::new(RecordingId::new(id)?, page.url(&query));
    s.viewport = Viewport {
        width: 1280,
        height: 720,
    };
    s.fps = fps;
    s.audio = true;
    s.stop.max_duration_secs = Some(1800);
    Ok(s)
}

async fn start(fleet: &mut Fleet, s: RecordingSpec) -> anyhow::Result<()> {
    match fleet.request(ConsoleRequest::StartRecording(s)).await? {
        ConsoleResponse::Started { .. } => Ok(()),
        other => anyhow::bail!("start: {other:?}"),
    }
}

async fn stop(
    fleet: &mut Fleet,
    id: &RecordingId,
) -> anyhow::Result<recfleet_protocol::RecordingDetail> {
    fleet
        .request(ConsoleRequest::StopRecording { id: id.clone() })
        .await?;
    fleet
        .wait_for_polling(id, 90, Duration::from_millis(200), |d| {
            d.info.state.is_terminal()
        })
        .await
}

/// Benchmark 3, start latency: request to first encoded frame, sequential,
/// cold (w1 keeps no ready slot: a new browser group each time) and warm
/// (w2 keeps one, and each start waits until it is ready), alternating in
/// one fleet so that both see the same machine.
pub async fn start_latency(opts: &Opts, agent: &Path, dir: &Path) -> anyhow::Result<Value> {
    let page = DemoServer::start(([127, 0, 0, 1], 0).into()).await?;
    let mut fleet = start_fleet(agent, dir, 3000).await?;
    for (n, pool, ready) in [(1, "cold", "0"), (2, "warm", "1")] {
        let config = dir.join(format!("w{n}.toml"));
        std::fs::write(&config, format!("[labels]\npool = \"{pool}\"\n"))?;
        let config = config.display().to_string();
        fleet.add_worker_with(
            n,
            1,
            &[
                ("RECFLEET_CONFIG", &config),
                ("RECFLEET_READY_SLOTS", ready),
            ],
        )?;
    }
    fleet.wait_workers(2, 30).await?;
    let (mut cold, mut warm) = (Vec::new(), Vec::new());
    for i in 0..opts.start_trials() * 2 {
        let pool = if i % 2 == 0 { "cold" } else { "warm" };
        // Both kinds start on a quiet machine: w2's refill (w1 and w2 share
        // these two cores, unlike two workers of a fleet) is over.
        fleet.wait_ready_slots("w2", 1, 60).await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let id = RecordingId::new(format!("start-{i}"))?;
        let mut s = spec(id.as_str(), &page, 15)?;
        s.labels.insert("pool".into(), pool.into());
        start(&mut fleet, s).await?;
        let d = fleet
            .wait_for_polling(&id, 90, POLL, |d| d.info.started_at.is_some())
            .await?;
        let ms = d
            .info
            .started_at
            .unwrap_or(0)
            .saturating_sub(d.info.created_at) as f64;
        println!("    start {i} ({pool}): {ms:.0} ms");
        if pool == "warm" {
            warm.push(ms)
        } else {
            cold.push(ms)
        }
        let end = stop(&mut fleet, &id).await?;
        anyhow::ensure!(
            end.info.state == RecordingState::Completed,
            "{id} ended {:?}",
            end.info
        );
        // Let the group's processes go before the next start.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // The idle cost of a ready slot once it has settled.
    fleet.wait_ready_slots("w2", 1, 60).await?;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let idle = fleet.wait_ready_slots("w2", 1, 60).await?.ready;
    fleet.shutdown().await;
    let (c, w) = (Summary::of(&cold), Summary::of(&warm));
    Ok(json!({
        "what": "StartRecording -> first encoded frame (RecordingInfo.started_at - created_at), 1280x720 at 15 fps with audio, demo page; cold: a worker without ready slots, warm: a worker with one ready slot",
        "samples_ms": cold,
        "n": c.n, "p50_ms": c.p50, "p95_ms": c.p95, "max_ms": c.max,
        "warm": {
            "samples_ms": warm,
            "n": w.n, "p50_ms": w.p50, "p95_ms": w.p95, "max_ms": w.max,
            "idle_millicores": idle.cpu_millicores,
            "idle_pss_bytes": idle.rss_bytes,
        },
    }))
}

/// Benchmark 4, failover: kill -9 of the worker holding a recording, to the first frame of the
/// new placement on the other worker. The killed worker is restarted and
/// the next trial kills whichever worker holds the recording then.
pub async fn failover(opts: &Opts, agent: &Path, dir: &Path) -> anyhow::Result<Value> {
    let idle_timeout_ms = 2000; // the default of both roles
    let page = DemoServer::start(([127, 0, 0, 1], 0).into()).await?;
    let mut fleet = start_fleet(agent, dir, idle_timeout_ms).await?;
    // As in production: one ready slot each (the worker's default).
    let ready = [("RECFLEET_READY_SLOTS", "1")];
    fleet.add_worker_with(1, 1, &ready)?;
    fleet.add_worker_with(2, 1, &ready)?;
    fleet.wait_workers(2, 30).await?;
    let id = RecordingId::new("failover")?;
    start(&mut fleet, spec(id.as_str(), &page, 15)?).await?;
    fleet
        .wait_for_polling(&id, 90, POLL, |d| d.info.state == RecordingState::Recording)
        .await?;
    let mut to_frame = Vec::new();
    for trial in 0..opts.failover_trials() {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let d = fleet.show(&id).await?;
        let holder = d.info.worker.clone().context("not placed")?;
        let other = if holder.as_str() == "w1" { "w2" } else { "w1" };
        fleet.wait_ready_slots(other, 1, 60).await?;
        let epoch = d.info.epoch;
        let killed_at = fleet.kill_worker(holder.as_str()).await?;
        let d = fleet
            .wait_for_polling(&id, 90, POLL, |d| {
                d.manifest
                    .segments
                    .iter()
                    .any(|s| s.epoch > epoch && s.first_frame_at.is_some())
            })
            .await?;
        let first = d
            .manifest
            .segments
            .iter()
            .filter(|s| s.epoch > epoch)
            .filter_map(|s| s.first_frame_at)
            .min()
            .unwrap_or(killed_at);
        let ms = first.saturating_sub(killed_at) as f64;
        println!(
            "    failover {trial}: kill -9 {holder} -> first frame on {} after {ms:.0} ms",
            d.info
                .worker
                .as_ref()
                .map(|w| w.to_string())
                .unwrap_or_default()
        );
        to_frame.push(ms);
        fleet.add_worker_with(holder.as_str()[1..].parse()?, 1, &ready)?;
        fleet.wait_workers(2, 30).await?;
    }
    let end = stop(&mut fleet, &id).await?;
    let twice = redundancy_trials(opts, &mut fleet, &page, &ready).await;
    fleet.shutdown().await;
    let twice = twice?;
    let gaps: Vec<f64> = end
        .manifest
        .gaps
        .iter()
        .map(|g| g.duration_ms as f64)
        .collect();
    let f = Summary::of(&to_frame);
    let g = Summary::of(&gaps);
    Ok(json!({
        "redundancy2": twice,
        "what": "kill -9 of the worker holding a 720p15 recording -> first frame of the new segment on the other worker (manifest first_frame_at - kill time); the killed worker's guard reports its death, the other worker has a ready slot",
        "coordinator_idle_timeout_ms": idle_timeout_ms,
        "kill_to_first_frame_ms": to_frame,
        "n": f.n, "p50_ms": f.p50, "p95_ms": f.p95, "max_ms": f.max,
        "manifest_gaps_ms": gaps,
        "gap_p50_ms": g.p50, "gap_max_ms": g.max,
        "final_state": end.info.state.to_string(),
    }))
}

/// The same kill -9 with redundancy 2: the first copy's worker dies while
/// the second copy records; what the manifest lost, whether the recording
/// was ever interrupted, and how long until it had two capturing copies
/// again (the killed worker comes back to take the new copy).
async fn redundancy_trials(
    opts: &Opts,
    fleet: &mut Fleet,
    page: &DemoServer,
    ready: &[(&str, &str)],
) -> anyhow::Result<Value> {
    let id = RecordingId::new("failover-twice")?;
    let mut s = spec(id.as_str(), page, 15)?;
    s.redundancy = 2;
    start(fleet, s).await?;
    let two_copies = |d: &recfleet_protocol::RecordingDetail| {
        d.info.state == RecordingState::Recording
            && d.info.copy.as_ref().is_some_and(|c| c.capturing)
    };
    fleet.wait_for_polling(&id, 120, POLL, two_copies).await?;
    let mut again_ms = Vec::new();
    let mut interrupted = 0;
    for trial in 0..opts.redundancy_trials() {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let d = fleet.show(&id).await?;
        let holder = d.info.worker.clone().context("not placed")?;
        let killed = std::time::Instant::now();
        fleet.kill_worker(holder.as_str()).await?;
        // Right after the kill the other copy holds it, still recording.
        let d = fleet
            .wait_for_polling(&id, 30, POLL, |d| d.info.worker.as_ref() != Some(&holder))
            .await?;
        if d.info.state != RecordingState::Recording {
            interrupted += 1;
        }
        fleet.add_worker_with(holder.as_str()[1..].parse()?, 1, ready)?;
        fleet.wait_workers(2, 30).await?;
        fleet.wait_for_polling(&id, 120, POLL, two_copies).await?;
        let ms = killed.elapsed().as_millis() as f64;
        println!(
            "    redundancy 2, trial {trial}: kill -9 {holder}: held by {} ({}); two copies again after {ms:.0} ms",
            d.info.worker.as_ref().map(|w| w.to_string()).unwrap_or_default(),
            d.info.state
        );
        again_ms.push(ms);
    }
    let end = stop(fleet, &id).await?;
    let gaps: Vec<u64> = end.manifest.gaps.iter().map(|g| g.duration_ms).collect();
    let a = Summary::of(&again_ms);
    Ok(json!({
        "what": "kill -9 of the worker holding the first copy of a 720p15 recording with redundancy 2 (the second copy records on the other worker)",
        "trials": again_ms.len(),
        "manifest_gaps_ms": gaps,
        "gap_total_ms": gaps.iter().sum::<u64>(),
        "interrupted": interrupted,
        "two_copies_again_ms": again_ms,
        "two_copies_again_p50_ms": a.p50, "two_copies_again_max_ms": a.max,
        "final_state": end.info.state.to_string(),
    }))
}

/// Frames and duration of the video stream of a file.
fn count_frames(file: &Path) -> anyhow::Result<(u64, f64)> {
    let out = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-count_frames",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=nb_read_frames:format=duration",
            "-of",
            "json",
        ])
        .arg(file)
        .output()
        .context("ffprobe")?;
    let v: Value = serde_json::from_slice(&out.stdout)?;
    let frames = v["streams"][0]["nb_read_frames"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let secs = v["format"]["duration"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0.0);
    Ok((frames, secs))
}

/// Frames whose picture differs from the frame before (MD5 of each decoded
/// frame): a capture that falls behind grabs frames back to back to catch
/// up, so the count of frames stays right while the pictures repeat.
fn new_pictures(file: &Path) -> anyhow::Result<u64> {
    let out = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(file)
        .args(["-an", "-f", "framemd5", "-"])
        .output()
        .context("ffmpeg framemd5")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut last = None;
    let mut n = 0;
    for hash in text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit(',').next().map(str::trim))
    {
        if last != Some(hash) {
            n += 1;
        }
        last = Some(hash);
    }
    Ok(n)
}

/// How long the density benchmark lets recordings run before measuring
/// them: as long as admission waits before it counts a start as measured.
const SETTLE: Duration = Duration::from_millis(recfleet_protocol::COST_SETTLES_AFTER_MS);

/// One density series: the page, its frame rate, how far to go.
struct Series {
    key: &'static str,
    query: &'static str,
    fps: u8,
    max: usize,
}

fn machine() -> anyhow::Result<MachineSample> {
    machine_sample().context("/proc/stat")
}

/// Benchmark 5, density: concurrent recordings one worker holds before
/// frames drop, and what each costs the machine, everything included (the
/// machine's busy CPU above idle, divided by the recordings: the worker
/// alone on this machine). The demo page as a class is (its teacher's
/// camera a stream from outside), at 15 and 30 fps, and the heavy page
/// (the camera encoded in the recorded browser too) at 15 fps.
pub async fn density(opts: &Opts, agent: &Path, dir: &Path) -> anyhow::Result<Value> {
    let page = DemoServer::start(([127, 0, 0, 1], 0).into()).await?;
    let mut fleet = start_fleet(agent, dir, 3000).await?;
    let pid = fleet.add_worker(1, 8)?;
    fleet.wait_workers(1, 30).await?;
    let a = proc_sample(pid).context("worker gone")?;
    let ma = machine()?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let b = proc_sample(pid).context("worker gone")?;
    let mb = machine()?;
    let (idle_cores, idle_rss) = (cores_between(&a, &b), b.rss_bytes as f64 / 1048576.0);
    let idle_machine = machine_cores_between(&ma, &mb);
    let baseline =
        json!({ "cpu_cores": idle_cores, "rss_mb": idle_rss, "machine_cpu_cores": idle_machine });
    let recordings_root = fleet.recordings();
    let mut by_fps = serde_json::Map::new();
    let series = [
        Series {
            key: "720p15",
            query: "",
            fps: 15,
            max: opts.density_max() + 2,
        },
        Series {
            key: "720p30",
            query: "",
            fps: 30,
            max: opts.density_max(),
        },
        Series {
            key: "720p15-heavy-page",
            query: "teacher=loopback",
            fps: 15,
            max: opts.density_max().min(3),
        },
    ];
    for Series {
        key,
        query,
        fps,
        max,
    } in series
    {
        let mut steps = Vec::new();
        let mut held_max = 0;
        // New pictures per expected frame of one recording alone: what
        // "as good as one alone" compares to.
        let mut alone: Option<f64> = None;
        for k in 1..=max {
            let ids: Vec<RecordingId> = (0..k)
                .map(|j| RecordingId::new(format!("d{}-{k}-{j}", key.replace('-', ""))))
                .collect::<Result<_, _>>()?;
            for id in &ids {
                start(&mut fleet, spec_of(id.as_str(), &page, fps, query)?).await?;
            }
            for id in &ids {
                fleet
                    .wait_for_polling(id, 120, Duration::from_millis(200), |d| {
                        d.info.state == RecordingState::Recording
                    })
                    .await?;
            }
            // The window starts once the starts are over: an encoder that
            // fell behind while its page loaded catches up faster than
            // real time for a while, at more than its steady cost.
            tokio::time::sleep(SETTLE).await;
            let a = proc_sample(pid).context("worker gone")?;
            let ma = machine()?;
            // What the worker measures of itself and its slots (what
            // admission uses), every 2 s of the window.
            let until = tokio::time::Instant::now() + opts.density_secs();
            let mut measured = Vec::new();
            while tokio::time::Instant::now() < until {
                tokio::time::sleep(Duration::from_secs(2).min(until - tokio::time::Instant::now()))
                    .await;
                if let ConsoleResponse::Workers(ws) =
                    fleet.request(ConsoleRequest::ListWorkers).await?
                {
                    measured.extend(ws.iter().map(|w| f64::from(w.cpu_millicores) / 1000.0));
                }
            }
            let worker_measured = measured.iter().sum::<f64>() / measured.len().max(1) as f64;
            let b = proc_sample(pid).context("worker gone")?;
            let mb = machine()?;
            let mut per = Vec::new();
            let mut worst = f64::INFINITY;
            let mut worst_new = f64::INFINITY;
            let mut restarts = 0;
            for id in &ids {
                let d = stop(&mut fleet, id).await?;
                restarts += d.info.restarts;
                let (mut frames, mut secs, mut wall) = (0u64, 0.0f64, 0.0f64);
                let mut pictures = 0u64;
                for s in d.manifest.segments.iter().filter(|s| s.current) {
                    let file =
                        recfleet_testkit::segments::join_segment(&recordings_root.join(&s.file))?;
                    let (f, t) = count_frames(&file)?;
                    pictures += new_pictures(&file)?;
                    frames += f;
                    secs += t;
                    if let (Some(x), Some(y)) = (s.first_frame_at, s.last_frame_at) {
                        wall += y.saturating_sub(x) as f64 / 1000.0;
                    }
                }
                let ratio = frames as f64 / (f64::from(fps) * secs.max(0.001));
                let new_ratio = pictures as f64 / (f64::from(fps) * secs.max(0.001));
                worst = worst.min(ratio);
                worst_new = worst_new.min(new_ratio);
                per.push(json!({
                    "id": id.to_string(), "frames": frames, "media_secs": secs,
                    "wall_secs": wall, "frames_per_expected": ratio,
                    "new_pictures": pictures, "new_pictures_per_expected": new_ratio,
                    "state": d.info.state.to_string(), "restarts": d.info.restarts,
                }));
            }
            let alone_new = *alone.get_or_insert(worst_new);
            let vs_alone = worst_new / alone_new.max(0.001);
            let held = worst >= 0.95 && vs_alone >= 0.97 && restarts == 0;
            let cores = cores_between(&a, &b);
            let machine_cores = machine_cores_between(&ma, &mb);
            let per_recording = (machine_cores - idle_machine).max(0.0) / k as f64;
            println!(
                "    {key} x{k}: worst frames/expected {worst:.3}, new pictures/expected {worst_new:.3} ({vs_alone:.3} of one alone), restarts {restarts}, machine {machine_cores:.2} cores ({per_recording:.3} per recording), measured by the worker {worker_measured:.2} cores ({:.3} per recording), worker process {cores:.4} cores, {:.1} MB -> {}",
                worker_measured / k as f64,
                b.rss_bytes as f64 / 1048576.0,
                if held { "held" } else { "frames dropped" }
            );
            steps.push(json!({
                "concurrent": k,
                "held": held,
                "worst_frames_per_expected": worst,
                "worst_new_pictures_per_expected": worst_new,
                "worst_new_pictures_vs_one_alone": vs_alone,
                "machine_cpu_cores": machine_cores,
                "cpu_cores_per_recording": per_recording,
                "worker_measured_cpu_cores": worker_measured,
                "worker_measured_cpu_cores_per_recording": worker_measured / k as f64,
                "worker_process_cpu_cores": cores,
                "worker_process_rss_mb": b.rss_bytes as f64 / 1048576.0,
                "worker_process_cpu_cores_per_recording": (cores - idle_cores).max(0.0) / k as f64,
                "worker_process_rss_mb_per_recording": (b.rss_bytes as f64 / 1048576.0 - idle_rss).max(0.0) / k as f64,
                "recordings": per,
            }));
            tokio::time::sleep(Duration::from_secs(3)).await;
            if !held {
                break;
            }
            held_max = k;
        }
        by_fps.insert(
            key.to_string(),
            json!({ "max_concurrent_without_drops": held_max, "steps": steps }),
        );
    }
    fleet.shutdown().await;
    Ok(json!({
        "what": "1280x720 recordings of the demo page on one worker (720p15, 720p30: its teacher's camera a stream from outside the page, as in a class; 720p15-heavy-page: teacher=loopback, the camera also encoded in the recorded browser); cpu per recording = the machine's busy CPU above idle / recordings; held = every recording has >= 95% of fps x duration frames (ffprobe -count_frames), new pictures (frames that differ from the frame before, ffmpeg framemd5) >= 97% of what one recording alone gets, and no restart",
        "recording_secs": opts.density_secs().as_secs_f64(),
        "worker_process_idle": baseline,
        "by_fps": by_fps,
    }))
}
