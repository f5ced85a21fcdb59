//! The recording engine of a worker: starts, stops and supervises slots, one
//! per placement, and reports what happens as worker protocol messages. It
//! runs alone (`recfleet-agent record`) or under the coordinator link.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use recfleet_protocol::egress::UrlPolicy;
use recfleet_protocol::manifest::SegmentEndReason;
use recfleet_protocol::spec::RecordingSpec;
use recfleet_protocol::{Epoch, RecordingId, RunningSegment, SlotProgress, WorkerMessage};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::cgroup::Hierarchy;
use super::config::{EngineConfig, GuardProgram};
use super::guard;
use super::pool::{PoolView, WarmPool, BEHIND_MS};
use super::process;
use super::ready::Shape;
use super::slot::Slot;
use super::upload::Uploader;

/// Why the engine refused a start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// The spec is invalid.
    #[error("invalid recording spec: {0}")]
    InvalidSpec(String),
    /// A newer placement of the recording already runs here.
    #[error("recording {id} already runs here with epoch {running}, newer than {asked}")]
    Stale {
        /// The recording.
        id: RecordingId,
        /// The epoch running.
        running: Epoch,
        /// The epoch asked for.
        asked: Epoch,
    },
    /// The engine is shutting down.
    #[error("the worker is shutting down")]
    ShuttingDown,
}

struct SlotEntry {
    epoch: Epoch,
    started_at: u64,
    /// Runtime directory (`p<N>/` per part: logs, thumbnail, analysis).
    dir: std::path::PathBuf,
    /// Tag prefix of its current part's processes.
    tag: Arc<Mutex<String>>,
    stop: watch::Sender<Option<SegmentEndReason>>,
    progress: Arc<Mutex<SlotProgress>>,
    task: JoinHandle<()>,
}

/// A running slot, as queries see it.
#[derive(Debug, Clone)]
pub struct SlotView {
    /// Runtime directory: `p<N>/` per part.
    pub dir: std::path::PathBuf,
    /// Tag prefix of its processes.
    pub tag: String,
    /// The placement.
    pub epoch: Epoch,
    /// Its progress (current part, health, level).
    pub progress: SlotProgress,
}

