//! Workers: hello and reconciliation, their reports, and losing them.

use recfleet_protocol::manifest::{ManifestSegment, SegmentEndReason};
use recfleet_protocol::{
    ConsoleResponse, CoordinatorMessage, DrainMode, ErrorCode, EventKind, RecordingState,
    WireError, WorkerHello, WorkerInfo, WorkerMessage, WorkerName, WorkerState,
};

use super::copies::CopyGone;
use super::moves::Holder;
use super::{admission, Effect, Fleet, WorkerEntry};
use crate::coordinator::metrics::label;

/// A worker that said hello without a recording the store places on it
/// has this long to report its end before it is placed again.
const VANISHED_AFTER_MS: u64 = 1500;
/// Worker info events at most this often unless its state changes.
const WORKER_EVENT_EVERY_MS: u64 = 5000;

/// An upload lag past this is news (a notice event, and again when it
/// catches up).
const LAG_NOTICE_MS: u64 = 10_000;

/// A recording's manifest is rewritten at most this often while it records.
const MANIFEST_EVERY_MS: u64 = 10_000;

impl Fleet {
    /// A worker says hello: register it, and reconcile what it runs with what
    /// the store says, by epoch. Segments of a superseded epoch are stopped
    /// (their files stay in the manifest); recordings the store places on it
    /// but it no longer runs are interrupted and placed again.
    pub(super) fn worker_hello(
        &mut self,
        session: u64,
        address: String,
        hello: WorkerHello,
    ) -> Result<(), WireError> {
        if hello.capacity == 0 {
            return Err(WireError::new(
                ErrorCode::InvalidInput,
                "a worker must offer capacity >= 1",
            ));
        }
        let name = hello.name.clone();
        let now = self.now.wall_ms;
        let previous_state = self.workers.get(&name).map(|w| w.info.state);
        // An operator's drain survives a reconnect; a lost worker is back.
        let state = match (hello.draining, previous_state) {
            (true, _) => WorkerState::Draining,
            (false, Some(s @ (WorkerState::Draining | WorkerState::Ineligible))) => s,
            _ => WorkerState::Ready,
        };
        let info = WorkerInfo {
            name: name.clone(),
            state,
            address,
            version: hello.version.clone(),
            capacity: hello.capacity,
            used: 0,
            labels: hello.labels.clone(),
            cpu_millicores: 0,
            rss_bytes: 0,
            rtt_us: 0,
            connected_at: now,
            last_seen: now,
            recordings: Vec::new(),
            upload_buffer_bytes: 0,
            upload_buffer_full: false,
            ready: Default::default(),
            admission: Default::default(),
            host: hello.host.clone(),
        };
        if let Some(old) = self.workers.insert(
            name.clone(),
            WorkerEntry {
                info,
                session: Some(session),
                last_event_at: self.now.mono_ms,
                measured: None,
            },
        ) {
            if let Some(old) = old.session {
                tracing::warn!(worker = %name, "a new connection replaces the old one");
                self.out.push(Effect::CloseSession { session: old });
            }
        }
        self.worker_touched(&name);
        tracing::info!(worker = %name, running = hello.running.len(), capacity = hello.capacity, "worker up");

        let mut reported = std::collections::HashSet::new();
        for seg in &hello.running {
            reported.insert(seg.recording.clone());
            let holder = self.holder(&seg.recording, seg.epoch, &name);
            let state = self.recordings.get(&seg.recording).map(|r| r.row.state);
            match (holder, state) {
                (Some(Holder::Current), Some(state)) if !state.is_terminal() => {
                    // Ours and current: adopt it (after a coordinator restart, or
                    // a partition that healed before anything was placed again).
                    if let Some(r) = self.recordings.get_mut(&seg.recording) {
                        r.last_frame_at = r.last_frame_at.max(seg.last_frame_at);
                    }
                    if state == RecordingState::Interrupted {
                        self.advance(&seg.recording, &[RecordingState::Assigned]);
                    }
                    let path: &[RecordingState] = if seg.last_frame_at.is_some() {
                        &[RecordingState::Starting, RecordingState::Recording]
                    } else {
                        &[RecordingState::Starting]
                    };
                    self.advance(&seg.recording, path);
                    tracing::info!(recording = %seg.recording, epoch = %seg.epoch, worker = %name, "reconciled: still running");
                }
                (Some(Holder::Incoming | Holder::Copy), _) => {}
                (Some(Holder::Old), _) => {
                    self.send_to(
                        &name,
                        CoordinatorMessage::StopSegment {
                            recording: seg.recording.clone(),
                            epoch: seg.epoch,
                            reason: SegmentEndReason::Reassigned,
                        },
                    );
                }
                // Unknown to a restarted coordinator: its second copy.
                (None, _) if self.adopt_copy(&seg.recording, seg, &name) => {
                    tracing::info!(recording = %seg.recording, epoch = %seg.epoch, worker = %name, "reconciled: its second copy");
                }
                _ => {
                    // Superseded, finished, or unknown: fence it.
                    tracing::warn!(recording = %seg.recording, epoch = %seg.epoch, worker = %name, "fencing a superseded segment");
                    if let Some(r) = self.recordings.get_mut(&seg.recording) {
                        if !r.old_placements.contains(&(name.clone(), seg.epoch)) {
                            r.old_placements.push((name.clone(), seg.epoch));
                        }
                    }
                    self.send_to(
                        &name,
                        CoordinatorMessage::StopSegment {
                            recording: seg.recording.clone(),
                            epoch: seg.epoch,
                            reason: SegmentEndReason::Superseded,
                        },
                    );
                }
            }
        }
        // A second copy it no longer runs (it restarted) is gone: another
        // is placed. Its end, if it reports one, is kept as a fact.
        let lost_copies: Vec<_> = self
            .copies_on(&name)
            .into_iter()
            .filter(|id| !reported.contains(id))
            .collect();
        for id in lost_copies {
            self.drop_copy(
                &id,
                &format!("{name} no longer runs it"),
                CopyGone::Lost,
                false,
            );
        }
        let vanished: Vec<_> = self
            .recordings_on(&name)
            .into_iter()
            .filter(|id| !reported.contains(id))
            .collect();
        for id in vanished {
            // Placed here but not running: it ended while we were apart (its
            // report follows the hello), or the worker restarted. Wait for
            // the report briefly; `tick` places it again if none comes.
            if let Some(r) = self.recordings.get_mut(&id) {
                r.suspect_since = Some(self.now.mono_ms);
            }
            self.reindex(&id);
        }
        let info = self.worker_info(&name);
        if let Some(info) = info {
            self.emit(EventKind::WorkerUp(info));
        }
        Ok(())
    }

