//! Moving recordings between workers, make-before-break: the target starts
//! a new placement (a higher epoch) and only when it has captured its first
//! frame is the old placement stopped. Drains are built on moves.

use recfleet_protocol::manifest::SegmentEndReason;
use recfleet_protocol::{
    CoordinatorMessage, DrainMode, Epoch, EventKind, RecordingId, RecordingState, WorkerName,
    WorkerState,
};

use super::{Fleet, Recording};

/// A move in progress.
#[derive(Debug, Clone)]
pub(super) struct Move {
    /// The worker starting the new placement.
    pub to: WorkerName,
    /// Its epoch.
    pub epoch: Epoch,
    /// When it was asked to start (monotonic).
    pub since: u64,
}

/// A drain in progress.
#[derive(Debug, Clone)]
pub(super) struct Drain {
    pub mode: DrainMode,
    /// After this (monotonic), what remains is migrated whatever the mode.
    pub deadline_at: u64,
    /// The worker asked for it itself (SIGTERM): its exit is expected.
    pub by_worker: bool,
    /// What was last announced, to announce only changes.
    pub last_message: String,
}

/// How a placement relates to a recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Holder {
    /// The current placement.
    Current,
    /// A move target that has not captured yet.
    Incoming,
    /// An old placement still stopping after a move or a fence.
    Old,
    /// The second copy of a recording with redundancy 2.
    Copy,
}

/// Migrations one drain runs at once.
const MAX_PARALLEL_MOVES: usize = 2;
/// A move target that has not captured within this is given up.
const MOVE_TIMEOUT_MS: u64 = 60_000;
/// How long the old placement of a move records after the new one has
/// captured its first frame.
const HANDOVER_OVERLAP_MS: u64 = 2_000;
/// A drain's deadline when none is given: long enough for a class.
pub(super) const DEFAULT_DRAIN_DEADLINE_SECS: u32 = 4 * 3600;

impl Recording {
    /// When its max duration ends: it counts from the recording's first
    /// frame, across placements (the first placement sets it at its first
    /// frame, so it has none).
    pub(super) fn deadline(&self) -> Option<u64> {
        match (self.row.started_at, self.row.spec.stop.max_duration_secs) {
            (Some(start), Some(max)) => Some(start + u64::from(max) * 1000),
            _ => None,
        }
    }

    /// The next epoch never issued for this recording (moves that failed
    /// and fenced placements count too).
    pub(super) fn next_epoch(&self) -> Epoch {
        let seen = self
            .segments
            .iter()
            .map(|s| s.epoch)
            .max()
            .unwrap_or_default();
        let moving = self.moving.as_ref().map(|m| m.epoch).unwrap_or_default();
        let copy = self.copy.as_ref().map(|c| c.epoch).unwrap_or_default();
        self.row.epoch.max(seen).max(moving).max(copy).next()
    }
}

impl Fleet {
    /// Who `worker` is for `recording` at `epoch`, if anyone.
    pub(super) fn holder(
        &self,
        recording: &RecordingId,
        epoch: Epoch,
        worker: &WorkerName,
    ) -> Option<Holder> {
        let r = self.recordings.get(recording)?;
        if r.row.epoch == epoch && r.row.worker.as_ref() == Some(worker) {
            return Some(Holder::Current);
        }
        if r.moving
            .as_ref()
            .is_some_and(|m| m.epoch == epoch && &m.to == worker)
        {
            return Some(Holder::Incoming);
        }
        if r.copy
            .as_ref()
            .is_some_and(|c| c.epoch == epoch && &c.worker == worker)
        {
            return Some(Holder::Copy);
        }
        if r.old_placements
            .iter()
            .any(|(w, e)| w == worker && *e == epoch)
        {
            return Some(Holder::Old);
        }
        None
    }

    /// Starts moving `id` to `to`. The caller checked capacity.
    pub(super) fn start_move(&mut self, id: &RecordingId, to: &WorkerName) {
        let Some(r) = self.recordings.get_mut(id) else {
            return;
        };
        let epoch = r.next_epoch();
        r.moving = Some(Move {
            to: to.clone(),
            epoch,
            since: self.now.mono_ms,
        });
        let spec = r.row.spec.clone();
        let deadline = r.deadline();
        let from = r.row.worker.clone();
        tracing::info!(recording = %id, from = ?from, %to, %epoch, "moving (make-before-break)");
        self.reindex(id);
        self.send_to(
            to,
            CoordinatorMessage::StartSegment {
                epoch,
                spec,
                deadline,
            },
        );
        self.changed(id);
        self.worker_changed(to);
    }

