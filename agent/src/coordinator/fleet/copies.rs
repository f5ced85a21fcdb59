//! Redundancy 2: a recording recorded by two workers at once. The first copy
//! is the recording's placement (`row.worker`, `row.epoch`); the second is a
//! standing placement beside it, on another host when there is one, that
//! records the same page all along. When the first copy fails (its worker
//! dies, its slot gives up), the second becomes the first without a gap (it
//! was capturing already) and a new second copy is placed. Both copies'
//! segments are in the manifest; the stitcher plays each moment once.
//!
//! The second copy is not in the store's row: after a coordinator restart it
//! is adopted again from its worker's hello.

use recfleet_protocol::manifest::SegmentEndReason;
use recfleet_protocol::{
    CoordinatorMessage, CopyInfo, Epoch, EventKind, RecordingId, RecordingState, RunningSegment,
    WorkerName,
};

use super::placement::NoPlace;
use super::{Fleet, Recording};

/// The second copy of a recording.
#[derive(Debug, Clone)]
pub(super) struct Copy {
    /// The worker recording it.
    pub worker: WorkerName,
    /// Its placement.
    pub epoch: Epoch,
    /// When it was asked to start (monotonic).
    pub since: u64,
    /// It has captured its first frame.
    pub capturing: bool,
}

/// How a second copy goes.
#[derive(Debug, Clone)]
pub(super) enum CopyGone {
    /// It still runs: it is told to stop, for this reason.
    Stop(SegmentEndReason),
    /// It ended by itself (its worker reported the end).
    Ended,
    /// Its worker is gone.
    Lost,
}

/// A second copy that has not captured within this is given up.
const COPY_START_TIMEOUT_MS: u64 = 60_000;
/// After a second copy ended or failed, the next one is placed no sooner
/// than this: a page that ended ends the first copy too within this time,
/// and a worker that cannot start it is not asked again at once.
const COPY_REST_MS: u64 = 5_000;

impl Recording {
    /// Whether it should have a second copy and has none.
    pub(super) fn wants_copy(&self) -> bool {
        self.row.spec.redundancy >= 2
            && self.row.state == RecordingState::Recording
            && self.copy.is_none()
            && self.moving.is_none()
    }

    /// Its second copy, as shown.
    pub(super) fn copy_info(&self) -> Option<Box<CopyInfo>> {
        self.copy.as_ref().map(|c| {
            Box::new(CopyInfo {
                worker: c.worker.clone(),
                epoch: c.epoch,
                capturing: c.capturing,
            })
        })
    }
}

impl Fleet {
    /// Places the second copies that are missing (after the queue: a
    /// recording that waits for its first copy comes before another's
    /// second).
    pub(super) fn place_copies(&mut self) {
        let now = self.now.mono_ms;
        let due: Vec<RecordingId> = self
            .uncopied
            .iter()
            .filter(|id| {
                self.recordings
                    .get(*id)
                    .is_some_and(|r| r.copy_rest_until <= now)
            })
            .cloned()
            .collect();
        for id in due {
            // A full fleet costs O(1) here, not a scan of the workers for
            // each recording that waits for its second copy.
            let cost = self.recordings.get(&id).map_or(1, |r| r.row.spec.cost);
            if !self.placements.room_for(cost) {
                continue;
            }
            match self.pick_copy_worker(&id) {
                Ok(worker) => self.start_copy(&id, &worker),
                Err(NoPlace::NoWorkers) => break,
                Err(_) => {}
            }
        }
    }

    /// Where the second copy of `id` goes: never its first copy's worker;
    /// another host whenever a ready worker carrying its labels runs on
    /// another host (it waits for room there rather than share a machine
    /// with the first copy); else any other worker.
    fn pick_copy_worker(&self, id: &RecordingId) -> Result<WorkerName, NoPlace> {
        let Some(r) = self.recordings.get(id) else {
            return Err(NoPlace::NoWorkers);
        };
        let first = r.row.worker.as_ref();
        let labels = &r.row.spec.labels;
        let cost = r.row.spec.cost;
        let carries = |w: &WorkerName| {
            self.workers
                .get(w)
                .is_some_and(|e| labels.iter().all(|(k, v)| e.info.labels.get(k) == Some(v)))
        };
        let first_host = first
            .and_then(|w| self.workers.get(w))
            .map(|e| e.info.host.as_str())
            .filter(|h| !h.is_empty());
        if let Some(host) = first_host {
            let elsewhere = |w: &WorkerName| {
                carries(w)
                    && self
                        .workers
                        .get(w)
                        .is_some_and(|e| e.info.host.as_str() != host)
            };
            match self
                .placements
                .pick(cost, Some(&elsewhere), r.copy_avoid.as_ref(), first)
            {
                Err(NoPlace::NoLabelMatch) => {}
                other => return other,
            }
        }
        self.placements
            .pick(cost, Some(&carries), r.copy_avoid.as_ref(), first)
    }