    pub(super) fn worker_changed(&mut self, name: &WorkerName) {
        if let Some(info) = self.worker_info(name) {
            if let Some(w) = self.workers.get_mut(name) {
                w.last_event_at = self.now.mono_ms;
            }
            self.emit(EventKind::WorkerChanged(info));
        }
    }

    fn is_current(&self, session: u64, name: &WorkerName) -> bool {
        self.workers
            .get(name)
            .is_some_and(|w| w.session == Some(session))
    }

    pub(super) fn worker_message(
        &mut self,
        session: u64,
        name: &WorkerName,
        msg: WorkerMessage,
        rtt_us: u32,
    ) {
        if !self.is_current(session, name) {
            // A stale connection's late frames: only segment reports and
            // stored chunks matter (they are facts about files, not orders).
            if !matches!(
                msg,
                WorkerMessage::SegmentEnded(_) | WorkerMessage::ChunkStored(_)
            ) {
                return;
            }
        }
        let (now, wall) = (self.now.mono_ms, self.now.wall_ms);
        if let Some(w) = self.workers.get_mut(name) {
            w.info.last_seen = wall;
            w.info.rtt_us = rtt_us;
        }
        match msg {
            WorkerMessage::Telemetry(t) => {
                self.cost.learn(&t);
                if let Some(w) = self.workers.get_mut(name) {
                    w.measured = Some(admission::Measured::from_telemetry(
                        &t,
                        w.measured.as_ref(),
                        self.cost.config(),
                    ));
                    w.info.cpu_millicores = t.cpu_millicores;
                    w.info.rss_bytes = t.rss_bytes;
                    if w.info.upload_buffer_full != t.upload_buffer_full {
                        // A state an operator must see at once, not at the
                        // next periodic worker event.
                        w.last_event_at = 0;
                    }
                    w.info.upload_buffer_bytes = t.upload_buffer_bytes;
                    w.info.upload_buffer_full = t.upload_buffer_full;
                    w.info.ready = t.ready;
                }
                for slot in t.slots {
                    let Some(id) = slot.recording else { continue };
                    match self.holder(&id, slot.epoch, name) {
                        Some(Holder::Current) => {}
                        Some(Holder::Copy) => {
                            // Shown from the first copy; its segment's last
                            // frame is kept, should its worker die.
                            if let Some(s) = self.recordings.get_mut(&id).and_then(|r| {
                                r.segments
                                    .iter_mut()
                                    .filter(|s| s.epoch == slot.epoch && s.ended_at.is_none())
                                    .max_by_key(|s| s.part)
                            }) {
                                s.last_frame_at = s.last_frame_at.max(slot.last_frame_at);
                            }
                            continue;
                        }
                        _ => continue,
                    }
                    let lag_notice = self.recordings.get(&id).and_then(|r| {
                        let was = r.upload_lag_ms >= LAG_NOTICE_MS;
                        let is = slot.upload_lag_ms >= LAG_NOTICE_MS;
                        (was != is).then(|| match is {
                            true => format!(
                                "the upload of {id} is {} s behind: its chunks wait on {name}'s disk (the store is slow or away)",
                                slot.upload_lag_ms / 1000
                            ),
                            false => format!("the upload of {id} has caught up"),
                        })
                    });
                    if let Some(message) = lag_notice {
                        tracing::warn!(recording = %id, worker = %name, lag_ms = slot.upload_lag_ms, "{message}");
                        self.emit(EventKind::Notice {
                            recording: Some(id.clone()),
                            worker: Some(name.clone()),
                            message,
                        });
                    }
                    let health_changed = self.recordings.get(&id).and_then(|r| {
                        (slot.health.state != r.health.state
                            && slot.health.state != recfleet_protocol::HealthState::Unknown)
                            .then(|| slot.health.clone())
                    });
                    if let Some(health) = health_changed {
                        tracing::info!(recording = %id, worker = %name, health = %health.state, detail = %health.detail, "media health changed");
                        self.emit(EventKind::HealthChanged {
                            recording: id.clone(),
                            worker: name.clone(),
                            health,
                        });
                    }
                    if let Some(r) = self.recordings.get_mut(&id) {
                        r.health = slot.health;
                        r.level_db = slot.level_db;
                        r.upload_lag_ms = slot.upload_lag_ms;
                        r.bytes_live = slot.bytes;
                        r.fps_milli = slot.fps_milli;
                        r.repeated_permille = slot.repeated_permille;
                        r.last_frame_at = r.last_frame_at.max(slot.last_frame_at);
                        r.row.restarts = r.row.restarts.max(slot.restarts);
                    }
                    self.changed(&id);
                }
                // Admission follows the measured load: a worker whose
                // recordings settled or ended may take what waits.
                let takes = |f: &Self| f.workers.get(name).map(|w| w.info.admission.takes);
                let before = takes(self);
                self.worker_touched(name);
                if takes(self) > before {
                    self.dirty = true;
                }
                // Worker info at a modest rate: every 5 s unless it changes state.
                if self
                    .workers
                    .get(name)
                    .is_some_and(|w| now.saturating_sub(w.last_event_at) >= WORKER_EVENT_EVERY_MS)
                {
                    self.worker_changed(name);
                }
            }
            WorkerMessage::ChunkStored(chunk) => self.chunk_stored(name, chunk),
            WorkerMessage::SegmentStarted {
                recording,
                epoch,
                part,
                file,
                at,
            } => {
                let holder = self.holder(&recording, epoch, name);
                if !matches!(
                    holder,
                    Some(Holder::Current | Holder::Incoming | Holder::Copy)
                ) {
                    return;
                }
                let seg = ManifestSegment {
                    worker: name.clone(),
                    epoch,
                    part,
                    file,
                    started_at: at,
                    ended_at: None,
                    first_frame_at: None,
                    last_frame_at: None,
                    bytes: 0,
                    sha256: String::new(),
                    end_reason: None,
                    current: true,
                    chunks: Vec::new(),
                };
                self.upsert_segment(&recording, seg);
                if holder == Some(Holder::Current) {
                    self.advance(&recording, &[RecordingState::Starting]);
                }
            }
            WorkerMessage::FirstFrame {
                recording,
                epoch,
                part,
                at,
            } => {
                let holder = self.holder(&recording, epoch, name);
                if !matches!(
                    holder,
                    Some(Holder::Current | Holder::Incoming | Holder::Copy)
                ) {
                    return;
                }
                if let Some(r) = self.recordings.get_mut(&recording) {
                    if r.row.started_at.is_none() {
                        let secs = at.saturating_sub(r.row.created_at) as f64 / 1000.0;
                        self.metrics.start_latency.observe(secs);
                    }
                    r.row.started_at.get_or_insert(at);
                    r.last_frame_at = r.last_frame_at.max(Some(at));
                    if let Some(s) = r
                        .segments
                        .iter_mut()
                        .find(|s| s.epoch == epoch && s.part == part)
                    {
                        s.first_frame_at = Some(at);
                    }
                }
                if holder == Some(Holder::Incoming) {
                    self.complete_move(&recording);
                } else if holder == Some(Holder::Copy) {
                    self.copy_capturing(&recording);
                } else {
                    self.advance(
                        &recording,
                        &[RecordingState::Starting, RecordingState::Recording],
                    );
                    self.persist(&recording);
                }
            }
            WorkerMessage::SegmentEnded(report) => {
                let id = report.recording.clone();
                let Some(r) = self.recordings.get(&id) else {
                    return;
                };
                // A report of a superseded epoch is kept, marked not current.
                let current_first = r
                    .segments
                    .iter()
                    .filter(|s| s.epoch == r.row.epoch)
                    .filter_map(|s| s.first_frame_at)
                    .min();
                // A fenced segment is kept; it is "not current" only when it
                // holds nothing the current placement did not capture too.
                let redundant = report.reason == SegmentEndReason::Superseded
                    && match (report.first_frame_at, current_first) {
                        (Some(mine), Some(theirs)) => mine >= theirs,
                        (None, _) => true,
                        (Some(_), None) => false,
                    };
                let current = !redundant;
                let seg = ManifestSegment {
                    worker: name.clone(),
                    epoch: report.epoch,
                    part: report.part,
                    file: report.file,
                    started_at: report.started_at,
                    ended_at: Some(report.ended_at),
                    first_frame_at: report.first_frame_at,
                    last_frame_at: report.last_frame_at,
                    bytes: report.bytes,
                    sha256: report.sha256,
                    end_reason: Some(report.reason.clone()),
                    current,
                    chunks: Vec::new(),
                };
                self.metrics.bytes_written.inc_by(report.bytes);
                if let SegmentEndReason::ChildExited { process, .. } = &report.reason {
                    self.metrics
                        .segment_restarts
                        .get_or_create(&label("reason", process))
                        .inc();
                } else if let SegmentEndReason::Stalled { .. } = &report.reason {
                    self.metrics
                        .segment_restarts
                        .get_or_create(&label("reason", "stalled"))
                        .inc();
                }
                if report.reason.is_crash() {
                    if let Some(r) = self.recordings.get_mut(&id) {
                        r.row.restarts += 1;
                    }
                }
                self.upsert_segment(&id, seg);
                self.changed(&id);
                // A late report (an old placement after a move) completes the
                // manifest of a recording that has already ended.
                if self
                    .recordings
                    .get(&id)
                    .is_some_and(|r| r.row.state.is_terminal())
                {
                    self.write_manifest(&id);
                }
            }
            WorkerMessage::PlacementEnded {
                recording,
                epoch,
                reason,
            } => {
                match self.holder(&recording, epoch, name) {
                    Some(Holder::Current) => self.placement_ended(&recording, name, reason),
                    Some(Holder::Incoming) => self.cancel_move(&recording, &reason.describe()),
                    Some(Holder::Copy) => {
                        let failed = !ends_the_recording(&reason);
                        self.drop_copy(&recording, &reason.describe(), CopyGone::Ended, failed);
                    }
                    Some(Holder::Old) => {
                        // Its slot is torn down and reaped: drains count on this.
                        if let Some(r) = self.recordings.get_mut(&recording) {
                            r.old_placements
                                .retain(|(w, e)| !(w == name && *e == epoch));
                        }
                    }
                    None => {}
                }
                if let Some(r) = self.recordings.get_mut(&recording) {
                    r.suspect_since = None;
                }
                self.reindex(&recording);
                self.worker_changed(name);
            }
            WorkerMessage::Pong { id, payload } => {
                if let Some(p) = self.pings.remove(&id) {
                    self.out.push(Effect::Reply {
                        to: p.reply,
                        response: ConsoleResponse::Pong { payload },
                    });
                }
            }
            WorkerMessage::Draining { grace_secs } => {
                tracing::info!(worker = %name, grace_secs, "worker drains itself (SIGTERM): migrating its recordings");
                self.begin_drain(name, DrainMode::Migrate, Some(grace_secs), false, true);
            }
        }
    }

