//! The fleet: the coordinator's whole state, owned by one task (an actor).
//! Connections send it commands and get answers on oneshot channels, so no
//! lock is held across an await and every change happens in one order: the
//! order of the event numbers.

mod lifecycle;
mod moves;
mod requests;
mod workers;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use recfleet_protocol::manifest::ManifestSegment;
use recfleet_protocol::spec::UrlPolicy;
use recfleet_protocol::{
    now_ms, ConsoleResponse, CoordinatorMessage, Event, EventKind, RecordingId, RecordingInfo,
    SubscriptionFrame, WorkerInfo, WorkerName,
};
use tokio::sync::{broadcast, mpsc, oneshot};

use super::metrics::{label, CoordinatorMetrics};
use super::store::{RecordingRow, Store, StoreError};

pub use super::cmd::Cmd;
use super::cmd::{Subscription, WorkerTx};

/// Settings of the fleet logic.
#[derive(Debug, Clone)]
pub struct FleetSettings {
    /// Where browsers may go.
    pub url_policy: UrlPolicy,
    /// Where segment files of all workers can be reached (a shared output
    /// root, as in the local fleet): manifests are written there too.
    pub manifest_root: Option<PathBuf>,
    /// After a restart, how long to wait for workers to come back before
    /// their recordings are placed elsewhere.
    pub reconnect_grace: Duration,
    /// A connected worker silent for this long is declared lost.
    pub worker_silence: Duration,
    /// Telemetry period asked of workers.
    pub telemetry_interval: Duration,
    /// Placements that may fail before a recording fails.
    pub max_failed_placements: u32,
}

impl Default for FleetSettings {
    fn default() -> Self {
        FleetSettings {
            url_policy: UrlPolicy::default(),
            manifest_root: None,
            reconnect_grace: Duration::from_secs(5),
            worker_silence: Duration::from_secs(4),
            telemetry_interval: Duration::from_secs(1),
            max_failed_placements: 3,
        }
    }
}

/// A worker's live session.
#[derive(Debug)]
struct Session {
    id: u64,
    tx: WorkerTx,
}

#[derive(Debug)]
struct WorkerEntry {
    info: WorkerInfo,
    session: Option<Session>,
    last_event_at: u64,
}

/// A recording and what is known of it beyond the stored row.
#[derive(Debug)]
struct Recording {
    row: RecordingRow,
    segments: Vec<ManifestSegment>,
    bytes_live: u64,
    fps_milli: u32,
    last_frame_at: Option<u64>,
    /// Why it is not placed, when it waits.
    waiting: Option<String>,
    /// A worker to avoid at the next placement (it just failed).
    avoid: Option<WorkerName>,
    /// Its worker did not report it in a hello at this time.
    suspect_since: Option<u64>,
    /// A make-before-break move in progress.
    moving: Option<moves::Move>,
    /// Placements that were current before a move and are still stopping.
    old_placements: Vec<(WorkerName, recfleet_protocol::Epoch)>,
}

impl Recording {
    fn new(row: RecordingRow) -> Self {
        Recording {
            row,
            segments: Vec::new(),
            bytes_live: 0,
            fps_milli: 0,
            last_frame_at: None,
            waiting: None,
            avoid: None,
            suspect_since: None,
            moving: None,
            old_placements: Vec::new(),
        }
    }
}

/// The coordinator's state.
pub struct Fleet {
    store: Store,
    settings: FleetSettings,
    version: String,
    seq: u64,
    events: broadcast::Sender<Event>,
    workers: BTreeMap<WorkerName, WorkerEntry>,
    recordings: BTreeMap<RecordingId, Recording>,
    started: Instant,
    pings: HashMap<u64, oneshot::Sender<ConsoleResponse>>,
    next_ping: u64,
    drains: BTreeMap<WorkerName, moves::Drain>,
    /// Old placements of completed moves, stopped at the given time.
    pending_stops: Vec<(RecordingId, WorkerName, recfleet_protocol::Epoch, u64)>,
    metrics: CoordinatorMetrics,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("workers", &self.workers.len())
            .field("recordings", &self.recordings.len())
            .finish()
    }
}

/// Events kept for slow subscribers before they are told they lagged.
const EVENT_BUFFER: usize = 4096;

impl Fleet {
    /// Loads the fleet from its store.
    pub fn load(store: Store, settings: FleetSettings) -> Result<Fleet, StoreError> {
        let boot = store.next_boot()?;
        let mut recordings = BTreeMap::new();
        for row in store.recordings()? {
            recordings.insert(row.spec.id.clone(), Recording::new(row));
        }
        for (id, seg) in store.segments()? {
            if let Some(r) = recordings.get_mut(&id) {
                r.last_frame_at = r.last_frame_at.max(seg.last_frame_at);
                r.segments.push(seg);
            }
        }
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        tracing::info!(boot, recordings = recordings.len(), "fleet state loaded");
        Ok(Fleet {
            store,
            settings,
            version: env!("CARGO_PKG_VERSION").to_string(),
            // Event numbers: the boot count in the high bits keeps them
            // increasing across restarts without a write per event.
            seq: boot << 40,
            events,
            workers: BTreeMap::new(),
            recordings,
            started: Instant::now(),
            pings: HashMap::new(),
            next_ping: 1,
            drains: BTreeMap::new(),
            pending_stops: Vec::new(),
            metrics: CoordinatorMetrics::default(),
        })
    }

