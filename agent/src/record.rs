//! `recfleet-agent record`: one recording on this machine with the worker's
//! engine, no coordinator. For trying the pipeline and for tests.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use recfleet_protocol::manifest::{Manifest, ManifestSegment, SegmentEndReason};
use recfleet_protocol::spec::{CaptureMode, PageSignal, RecordingSpec, Viewport};
use recfleet_protocol::{now_ms, Epoch, RecordingId, RecordingState, WorkerMessage, WorkerName};

use crate::demo::DemoServer;
use crate::exit::Failure;
use crate::output::destination::Destination;
use crate::output::finalize::{finalize, segment_dir, FinalizeOptions};
use crate::worker::{Engine, EngineConfig};
use recfleet_protocol::manifest::Chunk;

/// Options of `record`.
#[derive(Debug, clap::Args)]
pub struct RecordArgs {
    /// The class page (http or https).
    #[arg(long, required_unless_present = "demo")]
    pub url: Option<String>,
    /// Record the built-in demo class page (served on loopback) instead of --url.
    #[arg(long, conflicts_with = "url")]
    pub demo: bool,
    /// Output directory; segments and manifest.json go to OUT/ID/.
    #[arg(long)]
    pub out: PathBuf,
    /// Recording id (default: rec-<unix time>).
    #[arg(long)]
    pub id: Option<String>,
    /// Stop after this long (e.g. 30s, 5m, 1h).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// Frames per second.
    #[arg(long, default_value_t = 15)]
    pub fps: u8,
    /// Picture size, WIDTHxHEIGHT.
    #[arg(long, default_value = "1280x720")]
    pub size: Viewport,
    /// Record without sound.
    #[arg(long)]
    pub no_audio: bool,
    /// Internal hosts or ranges the page may reach besides loopback
    /// (repeatable; `class.corp.example`, `10.1.0.0/16`). Everything else
    /// internal is refused, as a fleet's coordinator refuses it.
    #[arg(long = "allow-internal", value_delimiter = ',')]
    pub allow_internal: Vec<String>,
    /// Stop when this page variable (dotted path from window) becomes truthy.
    #[arg(long, value_name = "VARIABLE")]
    pub page_signal: Option<String>,
    /// Capture with this external command instead (JSON-lines contract,
    /// examples/capture/README.md); everything after `--`.
    #[arg(last = true)]
    pub capture_command: Vec<String>,
    /// Restart intensity: at most N restarts ...
    #[arg(long, default_value_t = 3)]
    pub max_restarts: u32,
    /// ... within this period.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub restart_period: Duration,
    /// Seconds without progress that count as a crash.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub stall_timeout: Duration,
}