    /// A chunk is in the store: remembered durably, counted in its
    /// segment, and the manifest rewritten now and then (every
    /// [`MANIFEST_EVERY_MS`] while recording, not at every chunk).
    fn chunk_stored(&mut self, name: &WorkerName, chunk: recfleet_protocol::ChunkReport) {
        let id = chunk.recording.clone();
        let Some(r) = self.recordings.get_mut(&id) else {
            tracing::debug!(recording = %id, worker = %name, "chunk of an unknown recording");
            return;
        };
        if let Some(seg) = r
            .segments
            .iter_mut()
            .find(|s| s.epoch == chunk.epoch && s.part == chunk.part)
        {
            if seg.ended_at.is_none() {
                seg.bytes += chunk.chunk.bytes;
            }
        }
        let due = self.now.mono_ms.saturating_sub(r.manifest_written) >= MANIFEST_EVERY_MS;
        let live = !r.row.state.is_terminal();
        self.out.push(Effect::PutChunk(id.clone(), chunk));
        if due && live {
            self.write_manifest(&id);
        }
    }

    fn upsert_segment(&mut self, id: &recfleet_protocol::RecordingId, seg: ManifestSegment) {
        let Some(r) = self.recordings.get_mut(id) else {
            return;
        };
        match r
            .segments
            .iter_mut()
            .find(|s| s.epoch == seg.epoch && s.part == seg.part && s.worker == seg.worker)
        {
            Some(existing) => {
                // Keep a first frame seen live if the report lacks one.
                let first = existing.first_frame_at;
                *existing = seg.clone();
                existing.first_frame_at = existing.first_frame_at.or(first);
            }
            None => r.segments.push(seg.clone()),
        }
        let stored = r
            .segments
            .iter()
            .find(|s| s.epoch == seg.epoch && s.part == seg.part && s.worker == seg.worker)
            .cloned();
        if let Some(s) = stored {
            self.out.push(Effect::PutSegment(id.clone(), s));
        }
    }

