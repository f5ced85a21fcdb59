//! Recording output: what uploading chunks while recording costs a worker,
//! and how long a recording takes from its end to its recording.mp4.
//!
//! The media is made once by ffmpeg from a moving test picture and a tone,
//! with the capture's own codec settings and chunking (1280x720, 15 fps,
//! 2 s chunks), so that sizes and the remux are those of a real capture
//! without a browser's cost in the measurement. The store is a real S3
//! server on loopback (weed mini) and, side by side, a local directory.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use recfleet_agent::output::destination::Destination;
use recfleet_agent::output::finalize::{finalize, FinalizeOptions};
use recfleet_agent::output::{codec, hls};
use recfleet_agent::worker::upload::{PartId, UploadConfig, Uploader, LOCAL_PLAYLIST};
use recfleet_protocol::manifest::{Manifest, ManifestSegment};
use recfleet_protocol::spec::{RecordingSpec, Viewport};
use recfleet_protocol::{now_ms, Epoch, RecordingId, RecordingState, SlotProgress, WorkerName};
use recfleet_testkit::procs::proc_sample;
use recfleet_testkit::S3Server;
use serde_json::{json, Value};

use crate::Opts;

const BUCKET: &str = "bench";
const FPS: u32 = 15;

/// Runs both measurements.
pub async fn run(opts: &Opts, dir: &Path) -> anyhow::Result<Value> {
    let minutes = opts.output_minutes();
    let media = dir.join("media");
    let t = Instant::now();
    make_capture(&media, minutes * 60).await?;
    let encode_secs = t.elapsed().as_secs_f64();
    let chunks = hls::parse_local_playlist(&std::fs::read_to_string(media.join(LOCAL_PLAYLIST))?);
    let bytes: u64 = chunks
        .chunks
        .iter()
        .map(|(c, _)| {
            std::fs::metadata(media.join(c))
                .map(|m| m.len())
                .unwrap_or(0)
        })
        .sum();
    println!(
        "  media: {} chunks, {:.1} MB for {minutes} min (made in {encode_secs:.0} s)",
        chunks.chunks.len(),
        bytes as f64 / 1e6
    );
    let s3 = S3Server::start().await?;
    s3.create_bucket(BUCKET)?;
    let env = s3.env();
    let lookup = move |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let s3_dest = Destination::open_with_env(&format!("s3://{BUCKET}/out"), &lookup)?;
    let file_dest = Destination::open(&format!("file://{}", dir.join("store").display()))?;

    let upload = upload_cost(opts, &media, dir, &s3_dest).await?;
    let mut finalize_runs = serde_json::Map::new();
    for (name, dest) in [("s3", &s3_dest), ("file", &file_dest)] {
        let v = time_finalize(&media, dir, dest, minutes).await?;
        println!(
            "  {name}: end -> recording.mp4 of {minutes} min in {:.1} s",
            v["secs"].as_f64().unwrap_or(0.0)
        );
        finalize_runs.insert(name.into(), v);
    }
    Ok(json!({
        "media": {
            "minutes": minutes,
            "chunks": chunks.chunks.len(),
            "bytes": bytes,
            "size": "1280x720",
            "fps": FPS,
        },
        "upload": upload,
        "finalize": finalize_runs,
    }))
}