    /// The move target captured its first frame: it becomes current and the
    /// old placement is stopped.
    pub(super) fn complete_move(&mut self, id: &RecordingId) {
        let Some(r) = self.recordings.get_mut(id) else {
            return;
        };
        let Some(m) = r.moving.take() else {
            return;
        };
        let old = r.row.worker.clone().map(|w| (w, r.row.epoch));
        self.metrics.reassigns.inc();
        r.row.epoch = m.epoch;
        r.row.worker = Some(m.to.clone());
        r.avoid = None;
        if let Some(old) = &old {
            r.old_placements.push(old.clone());
        }
        self.persist(id);
        self.reindex(id);
        if let Some((w, e)) = &old {
            // Frame times are known to within the encoders' delay (about a
            // second), so the old placement records on a little longer: the
            // overlap is then certain, and no gap can appear by measurement.
            self.pending_stops.push((
                id.clone(),
                w.clone(),
                *e,
                self.now.mono_ms + HANDOVER_OVERLAP_MS,
            ));
            let message = format!(
                "{id} moved from {w} to {} without a gap; {w} stops its segment in {} s",
                m.to,
                HANDOVER_OVERLAP_MS / 1000
            );
            tracing::info!(recording = %id, from = %w, to = %m.to, "move complete");
            self.emit(EventKind::Notice {
                recording: Some(id.clone()),
                worker: Some(m.to.clone()),
                message,
            });
            self.worker_changed(w);
        }
        self.changed(id);
        self.worker_changed(&m.to);
    }

    /// The move failed: the old placement keeps recording.
    pub(super) fn cancel_move(&mut self, id: &RecordingId, why: &str) {
        let Some(r) = self.recordings.get_mut(id) else {
            return;
        };
        let Some(m) = r.moving.take() else { return };
        r.avoid = Some(m.to.clone());
        let on = r.row.worker.clone();
        self.reindex(id);
        self.send_to(
            &m.to,
            CoordinatorMessage::StopSegment {
                recording: id.clone(),
                epoch: m.epoch,
                reason: SegmentEndReason::Stopped,
            },
        );
        let message = format!(
            "moving {id} to {} failed: {why}; it keeps recording on {}",
            m.to,
            on.as_ref().map(|w| w.as_str()).unwrap_or("its worker")
        );
        tracing::warn!(recording = %id, to = %m.to, why, "move failed");
        self.emit(EventKind::Notice {
            recording: Some(id.clone()),
            worker: Some(m.to.clone()),
            message,
        });
        self.changed(id);
        self.worker_changed(&m.to);
    }

    /// The worker of a move's source vanished before the target captured:
    /// the target's placement simply becomes current (it is starting).
    pub(super) fn promote_move(&mut self, id: &RecordingId) {
        let Some(r) = self.recordings.get_mut(id) else {
            return;
        };
        let Some(m) = r.moving.take() else { return };
        r.row.epoch = m.epoch;
        r.row.worker = Some(m.to.clone());
        self.persist(id);
        self.reindex(id);
        self.advance(
            id,
            &[
                RecordingState::Interrupted,
                RecordingState::Assigned,
                RecordingState::Starting,
            ],
        );
    }

    /// Free capacity check and target choice for a move away from `from`.
    pub(super) fn move_target(
        &self,
        id: &RecordingId,
        from: Option<&WorkerName>,
        to: Option<&WorkerName>,
    ) -> Result<WorkerName, String> {
        let r = self
            .recordings
            .get(id)
            .ok_or_else(|| format!("no recording \"{id}\""))?;
        let cost = r.row.spec.cost;
        if let Some(t) = to {
            let w = self
                .workers
                .get(t)
                .ok_or_else(|| format!("no worker \"{t}\""))?;
            if !self.is_ready(t) {
                return Err(format!(
                    "{t} is {} and takes no recordings",
                    w.info.state.as_str()
                ));
            }
            if Some(t) == from {
                return Err(format!("{id} already runs on {t}"));
            }
            let used = self.used_on(t);
            if w.info.capacity.saturating_sub(used) < cost {
                return Err(format!(
                    "{t} has no free capacity ({used} of {} units used; {id} needs {cost})",
                    w.info.capacity
                ));
            }
            return Ok(t.clone());
        }
        self.pick_worker(id, None, from)
            .map_err(|e| format!("no other worker can take it: {}", e.describe()))
    }