    /// Runs the actor until every sender of `rx` is gone.
    pub async fn run(mut self, mut rx: mpsc::Receiver<Cmd>) {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    Some(cmd) => self.handle(cmd),
                    None => break,
                },
                _ = tick.tick() => self.tick(),
            }
        }
        tracing::info!("fleet stopped");
    }

    fn handle(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Hello {
                session,
                address,
                hello,
                tx,
                reply,
            } => {
                let result = self.worker_hello(session, address, hello, tx);
                let _ = reply.send(result);
                self.schedule();
            }
            Cmd::FromWorker {
                session,
                name,
                msg,
                rtt_us,
            } => self.worker_message(session, &name, msg, rtt_us),
            Cmd::WorkerClosed { session, name, why } => self.worker_closed(session, &name, &why),
            Cmd::Request {
                identity,
                req,
                reply,
            } => self.request(&identity, req, reply),
            Cmd::Subscribe { reply } => {
                let rx = self.events.subscribe();
                let _ = reply.send(Subscription {
                    frames: vec![self.snapshot()],
                    events: rx,
                });
            }
            Cmd::Ready { reply } => {
                let _ = reply.send(if self.store.ping() {
                    Ok(())
                } else {
                    Err("the store does not answer".into())
                });
            }
            Cmd::Metrics { reply } => {
                let _ = reply.send(self.scrape());
            }
        }
    }

    /// Periodic work: silent workers, workers that did not come back after a
    /// restart, and placing what waits.
    fn tick(&mut self) {
        self.interrupt_vanished();
        self.tick_moves();
        if self.started.elapsed() >= self.settings.reconnect_grace {
            self.interrupt_orphaned_recordings();
        }
        self.schedule();
    }

    /// Sets the gauges from the state and encodes every metric.
    fn scrape(&mut self) -> String {
        let m = &self.metrics;
        m.workers.clear();
        m.slots_used.clear();
        let (mut capacity, mut free) = (0i64, 0i64);
        let names: Vec<WorkerName> = self.workers.keys().cloned().collect();
        for name in &names {
            let used = self.used_on(name);
            let w = &self.workers[name];
            let m = &self.metrics;
            m.workers
                .get_or_create(&label("state", w.info.state.as_str()))
                .inc();
            if w.session.is_some() {
                m.slots_used
                    .get_or_create(&label("worker", name.as_str()))
                    .set(i64::from(used));
                if w.info.state == recfleet_protocol::WorkerState::Ready {
                    capacity += i64::from(w.info.capacity);
                    free += i64::from(w.info.capacity.saturating_sub(used));
                }
            }
        }
        let m = &self.metrics;
        m.capacity.set(capacity);
        m.free_capacity.set(free);
        m.recordings.clear();
        let mut pending = 0;
        for r in self.recordings.values() {
            m.recordings
                .get_or_create(&label("state", r.row.state.as_str()))
                .inc();
            if matches!(
                r.row.state,
                recfleet_protocol::RecordingState::Pending
                    | recfleet_protocol::RecordingState::Interrupted
            ) {
                pending += 1;
            }
        }
        m.pending.set(pending);
        m.encode()
    }

    fn emit(&mut self, kind: EventKind) {
        self.seq += 1;
        let _ = self.events.send(Event {
            seq: self.seq,
            at: now_ms(),
            kind,
        });
    }

    fn snapshot(&self) -> SubscriptionFrame {
        SubscriptionFrame::Snapshot {
            seq: self.seq,
            workers: self.workers.values().map(|w| w.info.clone()).collect(),
            recordings: self
                .recordings
                .values()
                .map(|r| self.recording_info(r))
                .collect(),
        }
    }

    fn recording_info(&self, r: &Recording) -> RecordingInfo {
        let stored: u64 = r
            .segments
            .iter()
            .filter(|s| s.ended_at.is_some())
            .map(|s| s.bytes)
            .sum();
        RecordingInfo {
            id: r.row.spec.id.clone(),
            state: r.row.state,
            url: r.row.spec.url.clone(),
            worker: r.row.worker.clone(),
            epoch: r.row.epoch,
            created_at: r.row.created_at,
            started_at: r.row.started_at,
            ended_at: r.row.ended_at,
            bytes: stored
                + if r.row.state.holds_capacity() {
                    r.bytes_live
                } else {
                    0
                },
            fps_milli: if r.row.state.holds_capacity() {
                r.fps_milli
            } else {
                0
            },
            restarts: r.row.restarts,
            segments: r.segments.len() as u32,
            reason: r.row.reason.clone().or_else(|| r.waiting.clone()),
        }
    }

    /// Capacity units in use on a worker: what its placements hold.
    fn used_on(&self, name: &WorkerName) -> u32 {
        self.recordings
            .values()
            .filter(|r| {
                (r.row.worker.as_ref() == Some(name) && r.row.state.holds_capacity())
                    || r.moving.as_ref().is_some_and(|m| &m.to == name)
            })
            .map(|r| r.row.spec.cost)
            .sum()
    }

    fn recordings_on(&self, name: &WorkerName) -> Vec<RecordingId> {
        self.recordings
            .values()
            .filter(|r| r.row.worker.as_ref() == Some(name) && r.row.state.holds_capacity())
            .map(|r| r.row.spec.id.clone())
            .collect()
    }

    fn persist(&self, id: &RecordingId) {
        if let Some(r) = self.recordings.get(id) {
            if let Err(e) = self.store.put_recording(&r.row) {
                tracing::error!(recording = %id, error = %e, "cannot persist recording");
            }
        }
    }

    fn send_to(&self, worker: &WorkerName, msg: CoordinatorMessage) -> bool {
        match self.workers.get(worker).and_then(|w| w.session.as_ref()) {
            Some(s) => s.tx.try_send(msg).is_ok(),
            None => false,
        }
    }
}
