//! A recording's way through the state machine: placement, interruption,
//! finalization and the manifest.

use recfleet_protocol::manifest::{Manifest, SegmentEndReason};
use recfleet_protocol::{
    now_ms, CoordinatorMessage, EventKind, RecordingId, RecordingState, WorkerName, WorkerState,
};

use super::Fleet;
use crate::coordinator::scheduler::{self, Candidate};

impl Fleet {
    /// Moves a recording to `next` if the lifecycle allows it, persists it
    /// and tells subscribers. A refused move is logged, never a panic.
    pub(super) fn set_state(
        &mut self,
        id: &RecordingId,
        next: RecordingState,
        reason: Option<String>,
    ) -> bool {
        let Some(r) = self.recordings.get_mut(id) else {
            return false;
        };
        if r.row.state == next {
            return true;
        }
        if let Err(e) = r.row.state.become_(next) {
            tracing::warn!(recording = %id, error = %e, "refused state change");
            return false;
        }
        tracing::info!(recording = %id, from = %r.row.state, to = %next, epoch = %r.row.epoch, "recording state");
        r.row.state = next;
        if reason.is_some() {
            r.row.reason = reason;
        }
        if next.is_terminal() {
            r.row.ended_at = Some(now_ms());
        }
        self.persist(id);
        self.changed(id);
        true
    }

    /// Walks a recording through intermediate states to `target`
    /// (e.g. Assigned -> Starting -> Recording).
    pub(super) fn advance(&mut self, id: &RecordingId, path: &[RecordingState]) {
        for s in path {
            let current = self.recordings.get(id).map(|r| r.row.state);
            if current.is_some_and(|c| c.can_become(*s)) {
                self.set_state(id, *s, None);
            }
        }
    }

    /// Tells subscribers about a recording's current info.
    pub(super) fn changed(&mut self, id: &RecordingId) {
        if let Some(r) = self.recordings.get(id) {
            let info = self.recording_info(r);
            self.emit(EventKind::RecordingChanged(info));
        }
    }

    /// Places every recording that waits (pending or interrupted), oldest first.
    pub(super) fn schedule(&mut self) {
        let mut waiting: Vec<(u64, RecordingId)> = self
            .recordings
            .values()
            .filter(|r| {
                matches!(
                    r.row.state,
                    RecordingState::Pending | RecordingState::Interrupted
                )
            })
            .map(|r| (r.row.created_at, r.row.spec.id.clone()))
            .collect();
        waiting.sort();
        for (_, id) in waiting {
            self.place(&id);
        }
    }

    fn place(&mut self, id: &RecordingId) {
        let Some(r) = self.recordings.get(id) else {
            return;
        };
        let (labels, cost, avoid) = (r.row.spec.labels.clone(), r.row.spec.cost, r.avoid.clone());
        let choice = self.pick_worker(&labels, cost, avoid.as_ref(), None);
        match choice {
            Err(why) => {
                let text = why.describe().to_string();
                let r = self.recordings.get_mut(id).map(|r| {
                    let changed = r.waiting.as_deref() != Some(text.as_str());
                    r.waiting = Some(text.clone());
                    changed
                });
                if r == Some(true) {
                    self.changed(id);
                }
            }
            Ok(worker) => {
                let Some(r) = self.recordings.get_mut(id) else {
                    return;
                };
                r.row.epoch = r.row.epoch.next();
                r.row.worker = Some(worker.clone());
                r.waiting = None;
                r.bytes_live = 0;
                let epoch = r.row.epoch;
                let spec = r.row.spec.clone();
                // Max duration counts from the recording's first frame, across
                // placements; the first placement sets it at its first frame.
                let deadline = match (r.row.started_at, spec.stop.max_duration_secs) {
                    (Some(start), Some(max)) => Some(start + u64::from(max) * 1000),
                    _ => None,
                };
                if !self.set_state(id, RecordingState::Assigned, None) {
                    return;
                }
                if epoch == recfleet_protocol::Epoch::FIRST {
                    if let Some(r) = self.recordings.get(id) {
                        let secs = now_ms().saturating_sub(r.row.created_at) as f64 / 1000.0;
                        self.metrics.placement_latency.observe(secs);
                    }
                }
                tracing::info!(recording = %id, %worker, %epoch, "placed");
                self.send_to(
                    &worker,
                    CoordinatorMessage::StartSegment {
                        epoch,
                        spec,
                        deadline,
                    },
                );
                self.worker_changed(&worker);
            }
        }
    }

    /// The scheduler's choice among connected, ready workers (`except` is
    /// never chosen; `avoid` only if nothing else fits).
    pub(super) fn pick_worker(
        &self,
        labels: &std::collections::BTreeMap<String, String>,
        cost: u32,
        avoid: Option<&WorkerName>,
        except: Option<&WorkerName>,
    ) -> Result<WorkerName, scheduler::NoPlace> {
        let used: Vec<(&WorkerName, u32)> = self
            .workers
            .iter()
            .filter(|(n, w)| {
                w.info.state == WorkerState::Ready && w.session.is_some() && Some(*n) != except
            })
            .map(|(n, _)| (n, self.used_on(n)))
            .collect();
        let candidates: Vec<Candidate> = used
            .iter()
            .map(|(n, u)| {
                let w = &self.workers[*n];
                Candidate {
                    name: n,
                    capacity: w.info.capacity,
                    used: *u,
                    labels: &w.info.labels,
                }
            })
            .collect();
        scheduler::pick(&candidates, labels, cost, avoid).cloned()
    }