    /// Stops at once the old placements of `id` still recording after a move.
    pub(super) fn stop_old_placements_now(&mut self, id: &RecordingId) {
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending_stops)
            .into_iter()
            .partition(|(r, ..)| r == id);
        self.pending_stops = later;
        for (id, worker, epoch, _) in due {
            self.send_to(
                &worker,
                CoordinatorMessage::StopSegment {
                    recording: id,
                    epoch,
                    reason: SegmentEndReason::Reassigned,
                },
            );
        }
    }

    /// Periodic work of moves and drains: time out stuck moves, start
    /// migrations, announce progress and completion.
    pub(super) fn tick_moves(&mut self) {
        let now = self.now.mono_ms;
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending_stops)
            .into_iter()
            .partition(|(_, _, _, at)| *at <= now);
        self.pending_stops = later;
        for (id, worker, epoch, _) in due {
            self.send_to(
                &worker,
                CoordinatorMessage::StopSegment {
                    recording: id,
                    epoch,
                    reason: SegmentEndReason::Reassigned,
                },
            );
        }
        let stuck: Vec<RecordingId> = self
            .moving
            .iter()
            .filter(|id| {
                self.recordings
                    .get(*id)
                    .and_then(|r| r.moving.as_ref())
                    .is_some_and(|m| now.saturating_sub(m.since) > MOVE_TIMEOUT_MS)
            })
            .cloned()
            .collect();
        for id in stuck {
            self.cancel_move(&id, "the target did not capture within 60 s");
        }
        let draining: Vec<WorkerName> = self.drains.keys().cloned().collect();
        for w in draining {
            self.tick_drain(&w, now);
        }
    }

    fn tick_drain(&mut self, worker: &WorkerName, now: u64) {
        let Some(d) = self.drains.get(worker).cloned() else {
            return;
        };
        let on_it: Vec<RecordingId> = self.recordings_on(worker);
        let migrate = d.mode == DrainMode::Migrate || now >= d.deadline_at;
        // Second copies on it give way (they are placed again elsewhere);
        // in a drain that waits they record on to their recording's end.
        let copies = self.copies_on(worker);
        if migrate {
            self.stop_copies(&copies, &format!("{worker} drains"));
        }
        let copies_left = if migrate { 0 } else { copies.len() };
        let stopping = copies_left
            + self
                .recordings
                .values()
                .filter(|r| r.old_placements.iter().any(|(w, _)| w == worker))
                .count();
        let mut waiting_for_capacity = false;
        if migrate {
            let moving = on_it.iter().filter(|id| self.moving.contains(*id)).count();
            let mut slots = MAX_PARALLEL_MOVES.saturating_sub(moving);
            for id in &on_it {
                if slots == 0 {
                    break;
                }
                let Some(r) = self.recordings.get(id) else {
                    continue;
                };
                if r.moving.is_some() || r.row.state != RecordingState::Recording {
                    continue;
                }
                if r.copy.is_some() {
                    // Its second copy takes over once it captures.
                    if self.swap_copy(id) {
                        slots -= 1;
                    }
                    continue;
                }
                match self.move_target(id, Some(worker), None) {
                    Ok(to) => {
                        self.start_move(id, &to);
                        slots -= 1;
                    }
                    Err(_) => waiting_for_capacity = true,
                }
            }
        }
        let complete = on_it.is_empty() && stopping == 0;
        let message = if complete {
            format!("{worker} is drained: no recording runs on it and every slot process is reaped")
        } else if waiting_for_capacity {
            format!(
                "{worker} drains: {} recording(s) wait for capacity on another worker",
                on_it.len()
            )
        } else if stopping > 0 && on_it.is_empty() {
            format!("{worker} drains: {stopping} old placement(s) or second copies still on it")
        } else if migrate {
            format!("{worker} drains: migrating {} recording(s)", on_it.len())
        } else {
            format!(
                "{worker} drains: {} recording(s) run to their end",
                on_it.len()
            )
        };
        if message != d.last_message {
            if let Some(d) = self.drains.get_mut(worker) {
                d.last_message = message.clone();
            }
            tracing::info!(worker = %worker, %message, "drain");
            self.emit(EventKind::DrainProgress {
                worker: worker.clone(),
                remaining: on_it,
                message,
                complete,
            });
        }
    }

    /// Starts (or changes) a drain.
    pub(super) fn begin_drain(
        &mut self,
        worker: &WorkerName,
        mode: DrainMode,
        deadline_secs: Option<u32>,
        force: bool,
        by_worker: bool,
    ) {
        if !self.drains.contains_key(worker) {
            self.metrics.drains.inc();
        }
        let secs = if force {
            0
        } else {
            deadline_secs.unwrap_or(DEFAULT_DRAIN_DEADLINE_SECS)
        };
        let mode = if force { DrainMode::Migrate } else { mode };
        self.drains.insert(
            worker.clone(),
            Drain {
                mode,
                deadline_at: self.now.mono_ms + u64::from(secs) * 1000,
                by_worker,
                last_message: String::new(),
            },
        );
        if let Some(w) = self.workers.get_mut(worker) {
            w.info.state = WorkerState::Draining;
        }
        self.worker_touched(worker);
        self.send_to(worker, CoordinatorMessage::DrainState { draining: true });
        self.worker_changed(worker);
        self.tick_drain(worker, self.now.mono_ms);
    }
}