    fn start_copy(&mut self, id: &RecordingId, worker: &WorkerName) {
        let Some(r) = self.recordings.get_mut(id) else {
            return;
        };
        let epoch = r.next_epoch();
        r.copy = Some(Copy {
            worker: worker.clone(),
            epoch,
            since: self.now.mono_ms,
            capturing: false,
        });
        let spec = r.row.spec.clone();
        let deadline = r.deadline();
        tracing::info!(recording = %id, %worker, %epoch, "placing its second copy");
        self.reindex(id);
        self.send_to(
            worker,
            CoordinatorMessage::StartSegment {
                epoch,
                spec,
                deadline,
            },
        );
        self.changed(id);
        self.worker_changed(worker);
    }

    /// The second copy captured its first frame: from now on a failure of
    /// the first costs nothing.
    pub(super) fn copy_capturing(&mut self, id: &RecordingId) {
        let Some(r) = self.recordings.get_mut(id) else {
            return;
        };
        let Some(c) = r.copy.as_mut() else { return };
        if c.capturing {
            return;
        }
        c.capturing = true;
        let message = format!(
            "{id} is recorded twice: on {} and on {}",
            r.row
                .worker
                .as_ref()
                .map(|w| w.as_str())
                .unwrap_or("its worker"),
            c.worker
        );
        let worker = c.worker.clone();
        tracing::info!(recording = %id, copy = %worker, "second copy capturing");
        self.emit(EventKind::Notice {
            recording: Some(id.clone()),
            worker: Some(worker),
            message,
        });
        self.changed(id);
    }

    /// The second copy is gone (`avoid`: its worker is not asked again
    /// next). Another is placed after [`COPY_REST_MS`] while the recording
    /// records.
    pub(super) fn drop_copy(&mut self, id: &RecordingId, why: &str, how: CopyGone, avoid: bool) {
        let Some(r) = self.recordings.get_mut(id) else {
            return;
        };
        let Some(c) = r.copy.take() else { return };
        r.copy_rest_until = self.now.mono_ms + COPY_REST_MS;
        r.copy_avoid = avoid.then(|| c.worker.clone());
        match how {
            CopyGone::Stop(reason) => {
                // Its report of the end comes as an old placement's.
                r.old_placements.push((c.worker.clone(), c.epoch));
                self.send_to(
                    &c.worker,
                    CoordinatorMessage::StopSegment {
                        recording: id.clone(),
                        epoch: c.epoch,
                        reason,
                    },
                );
            }
            CopyGone::Ended => {}
            CopyGone::Lost => {
                // No report will come: its segment ends at what is known.
                let last = r
                    .segments
                    .iter()
                    .filter(|s| s.epoch == c.epoch)
                    .filter_map(|s| s.last_frame_at.or(s.first_frame_at))
                    .max();
                self.close_segments(id, c.epoch, last, SegmentEndReason::WorkerLost);
            }
        }
        tracing::info!(recording = %id, copy = %c.worker, why, "second copy dropped");
        self.reindex(id);
        let live = self
            .recordings
            .get(id)
            .is_some_and(|r| !r.row.state.is_terminal() && r.row.state != RecordingState::Stopping);
        if live {
            self.emit(EventKind::Notice {
                recording: Some(id.clone()),
                worker: Some(c.worker.clone()),
                message: format!("the second copy of {id} on {} ended: {why}", c.worker),
            });
        }
        self.changed(id);
        self.worker_changed(&c.worker);
    }