    /// The recording lost its placement (worker lost, gave up, shut down):
    /// it waits to be placed again. The open segment is closed at its last
    /// frame known.
    pub(super) fn interrupt(
        &mut self,
        id: &RecordingId,
        why: SegmentEndReason,
        avoid: Option<WorkerName>,
    ) {
        let Some(r) = self.recordings.get_mut(id) else {
            return;
        };
        let epoch = r.row.epoch;
        let last = r.last_frame_at;
        for s in r
            .segments
            .iter_mut()
            .filter(|s| s.epoch == epoch && s.ended_at.is_none())
        {
            s.ended_at = Some(s.last_frame_at.or(last).unwrap_or(s.started_at));
            s.last_frame_at = s.last_frame_at.or(last);
            s.end_reason = Some(why.clone());
        }
        r.avoid = avoid;
        let segs: Vec<_> = r
            .segments
            .iter()
            .filter(|s| s.epoch == epoch)
            .cloned()
            .collect();
        for s in &segs {
            let _ = self.store.put_segment(id, s);
        }
        self.set_state(id, RecordingState::Interrupted, Some(why.describe()));
    }

    /// Ends a recording: completed if anything was captured, else failed
    /// (or cancelled if it never started). Writes the manifest.
    pub(super) fn finalize(&mut self, id: &RecordingId, reason: String) {
        if self.recordings.get(id).is_some_and(|r| r.moving.is_some()) {
            self.cancel_move(id, "the recording is ending");
        }
        let Some(r) = self.recordings.get(id) else {
            return;
        };
        let captured = r.segments.iter().any(|s| s.first_frame_at.is_some());
        let state = r.row.state;
        if state.is_terminal() {
            return;
        }
        if !captured
            && matches!(
                state,
                RecordingState::Pending
                    | RecordingState::Assigned
                    | RecordingState::Starting
                    | RecordingState::Interrupted
            )
        {
            self.set_state(id, RecordingState::Cancelled, Some(reason));
            self.write_manifest(id);
            return;
        }
        self.advance(id, &[RecordingState::Stopping, RecordingState::Finalizing]);
        let end = if captured {
            RecordingState::Completed
        } else {
            RecordingState::Failed
        };
        self.set_state(id, end, Some(reason));
        self.write_manifest(id);
    }

    /// Fails a recording for good.
    pub(super) fn fail(&mut self, id: &RecordingId, reason: String) {
        self.set_state(id, RecordingState::Failed, Some(reason));
        self.write_manifest(id);
    }

    /// The manifest of a recording as it stands.
    pub(super) fn manifest(&self, id: &RecordingId) -> Option<Manifest> {
        let r = self.recordings.get(id)?;
        Some(Manifest::build(
            id.clone(),
            r.row.spec.url.clone(),
            r.row.state,
            r.row.reason.clone(),
            r.segments.clone(),
        ))
    }

    /// Writes `manifest.json` beside the segments, where the coordinator can
    /// reach them (a shared output root); file names become relative to it.
    pub(super) fn write_manifest(&self, id: &RecordingId) {
        let (Some(root), Some(r), Some(mut m)) = (
            &self.settings.manifest_root,
            self.recordings.get(id),
            self.manifest(id),
        ) else {
            return;
        };
        let dir = root.join(r.row.spec.output_dir());
        let prefix = format!("{}/", r.row.spec.output_dir());
        for s in &mut m.segments {
            if let Some(rest) = s.file.strip_prefix(&prefix) {
                s.file = rest.to_string();
            }
        }
        match crate::record::write_manifest(&dir, &m) {
            Ok(path) => tracing::info!(recording = %id, path = %path.display(), "manifest written"),
            Err(e) => tracing::warn!(recording = %id, error = %e, "cannot write manifest"),
        }
    }

    /// After a restart, recordings whose worker did not come back within the
    /// grace period are interrupted and placed again.
    pub(super) fn interrupt_orphaned_recordings(&mut self) {
        let orphaned: Vec<RecordingId> = self
            .recordings
            .values()
            .filter(|r| r.row.state.holds_capacity())
            .filter(|r| {
                r.row
                    .worker
                    .as_ref()
                    .is_none_or(|w| self.workers.get(w).is_none_or(|e| e.session.is_none()))
            })
            .map(|r| r.row.spec.id.clone())
            .collect();
        for id in orphaned {
            if self
                .recordings
                .get(&id)
                .is_some_and(|r| r.row.state == RecordingState::Stopping)
            {
                self.finalize(&id, "stopped (its worker is gone)".into());
            } else {
                self.interrupt(&id, SegmentEndReason::WorkerLost, None);
            }
        }
    }
}