    fn placement_ended(
        &mut self,
        id: &recfleet_protocol::RecordingId,
        worker: &WorkerName,
        reason: SegmentEndReason,
    ) {
        match &reason {
            r if ends_the_recording(r) => self.finalize(id, reason.describe()),
            // A failure of the first copy: the second takes over, and the
            // recording neither waits nor counts a failed placement.
            _ if self.promote_copy(id, &reason) => {}
            SegmentEndReason::GaveUp { .. } | SegmentEndReason::StartFailed { .. } => {
                let failed = self.recordings.get_mut(id).map(|r| {
                    r.row.failed_placements += 1;
                    r.row.failed_placements
                });
                if failed.unwrap_or(0) >= self.settings.max_failed_placements {
                    self.fail(
                        id,
                        format!(
                            "{} (after {} placements)",
                            reason.describe(),
                            failed.unwrap_or(0)
                        ),
                    );
                } else {
                    self.interrupt(id, reason, Some(worker.clone()));
                }
            }
            _ => self.interrupt(id, reason, None),
        }
    }

    /// A worker's control stream ended. If it is the current session, the
    /// worker is lost and its recordings are placed again at once.
    pub(super) fn worker_closed(&mut self, session: u64, name: &WorkerName, why: &str) {
        if !self.is_current(session, name) {
            return;
        }
        self.lose_worker(name, why);
        self.schedule();
    }