    /// The first copy failed (`why`): the second becomes the first. If it
    /// was capturing the recording goes on without a gap; else it is
    /// starting, as after a failover. False if there is no second copy.
    pub(super) fn promote_copy(&mut self, id: &RecordingId, why: &SegmentEndReason) -> bool {
        let Some(r) = self.recordings.get_mut(id) else {
            return false;
        };
        let Some(c) = r.copy.take() else {
            return false;
        };
        let (old_epoch, old_worker) = (r.row.epoch, r.row.worker.clone());
        let last = r.last_frame_at;
        r.row.epoch = c.epoch;
        r.row.worker = Some(c.worker.clone());
        r.copy_rest_until = self.now.mono_ms;
        r.copy_avoid = None;
        r.avoid = None;
        // The first copy's live figures no longer hold.
        r.health = recfleet_protocol::Health::default();
        r.level_db = None;
        self.close_segments(id, old_epoch, last, why.clone());
        self.persist(id);
        self.reindex(id);
        let lost = old_worker
            .as_ref()
            .map(|w| w.as_str())
            .unwrap_or("its worker");
        let message = if c.capturing {
            format!(
                "the copy of {id} on {lost} ended ({}): it goes on recording on {} without a gap",
                why.describe(),
                c.worker
            )
        } else {
            self.advance(
                id,
                &[
                    RecordingState::Interrupted,
                    RecordingState::Assigned,
                    RecordingState::Starting,
                ],
            );
            format!(
                "the copy of {id} on {lost} ended ({}): its second copy on {} has not captured yet and takes over",
                why.describe(),
                c.worker
            )
        };
        tracing::warn!(recording = %id, from = %lost, to = %c.worker, capturing = c.capturing, "second copy promoted");
        self.emit(EventKind::Notice {
            recording: Some(id.clone()),
            worker: Some(c.worker.clone()),
            message,
        });
        self.changed(id);
        self.worker_changed(&c.worker);
        true
    }

    /// A planned hand-over (a drain of the first copy's worker, or a move
    /// to the second copy's worker): the capturing second copy becomes the
    /// first and the old first records on briefly, as after a move.
    pub(super) fn swap_copy(&mut self, id: &RecordingId) -> bool {
        let capturing = self
            .recordings
            .get(id)
            .and_then(|r| r.copy.as_ref())
            .is_some_and(|c| c.capturing);
        if !capturing {
            return false;
        }
        let Some(r) = self.recordings.get_mut(id) else {
            return false;
        };
        let Some(c) = r.copy.take() else { return false };
        // The move machinery's completion does the rest: the second copy
        // is a move target that has captured.
        r.moving = Some(super::moves::Move {
            to: c.worker,
            epoch: c.epoch,
            since: c.since,
        });
        r.copy_rest_until = self.now.mono_ms + COPY_REST_MS;
        self.complete_move(id);
        true
    }

    /// A placement a worker reports in its hello that the coordinator does
    /// not know (it restarted: second copies are not in the store), newer
    /// than the recording's own, of a recording that wants a second copy on
    /// another worker: it is that copy. False if it is not.
    pub(super) fn adopt_copy(
        &mut self,
        id: &RecordingId,
        seg: &RunningSegment,
        worker: &WorkerName,
    ) -> bool {
        let Some(r) = self.recordings.get_mut(id) else {
            return false;
        };
        if !r.wants_copy() || seg.epoch <= r.row.epoch || r.row.worker.as_ref() == Some(worker) {
            return false;
        }
        r.copy = Some(Copy {
            worker: worker.clone(),
            epoch: seg.epoch,
            since: self.now.mono_ms,
            capturing: seg.last_frame_at.is_some(),
        });
        self.reindex(id);
        self.changed(id);
        true
    }

    /// Second copies that did not capture in time are given up.
    pub(super) fn tick_copies(&mut self) {
        let now = self.now.mono_ms;
        let stuck: Vec<RecordingId> = self
            .copied
            .iter()
            .filter(|id| {
                self.recordings
                    .get(*id)
                    .and_then(|r| r.copy.as_ref())
                    .is_some_and(|c| {
                        !c.capturing && now.saturating_sub(c.since) > COPY_START_TIMEOUT_MS
                    })
            })
            .cloned()
            .collect();
        for id in stuck {
            self.drop_copy(
                &id,
                "it did not capture within 60 s",
                CopyGone::Stop(SegmentEndReason::Stopped),
                true,
            );
        }
    }

    /// Stops the second copies of `ids` (their worker drains); others are
    /// placed elsewhere.
    pub(super) fn stop_copies(&mut self, ids: &[RecordingId], why: &str) {
        for id in ids {
            self.drop_copy(id, why, CopyGone::Stop(SegmentEndReason::Reassigned), false);
        }
    }

    /// The recordings whose second copy runs on `worker`.
    pub(super) fn copies_on(&self, worker: &WorkerName) -> Vec<RecordingId> {
        self.copied
            .iter()
            .filter(|id| {
                self.recordings
                    .get(*id)
                    .and_then(|r| r.copy.as_ref())
                    .is_some_and(|c| &c.worker == worker)
            })
            .cloned()
            .collect()
    }
}
