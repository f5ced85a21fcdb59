//! What the fleet shows: recording and worker infos, subscription
//! snapshots (in parts below the frame limit) and metrics. Reads only.

use recfleet_protocol::manifest::{Manifest, ManifestSegment};
use recfleet_protocol::{
    RecordingDetail, RecordingId, RecordingInfo, SubscriptionFrame, WorkerInfo, WorkerName,
    WorkerState,
};

use super::{Fleet, Recording};
use crate::coordinator::metrics::label;
use crate::coordinator::store::RecordingRow;

/// Ended recordings a snapshot carries at most (the most recent ones).
pub const SNAPSHOT_ENDED: usize = 200;
/// Recordings per snapshot frame: 500 with 2 KB URLs is about 1 MiB.
const SNAPSHOT_RECORDINGS_PER_FRAME: usize = 500;
/// Workers per snapshot frame.
const SNAPSHOT_WORKERS_PER_FRAME: usize = 1000;

/// What a recording's segments add to its info: how many, and the bytes
/// of those that ended.
pub fn segment_totals(segments: &[ManifestSegment]) -> (u32, u64) {
    let stored = segments
        .iter()
        .filter(|s| s.ended_at.is_some())
        .map(|s| s.bytes)
        .sum();
    (segments.len() as u32, stored)
}

/// A recording's info from what the store holds (`totals`: see
/// [`segment_totals`]) and what is live.
pub fn info_of(
    row: &RecordingRow,
    (segments, stored): (u32, u64),
    live: Option<(u64, u32)>,
    waiting: Option<&str>,
) -> RecordingInfo {
    let (bytes_live, fps_milli) = match live {
        Some(l) if row.state.holds_capacity() => l,
        _ => (0, 0),
    };
    RecordingInfo {
        id: row.spec.id.clone(),
        state: row.state,
        url: row.spec.url.clone(),
        worker: row.worker.clone(),
        epoch: row.epoch,
        created_at: row.created_at,
        started_at: row.started_at,
        ended_at: row.ended_at,
        bytes: stored + bytes_live,
        fps_milli,
        repeated_permille: 0,
        restarts: row.restarts,
        segments,
        reason: row.reason.clone().or_else(|| waiting.map(str::to_string)),
        upload_lag_ms: 0,
        health: Default::default(),
        level_db: None,
        copy: None,
    }
}

impl Fleet {
    pub(super) fn recording_info(&self, r: &Recording) -> RecordingInfo {
        let blocked = if r.waits() {
            self.blocked.as_deref()
        } else {
            None
        };
        let waiting = r.waiting.as_deref().or(blocked);
        let mut info = info_of(
            &r.row,
            segment_totals(&r.segments),
            Some((r.bytes_live, r.fps_milli)),
            waiting,
        );
        if r.row.state.holds_capacity() {
            info.repeated_permille = r.repeated_permille;
            info.upload_lag_ms = r.upload_lag_ms;
            info.health = r.health.clone();
            info.level_db = r.level_db;
            info.copy = r.copy_info();
        }
        info
    }

    /// The info of a recording still in memory.
    pub fn info(&self, id: &RecordingId) -> Option<RecordingInfo> {
        self.recordings.get(id).map(|r| self.recording_info(r))
    }

    /// A recording in memory with its manifest as it stands.
    pub fn detail(&self, id: &RecordingId) -> Option<RecordingDetail> {
        let r = self.recordings.get(id)?;
        Some(RecordingDetail {
            info: self.recording_info(r),
            spec: r.row.spec.clone(),
            manifest: self.manifest(id)?,
        })
    }

    /// The manifest of a recording as it stands.
    pub(super) fn manifest(&self, id: &RecordingId) -> Option<Manifest> {
        let r = self.recordings.get(id)?;
        let mut m = Manifest::build(
            id.clone(),
            r.row.spec.url.clone(),
            r.row.state,
            r.row.reason.clone(),
            r.segments.clone(),
        );
        // The same document as manifest.json, outputs included.
        m.outputs = r.row.outputs.clone();
        Some(m)
    }

    /// The worker's info with derived fields (used, recordings) filled in.
    pub(super) fn worker_info(&mut self, name: &WorkerName) -> Option<WorkerInfo> {
        let used = self.used_on(name);
        let recs = self.recordings_on(name);
        let w = self.workers.get_mut(name)?;
        w.info.used = used;
        w.info.recordings = recs;
        Some(w.info.clone())
    }

