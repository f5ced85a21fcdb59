//! The supervisor of one placement: runs parts one after the other,
//! restarting the whole group after a crash (one-for-all) until a stop, or
//! until the restart intensity is exceeded.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use recfleet_protocol::manifest::SegmentEndReason;
use recfleet_protocol::spec::RecordingSpec;
use recfleet_protocol::{Epoch, SegmentReport, SlotProgress, WorkerMessage};
use tokio::sync::{mpsc, watch};

use super::cgroup::{Hierarchy, SlotCgroup};
use super::config::EngineConfig;
use super::egress::EgressProxy;
use super::intensity::RestartIntensity;
use super::pipeline::{self, PartContext, PartEvent};
use super::pool::WarmPool;
use super::upload::{PartId, Uploader};
use crate::output::finalize::segment_dir;
use recfleet_protocol::egress::UrlPolicy;
use recfleet_protocol::spec::CaptureMode;

/// What the supervisor needs.
#[derive(Debug)]
pub struct Slot {
    /// Engine settings.
    pub config: Arc<EngineConfig>,
    /// What to record.
    pub spec: Arc<RecordingSpec>,
    /// The placement.
    pub epoch: Epoch,
    /// Tag prefix of this slot's processes.
    pub tag: String,
    /// Runtime directory of the slot.
    pub dir: std::path::PathBuf,
    /// Wall-clock end by max duration, if the coordinator knows it (a
    /// recording placed again); otherwise it is set at the first frame.
    pub deadline: Option<u64>,
    /// Progress for telemetry.
    pub progress: Arc<Mutex<SlotProgress>>,
    /// Where the slot reports (as worker protocol messages).
    pub events: mpsc::UnboundedSender<WorkerMessage>,
    /// The worker's uploads.
    pub uploader: Uploader,
    /// Where its pages may go.
    pub egress: Arc<UrlPolicy>,
    /// Where its parts' control groups are made (None: limits off).
    pub cgroups: Option<Arc<Hierarchy>>,
    /// Ready slots its parts take when one fits.
    pub pool: Arc<WarmPool>,
    /// The tag of its current part's processes (queries list them).
    pub tag_now: Arc<Mutex<String>>,
}

impl Slot {
    /// The segment's directory, relative to the destination's root.
    fn relative_file(&self, part: u32) -> String {
        format!(
            "{}/{}",
            self.spec.output_dir(),
            segment_dir(self.epoch, part)
        )
    }