/// A capture-like part: `init.mp4`, `c00000.m4s`, ... and `local.m3u8`.
async fn make_capture(dir: &Path, secs: u64) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut args: Vec<String> = [
        "-hide_banner",
        "-nostdin",
        "-v",
        "error",
        "-y",
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=1280x720:rate=15",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=48000,aformat=channel_layouts=stereo",
        "-t",
    ]
    .map(String::from)
    .to_vec();
    args.push(secs.to_string());
    args.extend(codec::video_args(FPS));
    args.extend(codec::audio_args());
    args.extend(codec::chunk_output_args(dir, LOCAL_PLAYLIST));
    let out = tokio::process::Command::new("ffmpeg")
        .args(&args)
        .output()
        .await
        .context("ffmpeg")?;
    if !out.status.success() {
        bail!("ffmpeg: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// `recordings` parts fed at the capture's pace (a chunk every 2 s each)
/// into the worker's uploader, which stores them in S3: this process's CPU
/// and memory over the window, against the same window with the uploader
/// idle.
async fn upload_cost(
    opts: &Opts,
    media: &Path,
    dir: &Path,
    dest: &Destination,
) -> anyhow::Result<Value> {
    let recordings = 4u32;
    let window = opts.pick(Duration::from_secs(6), Duration::from_secs(40));
    let pid = std::process::id();
    let idle = measure(pid, window, async {}).await;
    let buffer = dir.join("buffer");
    let uploader = Uploader::new(UploadConfig {
        buffer_limit_bytes: 2 << 30,
        retry_window: Duration::from_secs(60),
        default_destination: dest.url().to_string(),
    });
    uploader.use_destination(dest.clone());
    let playlist = hls::parse_local_playlist(&std::fs::read_to_string(media.join(LOCAL_PLAYLIST))?);
    let (events, mut reports) = tokio::sync::mpsc::unbounded_channel();
    let stored = Arc::new(Mutex::new(0u64));
    let counted = stored.clone();
    let counter = tokio::spawn(async move {
        while let Some(m) = reports.recv().await {
            if let recfleet_protocol::WorkerMessage::ChunkStored(c) = m {
                *counted.lock().unwrap_or_else(|e| e.into_inner()) += c.chunk.bytes;
            }
        }
    });
    let mut parts = Vec::new();
    for n in 0..recordings {
        let id = PartId {
            recording: RecordingId::new(format!("up-{n}"))?,
            dir: format!("up-{n}"),
            destination: None,
            epoch: Epoch(1),
            part: 0,
        };
        let local = Uploader::local_dir(&buffer, &id);
        let progress = Arc::new(Mutex::new(SlotProgress::default()));
        let part = uploader.start_part(id, local.clone(), false, progress, events.clone());
        parts.push((local, part));
    }
    let feed = async {
        // What ffmpeg does: a chunk appears, then the playlist lists it.
        let rounds = (window.as_secs() / 2) as usize;
        for round in 0..rounds.min(playlist.chunks.len()) {
            for (local, _) in &parts {
                if round == 0 {
                    std::fs::copy(media.join("init.mp4"), local.join("init.mp4"))?;
                }
                let (name, _) = &playlist.chunks[round];
                std::fs::copy(media.join(name), local.join(name))?;
                let mut text = String::from("#EXTM3U\n#EXT-X-MAP:URI=\"init.mp4\"\n");
                for (c, ms) in &playlist.chunks[..=round] {
                    text.push_str(&format!("#EXTINF:{:.6},\n{c}\n", *ms as f64 / 1000.0));
                }
                let tmp = local.join("local.m3u8.tmp");
                std::fs::write(&tmp, text)?;
                std::fs::rename(&tmp, local.join(LOCAL_PLAYLIST))?;
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        anyhow::Ok(())
    };
    let busy = measure(pid, window, async {
        if let Err(e) = feed.await {
            eprintln!("feeding chunks: {e:#}");
        }
    })
    .await;
    for (_, part) in parts {
        part.finish().await;
    }
    drop(events);
    let _ = counter.await;
    let stored = *stored.lock().unwrap_or_else(|e| e.into_inner());
    let cores = (busy.0 - idle.0).max(0.0) / f64::from(recordings);
    let rss = busy.1.saturating_sub(idle.1) as f64 / f64::from(recordings) / 1e6;
    println!(
        "  upload to S3: {cores:.4} cores and {rss:.1} MB per recording ({recordings} at once, {:.1} MB stored)",
        stored as f64 / 1e6
    );
    Ok(json!({
        "recordings": recordings,
        "window_secs": window.as_secs(),
        "cores_per_recording": cores,
        "rss_mb_per_recording": rss,
        "idle_cores": idle.0,
        "busy_cores": busy.0,
        "idle_rss_mb": idle.1 as f64 / 1e6,
        "busy_rss_mb": busy.1 as f64 / 1e6,
        "stored_bytes": stored,
    }))
}

/// Cores used by `pid` while `work` runs for `window`, and its peak RSS.
async fn measure(
    pid: u32,
    window: Duration,
    work: impl std::future::Future<Output = ()>,
) -> (f64, u64) {
    let start = proc_sample(pid);
    let peak = Arc::new(Mutex::new(0u64));
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                if let Some(s) = proc_sample(pid) {
                    let mut p = peak.lock().unwrap_or_else(|e| e.into_inner());
                    *p = (*p).max(s.rss_bytes);
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    let until = tokio::time::Instant::now() + window;
    work.await;
    tokio::time::sleep_until(until).await;
    let end = proc_sample(pid);
    sampler.abort();
    let cores = match (start, end) {
        (Some(a), Some(b)) => recfleet_testkit::procs::cores_between(&a, &b),
        _ => 0.0,
    };
    let peak = *peak.lock().unwrap_or_else(|e| e.into_inner());
    (cores, peak)
}

/// Stores the part as one worker would have, then times what the
/// coordinator does when the recording ends: read everything back, write
/// index.m3u8, remux recording.mp4 and store it.
async fn time_finalize(
    media: &Path,
    dir: &Path,
    dest: &Destination,
    minutes: u64,
) -> anyhow::Result<Value> {
    let id = RecordingId::new(format!(
        "fin-{}",
        dest.url().split(':').next().unwrap_or("x")
    ))?;
    let mut spec = RecordingSpec::new(id.clone(), "http://127.0.0.1/");
    spec.viewport = Viewport {
        width: 1280,
        height: 720,
    };
    spec.destination = Some(dest.url().to_string());
    let playlist = hls::parse_local_playlist(&std::fs::read_to_string(media.join(LOCAL_PLAYLIST))?);
    let seg = "segments/e1-p0";
    dest.put_file(
        id.as_str(),
        &format!("{seg}/init.mp4"),
        &media.join("init.mp4"),
    )
    .await?;
    for (c, _) in &playlist.chunks {
        dest.put_file(id.as_str(), &format!("{seg}/{c}"), &media.join(c))
            .await?;
    }
    let first = now_ms();
    let media_ms: u64 = playlist.chunks.iter().map(|(_, ms)| ms).sum();
    let segment = ManifestSegment {
        worker: WorkerName::new("w1")?,
        epoch: Epoch(1),
        part: 0,
        file: seg.into(),
        started_at: first,
        ended_at: Some(first + media_ms),
        first_frame_at: Some(first),
        last_frame_at: Some(first + media_ms),
        bytes: 0,
        sha256: String::new(),
        end_reason: None,
        current: true,
        chunks: Vec::new(),
    };
    let manifest = Manifest::build(
        id.clone(),
        spec.url.clone(),
        RecordingState::Finalizing,
        None,
        vec![segment],
    );
    let work: PathBuf = dir.join("finalize").join(id.as_str());
    let t = Instant::now();
    let (outputs, _) = finalize(dest, &spec, &manifest, &work, &FinalizeOptions::default())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let secs = t.elapsed().as_secs_f64();
    if let Some(e) = outputs.error {
        bail!("recording.mp4 not made: {e}");
    }
    let rec = outputs.recording.context("no recording.mp4")?;
    Ok(json!({
        "secs": secs,
        "minutes": minutes,
        "recording_bytes": rec.bytes,
        "recording_ms": rec.duration_ms,
        "secs_per_recorded_hour": secs * 60.0 / minutes as f64,
    }))
}
