//! A subscriber that reads an event stream in the background and keeps what
//! a test asserts on: when each frame arrived, the snapshots (a `Snapshot`
//! and its `SnapshotMore` parts), lags, lost workers, and the latest state
//! of every recording.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use recfleet_protocol::quic;
use recfleet_protocol::{EventKind, RecordingId, RecordingState, SubscriptionFrame, WorkerName};

/// One snapshot as received: the first frame and its parts.
#[derive(Debug, Clone)]
pub struct SnapshotSeen {
    /// When its first frame arrived.
    pub at: Instant,
    /// When its last part arrived.
    pub last_part_at: Instant,
    /// The event number it includes.
    pub seq: u64,
    /// Frames (1 + the `SnapshotMore` parts).
    pub parts: usize,
    /// Workers over all parts.
    pub workers: usize,
    /// Recordings over all parts.
    pub recordings: usize,
}

/// What the subscriber has seen so far.
#[derive(Debug, Default)]
pub struct Seen {
    /// Arrival time of every event, in order.
    pub event_times: Vec<Instant>,
    /// The last event number.
    pub last_seq: Option<u64>,
    /// Events whose number was not above the one before.
    pub out_of_order: u64,
    /// Snapshots, in order (the first, then one after each lag).
    pub snapshots: Vec<SnapshotSeen>,
    /// Lagged frames: (when, events missed).
    pub lagged: Vec<(Instant, u64)>,
    /// Workers declared lost, with when.
    pub worker_lost: Vec<(Instant, WorkerName)>,
    /// The latest state of every recording (snapshots and events).
    pub recordings: HashMap<RecordingId, RecordingState>,
    /// When each recording was first seen recording.
    pub recording_since: HashMap<RecordingId, Instant>,
    /// Why the stream ended, once it has (`Refused` included).
    pub ended: Option<String>,
    /// `health_changed` events, in order, with when they arrived.
    pub health: Vec<(
        std::time::SystemTime,
        RecordingId,
        recfleet_protocol::Health,
    )>,
}

impl Seen {
    /// Events that arrived in `[from, to)`.
    pub fn events_between(&self, from: Instant, to: Instant) -> usize {
        let lo = self.event_times.partition_point(|t| *t < from);
        let hi = self.event_times.partition_point(|t| *t < to);
        hi - lo
    }

    /// The latest frame of any kind (event or snapshot part) after `t`.
    pub fn anything_after(&self, t: Instant) -> bool {
        self.event_times.last().is_some_and(|e| *e > t)
            || self.snapshots.last().is_some_and(|s| s.last_part_at > t)
    }

    fn note_recording(&mut self, id: &RecordingId, state: RecordingState, now: Instant) {
        self.recordings.insert(id.clone(), state);
        if state == RecordingState::Recording {
            self.recording_since.entry(id.clone()).or_insert(now);
        }
    }
}

/// A subscription read in the background until it ends or is dropped.
#[derive(Debug)]
pub struct Watch {
    seen: Arc<Mutex<Seen>>,
    task: tokio::task::JoinHandle<()>,
}

impl Watch {
    /// Reads `recv` (a stream on which `OpenStream::Subscribe` was sent).
    pub fn start(mut recv: quinn::RecvStream) -> Watch {
        let seen: Arc<Mutex<Seen>> = Arc::default();
        let s = seen.clone();
        let task = tokio::spawn(async move {
            let why = loop {
                let frame = match quic::read_frame::<SubscriptionFrame>(&mut recv).await {
                    Ok(Some(f)) => f,
                    Ok(None) => break "the coordinator ended the stream".to_string(),
                    Err(e) => break e.to_string(),
                };
                let now = Instant::now();
                let mut seen = s.lock().unwrap_or_else(|e| e.into_inner());
                match frame {
                    SubscriptionFrame::Snapshot {
                        seq,
                        workers,
                        recordings,
                    } => {
                        for r in &recordings {
                            seen.note_recording(&r.id, r.state, now);
                        }
                        seen.last_seq = Some(seq);
                        seen.snapshots.push(SnapshotSeen {
                            at: now,
                            last_part_at: now,
                            seq,
                            parts: 1,
                            workers: workers.len(),
                            recordings: recordings.len(),
                        });
                    }
                    SubscriptionFrame::SnapshotMore {
                        workers,
                        recordings,
                    } => {
                        for r in &recordings {
                            seen.note_recording(&r.id, r.state, now);
                        }
                        let Some(snap) = seen.snapshots.last_mut() else {
                            break "a SnapshotMore before any Snapshot".to_string();
                        };
                        snap.parts += 1;
                        snap.last_part_at = now;
                        snap.workers += workers.len();
                        snap.recordings += recordings.len();
                    }
                    SubscriptionFrame::Event(ev) => {
                        if seen.last_seq.is_some_and(|l| ev.seq <= l) {
                            seen.out_of_order += 1;
                        }
                        seen.last_seq = Some(ev.seq);
                        seen.event_times.push(now);
                        match &ev.kind {
                            EventKind::WorkerLost { name } => {
                                seen.worker_lost.push((now, name.clone()))
                            }
                            EventKind::RecordingChanged(r) => {
                                seen.note_recording(&r.id, r.state, now)
                            }
                            EventKind::HealthChanged {
                                recording, health, ..
                            } => seen.health.push((
                                std::time::SystemTime::now(),
                                recording.clone(),
                                health.clone(),
                            )),
                            _ => {}
                        }
                    }
                    SubscriptionFrame::Lagged { missed } => seen.lagged.push((now, missed)),
                    SubscriptionFrame::Refused(e) => break format!("refused: {}", e.message),
                }
            };
            s.lock().unwrap_or_else(|e| e.into_inner()).ended = Some(why);
        });
        Watch { seen, task }
    }

    /// Reads what it has seen so far with `f`.
    pub fn with<T>(&self, f: impl FnOnce(&Seen) -> T) -> T {
        f(&self.seen())
    }

    /// What it has seen so far (hold the guard briefly: the reader waits).
    pub fn seen(&self) -> MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.task.abort();
    }
}