    /// Supervises until the placement ends; returns why it ended.
    pub async fn run(
        self,
        mut stop: watch::Receiver<Option<SegmentEndReason>>,
    ) -> SegmentEndReason {
        let mut intensity =
            RestartIntensity::new(self.config.max_restarts, self.config.restart_period);
        let mut part = 0u32;
        let mut deadline = self.deadline;
        let id = self.spec.id.clone();
        // Each part's last uploads finish in the background (the next part
        // does not wait for the store); its report leaves after them, and
        // the placement ends only when every part is reported.
        let mut reports = Vec::new();
        // Directories of the ready slots its parts took (outside its own).
        let mut ready_dirs = Vec::new();
        let reason = loop {
            let file = self.relative_file(part);
            let part_id = PartId {
                recording: id.clone(),
                dir: self.spec.output_dir().to_string(),
                destination: self.spec.destination.clone(),
                epoch: self.epoch,
                part,
            };
            let chunk_dir = Uploader::local_dir(&self.config.out_root, &part_id);
            let _ = std::fs::remove_dir_all(&chunk_dir);
            let upload = self.uploader.start_part(
                part_id,
                chunk_dir.clone(),
                !matches!(self.spec.capture, CaptureMode::Builtin),
                self.progress.clone(),
                self.events.clone(),
            );
            // A ready slot of the warm pool when one fits: its display,
            // sound, ChromeDriver and browser are up already.
            let (ctx, ready, proxy, exits_rx) = match self.pool.take(&self.spec) {
                Some(r) => {
                    let t = r.take(
                        self.spec.clone(),
                        self.epoch,
                        part,
                        chunk_dir,
                        upload.stored_bytes_counter(),
                    );
                    // Queries find the part's files under the slot's
                    // directory, as for a part started here.
                    let _ = std::fs::create_dir_all(&self.dir);
                    let _ =
                        std::os::unix::fs::symlink(&t.ctx.dir, self.dir.join(format!("p{part}")));
                    ready_dirs.push(t.ctx.dir.clone());
                    tracing::info!(recording = %id, part, ready = %t.ctx.tag, "starting on a ready slot");
                    (t.ctx, Some(t.parts), t.proxy, t.exits)
                }
                None => {
                    // A fresh proxy per part: its refusals are this part's,
                    // and it stops, tunnels and all, when the part ends.
                    let proxy = match EgressProxy::start(self.egress.clone()).await {
                        Ok(p) => p,
                        Err(e) => {
                            tracing::error!(error = %e, "the egress proxy cannot listen");
                            upload.finish().await;
                            break SegmentEndReason::StartFailed {
                                reason: format!("the egress proxy cannot listen: {e}"),
                            };
                        }
                    };
                    let (exits_tx, exits_rx) = mpsc::unbounded_channel();
                    let ctx = PartContext {
                        spec: self.spec.clone(),
                        epoch: self.epoch,
                        part,
                        tag: format!("{}/p{part}", self.tag),
                        dir: self.dir.join(format!("p{part}")),
                        chunk_dir,
                        stored: upload.stored_bytes_counter(),
                        bins: Arc::new(self.config.bins.clone()),
                        timeouts: self.config.timeouts,
                        exits: exits_tx,
                        egress: proxy.gate(),
                        cgroup: self.part_cgroup(part),
                    };
                    (ctx, None, proxy, exits_rx)
                }
            };
            if let Ok(mut t) = self.tag_now.lock() {
                t.clone_from(&ctx.tag);
            }
            let cgroup = ctx.cgroup.clone();
            let (part_tx, mut part_rx) = mpsc::unbounded_channel();
            let events = self.events.clone();
            let (rid, epoch) = (id.clone(), self.epoch);
            let rel = file.clone();
            let mut starting = self.pool.start_begins();
            let part_began = recfleet_protocol::now_ms();
            let forward = tokio::spawn(async move {
                while let Some(ev) = part_rx.recv().await {
                    if let PartEvent::FirstFrame { at } = ev {
                        starting.done();
                        tracing::info!(
                            recording = %rid, part,
                            after_ms = at.saturating_sub(part_began),
                            "first frame"
                        );
                    }
                    let msg = match ev {
                        PartEvent::Started { at } => WorkerMessage::SegmentStarted {
                            recording: rid.clone(),
                            epoch,
                            part,
                            file: rel.clone(),
                            at,
                        },
                        PartEvent::FirstFrame { at } => WorkerMessage::FirstFrame {
                            recording: rid.clone(),
                            epoch,
                            part,
                            at,
                        },
                    };
                    let _ = events.send(msg);
                }
            });
            let log_dir = ctx.dir.clone();
            let part_chunks = ctx.chunk_dir.clone();
            let result = pipeline::run_part(
                ctx,
                ready,
                exits_rx,
                &mut stop,
                &mut deadline,
                self.progress.clone(),
                part_tx,
            )
            .await;
            let _ = forward.await;
            drop(proxy);
            let mut result = result;
            if let Some(group) = &cgroup {
                out_of_memory(
                    &mut result.reason,
                    group,
                    self.config.slot_limits.memory_max,
                );
            }
            self.keep_logs(&log_dir, &part_chunks);
            let (events, rid, epoch, report) =
                (self.events.clone(), id.clone(), self.epoch, result.clone());
            reports.push(tokio::spawn(async move {
                let up = upload.finish().await;
                tracing::info!(
                    recording = %rid, %epoch, part,
                    reason = %report.reason.describe(), bytes = up.bytes,
                    left_behind = up.left_behind,
                    "segment ended"
                );
                let _ = events.send(WorkerMessage::SegmentEnded(SegmentReport {
                    recording: rid,
                    epoch,
                    part,
                    file,
                    bytes: up.bytes,
                    sha256: up.sha256,
                    started_at: report.started_at,
                    ended_at: report.ended_at,
                    first_frame_at: report.first_frame_at,
                    last_frame_at: report.last_frame_at,
                    reason: report.reason,
                }));
            }));
            if !result.crashed {
                break result.reason;
            }
            if let Some(requested) = stop.borrow().clone() {
                break requested;
            }
            if !intensity.allow_restart(Instant::now()) {
                break SegmentEndReason::GaveUp {
                    reason: format!(
                        "{}; more than {}",
                        result.reason.describe(),
                        intensity.describe()
                    ),
                };
            }
            if let Ok(mut p) = self.progress.lock() {
                p.restarts += 1;
            }
            tracing::warn!(recording = %id, epoch = %self.epoch, part, reason = %result.reason.describe(), "restarting the slot (one-for-all)");
            part += 1;
        };
        for r in reports {
            let _ = r.await;
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        for d in ready_dirs {
            let _ = std::fs::remove_dir_all(d);
        }
        reason
    }

    /// The control group of part `part`, when limits are on.
    fn part_cgroup(&self, part: u32) -> Option<Arc<SlotCgroup>> {
        let h = self.cgroups.as_ref()?;
        let slot = self.dir.file_name()?.to_string_lossy().into_owned();
        match h.slot(&format!("{slot}-p{part}"), &self.config.slot_limits) {
            Ok(g) => Some(Arc::new(g)),
            Err(e) => {
                tracing::warn!(error = %e, "this part runs without limits: its control group cannot be made");
                None
            }
        }
    }

    /// Copies the part's process logs into its chunk directory; they are
    /// stored beside the recording with its last chunks (`logs/e<E>-p<P>/`),
    /// for the operator who wants to know why a part crashed.
    fn keep_logs(&self, dir: &std::path::Path, chunk_dir: &std::path::Path) {
        if !self.config.keep_logs {
            return;
        }
        let target = chunk_dir.join(super::upload::LOGS_DIR);
        if std::fs::create_dir_all(&target).is_err() {
            return;
        }
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                let path = e.path();
                if path.extension().is_some_and(|x| x == "log") {
                    let _ = std::fs::copy(&path, target.join(e.file_name()));
                }
            }
        }
    }
}

/// A part that crashed after the kernel killed one of its processes for
/// memory says so: the page reached the slot's memory limit.
fn out_of_memory(reason: &mut SegmentEndReason, group: &SlotCgroup, limit: Option<u64>) {
    let kills = group.oom_kills();
    if kills == 0 {
        return;
    }
    let why = format!(
        "out of memory: the slot's processes reached its limit of {} MiB ({kills} killed by the kernel)",
        limit.map_or(0, |b| b >> 20)
    );
    match reason {
        SegmentEndReason::ChildExited { status, .. } => *status = format!("{status}; {why}"),
        SegmentEndReason::Unhealthy { what, .. } => *what = format!("{what}; {why}"),
        SegmentEndReason::Stalled { what } => *what = format!("{what}; {why}"),
        _ => {}
    }
}
