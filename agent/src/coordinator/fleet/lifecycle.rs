//! A recording's way through the state machine: placement, interruption,
//! finalization and the manifest.

use recfleet_protocol::manifest::{Outputs, SegmentEndReason};
use recfleet_protocol::{
    ChunkReport, CoordinatorMessage, EventKind, RecordingId, RecordingState, WorkerName,
};

use super::copies::CopyGone;
use super::placement::NoPlace;
use super::{Effect, Fleet, StoredSegment};

impl Fleet {
    /// Moves a recording to `next` if the lifecycle allows it, persists it
    /// and tells subscribers. A refused move is logged, never a panic.
    pub(super) fn set_state(
        &mut self,
        id: &RecordingId,
        next: RecordingState,
        reason: Option<String>,
    ) -> bool {
        let wall = self.now.wall_ms;
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
        let from = r.row.state;
        r.row.state = next;
        if reason.is_some() {
            r.row.reason = reason;
        }
        if next.is_terminal() {
            r.row.ended_at = Some(wall);
        }
        self.persist(id);
        self.reindex(id);
        self.changed(id);
        self.webhook(id, from, next);
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

    /// Places what waits, in request order. A recording without label
    /// requirements that finds no room stops the pass: those after it wait
    /// their turn (and the pass costs O(log workers) while the fleet is
    /// full). A recording whose labels match no free worker does not hold
    /// up the others.
    pub(super) fn schedule(&mut self) {
        let mut cursor: Option<(u64, RecordingId)> = None;
        self.blocked = None;
        loop {
            let next = match &cursor {
                None => self.queue.first().cloned(),
                Some(c) => self
                    .queue
                    .range((
                        std::ops::Bound::Excluded(c.clone()),
                        std::ops::Bound::Unbounded,
                    ))
                    .next()
                    .cloned(),
            };
            let Some(key) = next else { break };
            cursor = Some(key.clone());
            match self.place(&key.1) {
                Ok(()) => {}
                Err(NoPlace::NoWorkers) => {
                    self.blocked = Some(NoPlace::NoWorkers.describe().to_string());
                    break;
                }
                Err(why) => {
                    let labelled = self
                        .recordings
                        .get(&key.1)
                        .is_some_and(|r| !r.row.spec.labels.is_empty());
                    if !labelled {
                        self.blocked = Some(why.describe().to_string());
                        break;
                    }
                }
            }
        }
        if !self.uncopied.is_empty() {
            self.place_copies();
        }
    }

    /// Places one waiting recording, or says why not (and shows it).
    fn place(&mut self, id: &RecordingId) -> Result<(), NoPlace> {
        let Some(r) = self.recordings.get(id) else {
            return Ok(());
        };
        let choice = self.pick_worker(id, r.avoid.clone().as_ref(), None);
        let worker = match choice {
            Ok(w) => w,
            Err(why) => {
                let text = why.describe().to_string();
                let changed = self.recordings.get_mut(id).map(|r| {
                    let changed = r.waiting.as_deref() != Some(text.as_str());
                    r.waiting = Some(text);
                    changed
                });
                if changed == Some(true) {
                    self.changed(id);
                }
                return Err(why);
            }
        };
        let Some(r) = self.recordings.get_mut(id) else {
            return Ok(());
        };
        r.row.epoch = r.row.epoch.next();
        r.row.worker = Some(worker.clone());
        r.waiting = None;
        r.bytes_live = 0;
        r.health = recfleet_protocol::Health::default();
        r.level_db = None;
        let epoch = r.row.epoch;
        let spec = r.row.spec.clone();
        let created_at = r.row.created_at;
        let deadline = r.deadline();
        if !self.set_state(id, RecordingState::Assigned, None) {
            return Ok(());
        }
        if epoch == recfleet_protocol::Epoch::FIRST {
            let secs = self.now.wall_ms.saturating_sub(created_at) as f64 / 1000.0;
            self.metrics.placement_latency.observe(secs);
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
        Ok(())
    }

    /// The scheduler's choice for recording `id` among connected, ready
    /// workers (`except` is never chosen; `avoid` only if nothing else fits).
    pub(super) fn pick_worker(
        &self,
        id: &RecordingId,
        avoid: Option<&WorkerName>,
        except: Option<&WorkerName>,
    ) -> Result<WorkerName, NoPlace> {
        let Some(r) = self.recordings.get(id) else {
            return Err(NoPlace::NoWorkers);
        };
        let labels = &r.row.spec.labels;
        let cost = r.row.spec.cost;
        if labels.is_empty() {
            return self.placements.pick(cost, None, avoid, except);
        }
        let matches = |w: &WorkerName| {
            self.workers
                .get(w)
                .is_some_and(|e| labels.iter().all(|(k, v)| e.info.labels.get(k) == Some(v)))
        };
        self.placements.pick(cost, Some(&matches), avoid, except)
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
        // With a second copy there is no interruption: it takes over.
        if self.promote_copy(id, &why) {
            return;
        }
        let Some(r) = self.recordings.get_mut(id) else {
            return;
        };
        let epoch = r.row.epoch;
        let last = r.last_frame_at;
        r.avoid = avoid;
        self.close_segments(id, epoch, last, why.clone());
        self.set_state(id, RecordingState::Interrupted, Some(why.describe()));
    }

    /// Closes the open segments of placement `epoch` of `id`, whose worker
    /// will not report their end: at their last frame known (`last` if they
    /// know none).
    pub(super) fn close_segments(
        &mut self,
        id: &RecordingId,
        epoch: recfleet_protocol::Epoch,
        last: Option<u64>,
        why: SegmentEndReason,
    ) {
        let Some(r) = self.recordings.get_mut(id) else {
            return;
        };
        for s in r
            .segments
            .iter_mut()
            .filter(|s| s.epoch == epoch && s.ended_at.is_none())
        {
            s.ended_at = Some(s.last_frame_at.or(last).unwrap_or(s.started_at));
            s.last_frame_at = s.last_frame_at.or(last);
            s.end_reason = Some(why.clone());
        }
        let segs: Vec<_> = r
            .segments
            .iter()
            .filter(|s| s.epoch == epoch)
            .cloned()
            .collect();
        for s in segs {
            self.out.push(Effect::PutSegment(id.clone(), s));
        }
    }

    /// Ends a recording: completed if anything was captured, else failed
    /// (or cancelled if it never started). Writes the manifest.
    pub(super) fn finalize(&mut self, id: &RecordingId, reason: String) {
        if self.recordings.get(id).is_some_and(|r| r.moving.is_some()) {
            self.cancel_move(id, "the recording is ending");
        }
        self.drop_copy(
            id,
            "the recording is ending",
            CopyGone::Stop(SegmentEndReason::Stopped),
            false,
        );
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
        if state == RecordingState::Finalizing {
            return;
        }
        if !captured {
            self.set_state(id, RecordingState::Failed, Some(reason));
            self.write_manifest(id);
            return;
        }
        // Completed only once recording.mp4 is in the destination: the
        // platform is told "completed" when there is something to fetch.
        self.advance(id, &[RecordingState::Stopping, RecordingState::Finalizing]);
        if let Some(r) = self.recordings.get_mut(id) {
            r.row.reason = Some(reason);
        }
        self.persist(id);
        self.write_manifest(id);
        self.request_outputs(id);
    }

    /// Asks the driver to make the stitched outputs of a recording in
    /// Finalizing.
    pub(super) fn request_outputs(&mut self, id: &RecordingId) {
        let (Some(r), Some(manifest)) = (self.recordings.get(id), self.manifest(id)) else {
            self.finalizing.remove(id);
            return;
        };
        if r.row.state != RecordingState::Finalizing {
            self.finalizing.remove(id);
            return;
        }
        let spec = r.row.spec.clone();
        self.finalizing.insert(id.clone(), self.now.mono_ms);
        self.out.push(Effect::Finalize { spec, manifest });
    }

    /// The outputs are made (or could not be): the recording ends.
    pub(super) fn finalized(
        &mut self,
        id: &RecordingId,
        outputs: Outputs,
        stored: Vec<StoredSegment>,
    ) {
        let Some(r) = self.recordings.get_mut(id) else {
            return;
        };
        if r.row.state != RecordingState::Finalizing {
            return;
        }
        self.finalizing.remove(id);
        // What the store holds replaces what workers said of their segments.
        for st in &stored {
            if let Some(seg) = r
                .segments
                .iter_mut()
                .find(|s| s.epoch == st.epoch && s.part == st.part)
            {
                seg.bytes = st.bytes;
                seg.sha256 = st.sha256.clone();
                // The last frame is the last one stored, to the frame: the
                // workers' progress reports lag by up to a report period,
                // and a lost worker's last chunks may never have arrived.
                if let Some(first) = seg.first_frame_at {
                    seg.last_frame_at = Some(first + st.duration_ms);
                }
            }
        }
        let segs: Vec<_> = r.segments.clone();
        let error = outputs.error.clone();
        r.row.outputs = Some(outputs);
        for seg in segs {
            self.out.push(Effect::PutSegment(id.clone(), seg));
        }
        for st in stored {
            for c in st.chunks {
                self.out.push(Effect::PutChunk(
                    id.clone(),
                    ChunkReport {
                        recording: id.clone(),
                        epoch: st.epoch,
                        part: st.part,
                        chunk: c,
                    },
                ));
            }
        }
        match error {
            None => {
                let reason = self.recordings.get(id).and_then(|r| r.row.reason.clone());
                self.set_state(id, RecordingState::Completed, reason);
            }
            Some(e) => {
                self.set_state(
                    id,
                    RecordingState::Failed,
                    Some(format!(
                        "its chunks are stored but recording.mp4 could not be made: {e}"
                    )),
                );
            }
        }
        self.write_manifest(id);
    }

    /// Fails a recording for good.
    pub(super) fn fail(&mut self, id: &RecordingId, reason: String) {
        self.set_state(id, RecordingState::Failed, Some(reason));
        self.write_manifest(id);
    }

    /// Asks for `manifest.json` beside the segments; file names become
    /// relative to the recording's output directory.
    pub(super) fn write_manifest(&mut self, id: &RecordingId) {
        let (Some(r), Some(mut m)) = (self.recordings.get(id), self.manifest(id)) else {
            return;
        };
        let dir = r.row.spec.output_dir().to_string();
        let destination = r
            .row
            .spec
            .destination
            .clone()
            .unwrap_or_else(|| self.settings.destination.clone());
        let prefix = format!("{dir}/");
        for s in &mut m.segments {
            if let Some(rest) = s.file.strip_prefix(&prefix) {
                s.file = rest.to_string();
            }
        }
        m.outputs = r.row.outputs.clone();
        if let Some(r) = self.recordings.get_mut(id) {
            r.manifest_written = self.now.mono_ms;
        }
        self.out.push(Effect::WriteManifest {
            destination,
            dir,
            manifest: m,
        });
    }

    /// After a restart, recordings whose worker did not come back within the
    /// grace period are interrupted and placed again (once, when the grace
    /// ends; later losses are handled as they happen).
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