impl RecordArgs {
    fn spec(&self, url: String) -> Result<RecordingSpec, Failure> {
        let id = self
            .id
            .clone()
            .unwrap_or_else(|| format!("rec-{}", now_ms() / 1000));
        let id = RecordingId::new(id).map_err(|e| Failure::invalid(e.to_string()))?;
        let mut spec = RecordingSpec::new(id, url);
        spec.viewport = self.size;
        spec.fps = self.fps;
        spec.audio = !self.no_audio;
        spec.stop.max_duration_secs = self
            .duration
            .map(|d| d.as_secs().clamp(1, u64::from(u32::MAX)) as u32);
        spec.stop.page_signal = self.page_signal.clone().map(PageSignal::Variable);
        if !self.capture_command.is_empty() {
            spec.capture = CaptureMode::External {
                command: self.capture_command.clone(),
            };
        }
        spec.validate().map_err(|problems| {
            Failure::invalid(format!(
                "the recording request is invalid:\n{}",
                problems
                    .iter()
                    .map(|p| format!("  - {p}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            ))
        })?;
        Ok(spec)
    }
}

/// Runs one recording to its end and writes its manifest.
pub async fn run(args: RecordArgs) -> Result<(), Failure> {
    // The demo page server lives as long as the recording.
    let demo = match args.demo {
        true => Some(
            DemoServer::start(([127, 0, 0, 1], 0).into())
                .await
                .map_err(|e| Failure::other(anyhow::anyhow!("cannot serve the demo page: {e}")))?,
        ),
        false => None,
    };
    let url = match &demo {
        Some(server) => server.url("title=recfleet%20demo%20class"),
        None => args.url.clone().unwrap_or_default(),
    };
    let mut spec = args.spec(url)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))
        .map_err(Failure::other)?;
    let out = args
        .out
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", args.out.display()))
        .map_err(Failure::other)?;
    // The same layout as a fleet's `file://` destination: chunks are
    // stored under <out>/<id>/segments/ as they close, then stitched.
    let destination_url = format!("file://{}", out.display());
    spec.destination = Some(destination_url.clone());
    let mut config = EngineConfig::new(out.clone());
    config.max_restarts = args.max_restarts;
    config.restart_period = args.restart_period;
    config.timeouts.stall = args.stall_timeout;
    // A local recording is of local pages as often as not: loopback is
    // admitted, the rest of the policy is a fleet's.
    let mut egress = recfleet_protocol::egress::UrlPolicy::loopback_allowed();
    egress
        .allow_internal
        .extend(args.allow_internal.iter().cloned());
    egress
        .validate()
        .and_then(|()| egress.check(&spec.url))
        .map_err(|why| Failure::invalid(format!("--url: {why}")))?;
    config.egress = egress;
    let missing = config.bins.missing();
    if !missing.is_empty() && matches!(spec.capture, CaptureMode::Builtin) {
        return Err(Failure::unavailable(format!(
            "missing programs: {} (install: apt-get install chromium chromium-driver ffmpeg xvfb pulseaudio)",
            missing.join(", ")
        )));
    }
    let (engine, mut events) = Engine::start(config)
        .context("cannot start the recording engine")
        .map_err(Failure::other)?;
    let dir = out.join(spec.output_dir());
    engine
        .start_recording(spec.clone(), Epoch::FIRST, None)
        .map_err(|e| Failure::invalid(e.to_string()))?;
    eprintln!("recording {} into {}", spec.url, dir.display());

    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| Failure::other(e.into()))?;
    let mut segments = Vec::new();
    let mut chunks: std::collections::BTreeMap<(u64, u32), Vec<Chunk>> = Default::default();
    let worker = WorkerName::new("local").map_err(|e| Failure::other(e.into()))?;
    let reason = loop {
        tokio::select! {
            ev = events.recv() => match ev {
                Some(WorkerMessage::SegmentEnded(r)) => {
                    eprintln!("segment {} ended: {} ({} bytes)", r.file, r.reason.describe(), r.bytes);
                    segments.push(ManifestSegment {
                        worker: worker.clone(),
                        epoch: r.epoch,
                        part: r.part,
                        file: segment_dir(r.epoch, r.part),
                        started_at: r.started_at,
                        ended_at: Some(r.ended_at),
                        first_frame_at: r.first_frame_at,
                        last_frame_at: r.last_frame_at,
                        bytes: r.bytes,
                        sha256: r.sha256,
                        end_reason: Some(r.reason),
                        current: true,
                        chunks: Vec::new(),
                    });
                }
                Some(WorkerMessage::FirstFrame { .. }) => eprintln!("capturing"),
                Some(WorkerMessage::ChunkStored(r)) => {
                    chunks.entry((r.epoch.0, r.part)).or_default().push(r.chunk);
                }
                Some(WorkerMessage::PlacementEnded { reason, .. }) => break reason,
                Some(_) => {}
                None => break SegmentEndReason::WorkerShutdown,
            },
            _ = tokio::signal::ctrl_c() => {
                engine.stop_recording(&spec.id, Epoch::FIRST, SegmentEndReason::Stopped);
            }
            _ = sigterm.recv() => {
                engine.stop_recording(&spec.id, Epoch::FIRST, SegmentEndReason::Stopped);
            }
        }
    };
    engine.shutdown(SegmentEndReason::WorkerShutdown).await;
    let captured = segments.iter().any(|s| s.first_frame_at.is_some());
    let state = if captured {
        RecordingState::Completed
    } else {
        RecordingState::Failed
    };
    for s in &mut segments {
        s.chunks = chunks.remove(&(s.epoch.0, s.part)).unwrap_or_default();
    }
    let mut manifest = Manifest::build(
        spec.id.clone(),
        spec.url.clone(),
        state,
        Some(reason.describe()),
        segments,
    );
    if captured {
        let dest = Destination::open(&destination_url).map_err(|e| Failure::other(e.into()))?;
        eprintln!("stitching recording.mp4");
        let (outputs, stored) = finalize(
            &dest,
            &spec,
            &manifest,
            &out.join(".finalize").join(spec.id.as_str()),
            &FinalizeOptions::default(),
        )
        .await
        .unwrap_or_else(|e| {
            (
                recfleet_protocol::Outputs {
                    error: Some(e.to_string()),
                    ..Default::default()
                },
                Vec::new(),
            )
        });
        for st in stored {
            if let Some(s) = manifest
                .segments
                .iter_mut()
                .find(|s| s.epoch == st.epoch && s.part == st.part)
            {
                s.bytes = st.bytes;
                s.sha256 = st.sha256;
                s.chunks = st.chunks;
                if let Some(first) = s.first_frame_at {
                    s.last_frame_at = Some(first + st.duration_ms);
                }
            }
        }
        if let Some(e) = &outputs.error {
            eprintln!("recording.mp4 not made: {e}");
        }
        // Gaps and overlaps again, from the frame times of what is stored.
        let segments = std::mem::take(&mut manifest.segments);
        manifest = Manifest::build(
            spec.id.clone(),
            spec.url.clone(),
            state,
            Some(reason.describe()),
            segments,
        );
        manifest.outputs = Some(outputs);
    }
    let path = write_manifest(&dir, &manifest).map_err(Failure::other)?;
    println!("{}", path.display());
    if captured {
        Ok(())
    } else {
        Err(Failure::failed(format!(
            "nothing was recorded: {}",
            reason.describe()
        )))
    }
}

/// Writes `manifest.json` atomically (temp file + rename): a reader never
/// sees half a manifest.
pub fn write_manifest(dir: &Path, manifest: &Manifest) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join("manifest.json");
    let tmp = dir.join(".manifest.json.tmp");
    let json = serde_json::to_vec_pretty(manifest)?;
    std::fs::write(&tmp, json).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}