    fn lose_worker(&mut self, name: &WorkerName, why: &str) {
        let expected = self.drains.get(name).is_some_and(|d| d.by_worker);
        for id in self.copies_on(name) {
            self.drop_copy(&id, &format!("{name} was lost"), CopyGone::Lost, false);
        }
        let orphans = self.recordings_on(name);
        let Some(w) = self.workers.get_mut(name) else {
            return;
        };
        if let Some(session) = w.session.take() {
            self.out.push(Effect::CloseSession { session });
        }
        let Some(w) = self.workers.get_mut(name) else {
            return;
        };
        // What a lost worker last said of its load is no longer true.
        w.info.cpu_millicores = 0;
        w.info.rss_bytes = 0;
        w.info.rtt_us = 0;
        w.info.state = if expected {
            WorkerState::Gone
        } else {
            WorkerState::Lost
        };
        if expected {
            tracing::info!(worker = %name, recordings = orphans.len(), "worker left after draining itself");
        } else {
            tracing::warn!(worker = %name, why, recordings = orphans.len(), "worker lost");
        }
        for id in &orphans {
            let (stopping, moving) = self
                .recordings
                .get(id)
                .map(|r| (r.row.state == RecordingState::Stopping, r.moving.is_some()))
                .unwrap_or_default();
            if stopping {
                self.finalize(id, "stopped (its worker was lost while stopping)".into());
            } else if moving {
                // The move's target carries on; it becomes current.
                self.interrupt(id, SegmentEndReason::WorkerLost, None);
                self.promote_move(id);
            } else {
                self.interrupt(id, SegmentEndReason::WorkerLost, Some(name.clone()));
                if !expected {
                    self.metrics.failovers.inc();
                }
            }
        }
        // Moves towards the lost worker fail; old placements on it are gone.
        let incoming: Vec<_> = self
            .recordings
            .values()
            .filter(|r| r.moving.as_ref().is_some_and(|m| &m.to == name))
            .map(|r| r.row.spec.id.clone())
            .collect();
        for id in incoming {
            self.cancel_move(&id, &format!("{name} was lost"));
        }
        for r in self.recordings.values_mut() {
            r.old_placements.retain(|(w, _)| w != name);
        }
        self.drains.remove(name);
        self.worker_touched(name);
        if expected {
            self.emit(EventKind::WorkerLeft { name: name.clone() });
        } else {
            self.emit(EventKind::WorkerLost { name: name.clone() });
        }
    }

    /// Recordings a worker no longer reported in its hello, and that no late
    /// report ended meanwhile, are interrupted and placed again.
    pub(super) fn interrupt_vanished(&mut self) {
        let now = self.now.mono_ms;
        let suspects: Vec<_> = self.suspects.iter().cloned().collect();
        for id in suspects {
            let Some(r) = self.recordings.get_mut(&id) else {
                continue;
            };
            let Some(since) = r.suspect_since else {
                continue;
            };
            if !r.row.state.holds_capacity() {
                r.suspect_since = None;
                self.reindex(&id);
                continue;
            }
            if now.saturating_sub(since) > VANISHED_AFTER_MS {
                r.suspect_since = None;
                self.reindex(&id);
                self.interrupt(&id, SegmentEndReason::WorkerShutdown, None);
            }
        }
    }
}

/// Whether a placement's end is the recording's (stopped, its page ended or
/// emptied, its time is up), not a failure of the placement.
fn ends_the_recording(reason: &SegmentEndReason) -> bool {
    matches!(
        reason,
        SegmentEndReason::Stopped
            | SegmentEndReason::MaxDuration
            | SegmentEndReason::PageEnded
            | SegmentEndReason::EmptyRoom
    )
}