    /// Every worker's info.
    pub fn workers(&mut self) -> Vec<WorkerInfo> {
        let names: Vec<WorkerName> = self.workers.keys().cloned().collect();
        names.iter().filter_map(|n| self.worker_info(n)).collect()
    }

    /// A subscriber's start: every worker, every recording not ended and the
    /// most recently ended ones, as a `Snapshot` frame and `SnapshotMore`
    /// parts that each stay far below the frame limit.
    pub fn snapshot(&mut self) -> Vec<SubscriptionFrame> {
        let workers = self.workers();
        let mut recordings: Vec<RecordingInfo> = self
            .recordings
            .values()
            .filter(|r| !r.row.state.is_terminal())
            .map(|r| self.recording_info(r))
            .collect();
        recordings.extend(
            self.ended
                .iter()
                .rev()
                .take(SNAPSHOT_ENDED)
                .filter_map(|(_, id)| self.recordings.get(id))
                .map(|r| self.recording_info(r)),
        );
        let mut w_parts = workers.chunks(SNAPSHOT_WORKERS_PER_FRAME);
        let mut r_parts = recordings.chunks(SNAPSHOT_RECORDINGS_PER_FRAME);
        let mut frames = vec![SubscriptionFrame::Snapshot {
            seq: self.seq,
            workers: w_parts.next().map(<[_]>::to_vec).unwrap_or_default(),
            recordings: r_parts.next().map(<[_]>::to_vec).unwrap_or_default(),
        }];
        loop {
            let (w, r) = (w_parts.next(), r_parts.next());
            if w.is_none() && r.is_none() {
                break;
            }
            frames.push(SubscriptionFrame::SnapshotMore {
                workers: w.map(<[_]>::to_vec).unwrap_or_default(),
                recordings: r.map(<[_]>::to_vec).unwrap_or_default(),
            });
        }
        frames
    }

    /// Sets the gauges from the state and encodes every metric.
    pub fn scrape(&mut self) -> String {
        let m = &self.metrics;
        m.workers.clear();
        m.slots_used.clear();
        m.upload_buffer_bytes.clear();
        m.upload_buffer_full.clear();
        for (name, w) in &self.workers {
            m.workers
                .get_or_create(&label("state", w.info.state.as_str()))
                .inc();
            if w.session.is_some() {
                let worker = label("worker", name.as_str());
                m.slots_used
                    .get_or_create(&worker)
                    .set(i64::from(self.placements.used(name)));
                m.upload_buffer_bytes
                    .get_or_create(&worker)
                    .set(i64::try_from(w.info.upload_buffer_bytes).unwrap_or(i64::MAX));
                m.upload_buffer_full
                    .get_or_create(&worker)
                    .set(i64::from(w.info.upload_buffer_full));
            }
        }
        let (capacity, free) = self.placements.totals();
        m.capacity.set(capacity as i64);
        m.free_capacity.set(free as i64);
        m.recordings.clear();
        m.recording_health.clear();
        let mut lag_ms = 0u64;
        for r in self.recordings.values() {
            m.recordings
                .get_or_create(&label("state", r.row.state.as_str()))
                .inc();
            if r.row.state.holds_capacity() {
                lag_ms = lag_ms.max(r.upload_lag_ms);
                m.recording_health
                    .get_or_create(&label("health", r.health.state.as_str()))
                    .inc();
            }
        }
        m.upload_lag.set(lag_ms as f64 / 1000.0);
        m.pending.set(self.queue.len() as i64);
        m.encode()
    }

    /// Whether a worker is connected and takes new recordings.
    pub(super) fn is_ready(&self, name: &WorkerName) -> bool {
        self.workers
            .get(name)
            .is_some_and(|w| w.session.is_some() && w.info.state == WorkerState::Ready)
    }

    /// Recordings in a state (tests).
    #[cfg(test)]
    pub(super) fn in_state(&self, state: recfleet_protocol::RecordingState) -> Vec<RecordingId> {
        self.recordings
            .values()
            .filter(|r| r.row.state == state)
            .map(|r| r.row.spec.id.clone())
            .collect()
    }
}