/// The engine. Cheap to share behind an `Arc`.
pub struct Engine {
    config: Arc<EngineConfig>,
    instance: String,
    slots: Arc<Mutex<HashMap<RecordingId, SlotEntry>>>,
    events: mpsc::UnboundedSender<WorkerMessage>,
    counter: AtomicU64,
    uploader: Uploader,
    shutting_down: std::sync::atomic::AtomicBool,
    // The coordinator's URL policy, from its welcome; each new placement
    // and each ready slot takes the one of its moment.
    egress: Arc<Mutex<Arc<UrlPolicy>>>,
    // Ready slots a start takes when one fits.
    pool: Arc<WarmPool>,
    // Where each part's control group is made (None: limits off).
    cgroups: Option<Arc<Hierarchy>>,
    // Held for the life of the engine: when the process dies, the guard
    // reads EOF and kills whatever is left of the slots. A guard that dies
    // is started again (see `guard::watch`).
    guard: Option<Arc<Mutex<guard::Guard>>>,
    // Whom the guard tells when this process dies (also given to a guard
    // started again).
    notice: Arc<Mutex<Option<guard::Notice>>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("instance", &self.instance)
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Engine {
    /// Starts an engine. Its events (segment started/ended, first frame,
    /// placement ended) arrive on the returned receiver.
    pub fn start(
        mut config: EngineConfig,
    ) -> std::io::Result<(Arc<Engine>, mpsc::UnboundedReceiver<WorkerMessage>)> {
        config.bins = config.bins.resolved();
        // reqwest (WebDriver, object stores) needs the process's rustls
        // provider; installing it twice is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let instance = format!("{}-{}", std::process::id(), recfleet_protocol::now_ms());
        std::fs::create_dir_all(&config.runtime_root)?;
        std::fs::create_dir_all(&config.out_root)?;
        process::become_subreaper();
        let notice = Arc::new(Mutex::new(None));
        process::spawn_orphan_reaper();
        let guard = match &config.guard_program {
            GuardProgram::CurrentExe => Some(std::env::current_exe()?),
            GuardProgram::Path(p) => Some(p.clone()),
            GuardProgram::None => None,
        }
        .map(|exe| -> std::io::Result<_> {
            let g = Arc::new(Mutex::new(guard::Guard::start(&exe, &instance, None)?));
            guard::watch(g.clone(), exe, instance.clone(), notice.clone());
            Ok(g)
        })
        .transpose()?;
        let uploader = Uploader::new(config.upload.clone());
        let (events, rx) = mpsc::unbounded_channel();
        let left = uploader.resume_leftovers(&config.out_root, events.clone());
        if left > 0 {
            tracing::info!(parts = left, "uploading chunks a previous run left on disk");
        }
        let egress = Arc::new(Mutex::new(Arc::new(config.egress.clone())));
        let cgroups = if config.slot_limits.any() {
            match Hierarchy::detect(&instance, &config.slot_limits) {
                Ok(h) => {
                    tracing::info!(limits = ?config.slot_limits, hierarchy = ?h, "per-slot limits on");
                    Some(Arc::new(h))
                }
                Err(why) => {
                    tracing::warn!(%why, "per-slot limits are off: slots share the machine unlimited");
                    None
                }
            }
        } else {
            None
        };
        let config = Arc::new(config);
        let slots: Arc<Mutex<HashMap<RecordingId, SlotEntry>>> = Default::default();
        let watched = slots.clone();
        let behind = Box::new(move || {
            let now = recfleet_protocol::now_ms();
            lock(&watched).values().any(|e| {
                lock(&e.progress)
                    .last_frame_at
                    .is_some_and(|t| now.saturating_sub(t) > BEHIND_MS)
            })
        });
        let pool = WarmPool::start(
            config.ready_slots,
            Shape::default(),
            config.clone(),
            instance.clone(),
            cgroups.clone(),
            egress.clone(),
            behind,
        );
        let engine = Arc::new(Engine {
            uploader,
            pool,
            config,
            instance,
            slots,
            events,
            counter: AtomicU64::new(0),
            shutting_down: Default::default(),
            egress,
            cgroups,
            guard,
            notice,
        });
        Ok((engine, rx))
    }

    /// Takes the coordinator's URL policy for the placements that start
    /// from now on.
    pub fn set_egress(&self, policy: UrlPolicy) {
        self.pool.policy_known();
        let changed = {
            let mut current = lock(&self.egress);
            let changed = **current != policy;
            if changed {
                *current = Arc::new(policy);
            }
            changed
        };
        if changed {
            // Ready slots started under the old policy are started again
            // (the policy's lock is let go first: the pool takes its own
            // state's lock, then the policy's).
            self.pool.renew();
        }
    }

    /// Tells the guard whom to report this process's death to (after each
    /// welcome: the coordinator and session of the moment).
    pub fn guard_notice(&self, notice: guard::Notice) {
        if let Some(g) = &self.guard {
            if let Err(e) = lock(g).tell(&notice) {
                tracing::warn!(error = %e, "the guard cannot be told whom to report a death to");
            }
        }
        *lock(&self.notice) = Some(notice);
    }

    /// A draining worker keeps no ready slot (it takes no new recording);
    /// one that may take work again refills its pool.
    pub fn set_draining(&self, draining: bool) {
        self.pool.pause(draining);
    }

    /// The warm pool as it is now.
    pub fn pool(&self) -> PoolView {
        self.pool.view()
    }

    /// Bytes of chunks waiting for upload on this worker, and whether that
    /// is over the limit.
    pub fn upload_buffer(&self) -> (u64, bool) {
        self.uploader.buffer()
    }

    /// The settings.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// The prefix of the environment tag of every process this engine
    /// starts (see `process::TAG_VAR`).
    pub fn instance_tag(&self) -> &str {
        &self.instance
    }

    /// Starts a placement. Starting the epoch that already runs is a no-op;
    /// a newer epoch replaces an older one (which ends as superseded).
    pub fn start_recording(
        &self,
        spec: RecordingSpec,
        epoch: Epoch,
        deadline: Option<u64>,
    ) -> Result<(), EngineError> {
        if self.shutting_down.load(Ordering::SeqCst) {
            return Err(EngineError::ShuttingDown);
        }
        spec.validate().map_err(|problems| {
            EngineError::InvalidSpec(
                problems
                    .iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })?;
        let mut slots = lock(&self.slots);
        if let Some(existing) = slots.get(&spec.id) {
            if existing.epoch == epoch {
                return Ok(());
            }
            if existing.epoch > epoch {
                return Err(EngineError::Stale {
                    id: spec.id.clone(),
                    running: existing.epoch,
                    asked: epoch,
                });
            }
            let _ = existing.stop.send(Some(SegmentEndReason::Superseded));
        }
        let n = self.counter.fetch_add(1, Ordering::SeqCst);
        let id = spec.id.clone();
        let tag = format!("{}/s{n}", self.instance);
        let tag_now = Arc::new(Mutex::new(tag.clone()));
        let progress = Arc::new(Mutex::new(SlotProgress {
            recording: Some(id.clone()),
            epoch,
            ..Default::default()
        }));
        let (stop_tx, stop_rx) = watch::channel(None);
        let dir = self.config.runtime_root.join(format!("s{n}"));
        let slot = Slot {
            config: self.config.clone(),
            spec: Arc::new(spec),
            epoch,
            tag: tag.clone(),
            dir: dir.clone(),
            deadline,
            progress: progress.clone(),
            events: self.events.clone(),
            uploader: self.uploader.clone(),
            egress: lock(&self.egress).clone(),
            cgroups: self.cgroups.clone(),
            pool: self.pool.clone(),
            tag_now: tag_now.clone(),
        };
        tracing::info!(recording = %id, %epoch, "starting recording");
        let events = self.events.clone();
        let slots_ref = self.slots.clone();
        let rid = id.clone();
        let span = tracing::info_span!("slot", worker = %self.config.worker_name, recording = %id, epoch = %epoch);
        let task = tokio::spawn(
            async move {
            let reason = slot.run(stop_rx).await;
            tracing::info!(recording = %rid, %epoch, reason = %reason.describe(), "placement ended");
            {
                let mut slots = lock(&slots_ref);
                if slots.get(&rid).is_some_and(|e| e.epoch == epoch) {
                    slots.remove(&rid);
                }
            }
            let _ = events.send(WorkerMessage::PlacementEnded { recording: rid, epoch, reason });
            }
            .instrument(span),
        );
        // A replaced older placement keeps running until its own task ends;
        // its entry is simply overwritten here.
        slots.insert(
            id,
            SlotEntry {
                epoch,
                started_at: recfleet_protocol::now_ms(),
                dir,
                tag: tag_now,
                stop: stop_tx,
                progress,
                task,
            },
        );
        Ok(())
    }

    /// Stops a placement if this worker holds `epoch` or an older one.
    /// Returns whether something was stopped.
    pub fn stop_recording(&self, id: &RecordingId, epoch: Epoch, reason: SegmentEndReason) -> bool {
        let slots = lock(&self.slots);
        match slots.get(id) {
            Some(e) if e.epoch <= epoch => {
                let _ = e.stop.send(Some(reason));
                true
            }
            _ => false,
        }
    }

    /// Progress of every slot, for telemetry.
    pub fn progress(&self) -> Vec<SlotProgress> {
        lock(&self.slots)
            .values()
            .map(|e| lock(&e.progress).clone())
            .collect()
    }

    /// Where a running recording's slot keeps its files, its process tag
    /// and its progress (for queries: thumbnail, logs, processes).
    pub fn slot_view(&self, id: &RecordingId) -> Option<SlotView> {
        lock(&self.slots).get(id).map(|e| SlotView {
            dir: e.dir.clone(),
            tag: lock(&e.tag).clone(),
            epoch: e.epoch,
            progress: lock(&e.progress).clone(),
        })
    }

    /// Each running recording's placement and the tag its processes carry
    /// now (a ready slot's, once it took one), for its cost.
    pub fn slot_tags(&self) -> Vec<(RecordingId, Epoch, String)> {
        lock(&self.slots)
            .iter()
            .map(|(id, e)| (id.clone(), e.epoch, lock(&e.tag).clone()))
            .collect()
    }

    /// What runs now, for the hello after a reconnect.
    pub fn running(&self) -> Vec<RunningSegment> {
        lock(&self.slots)
            .iter()
            .map(|(id, e)| {
                let p = lock(&e.progress);
                RunningSegment {
                    recording: id.clone(),
                    epoch: e.epoch,
                    part: p.part,
                    started_at: e.started_at,
                    last_frame_at: p.last_frame_at,
                }
            })
            .collect()
    }

    /// Number of running placements.
    pub fn len(&self) -> usize {
        lock(&self.slots).len()
    }

    /// Whether nothing runs.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stops every slot with `reason` and waits until all are torn down (every
    /// process group reaped).
    pub async fn shutdown(&self, reason: SegmentEndReason) {
        self.shutting_down.store(true, Ordering::SeqCst);
        // Uploads the store does not take soon are left on disk for the
        // next start, rather than holding the shutdown for the retry window.
        self.uploader.shutting_down();
        self.pool.close().await;
        let tasks: Vec<JoinHandle<()>> = {
            let mut slots = lock(&self.slots);
            for e in slots.values() {
                let _ = e.stop.send(Some(reason.clone()));
            }
            slots.drain().map(|(_, e)| e.task).collect()
        };
        for t in tasks {
            let _ = t.await;
        }
        let tag = self.instance.clone();
        let _ = tokio::task::spawn_blocking(move || process::kill_tagged(&tag)).await;
        let _ = std::fs::remove_dir_all(&self.config.runtime_root);
    }
}
