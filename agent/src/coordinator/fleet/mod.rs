//! The fleet core: the coordinator's whole logic as a state machine with no
//! I/O, as quinn-proto is to quinn. Inputs (requests, worker frames, ticks)
//! go in with the time passed in; effects (store writes, sends, replies,
//! events, manifests) come out, and the driver (`super::driver`) carries
//! them out: the store writes of a turn in one transaction, the rest only
//! once those writes are durable. Nothing here reads a clock, touches a
//! socket or a file, so every scenario is a unit test in simulated time.

pub mod admission;
mod copies;
mod lifecycle;
mod moves;
pub mod placement;
mod requests;
#[cfg(test)]
mod scenarios;
mod views;
mod webhooks;
mod workers;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use recfleet_certs::Identity;
use recfleet_protocol::egress::UrlPolicy;
use recfleet_protocol::manifest::{Manifest, ManifestSegment, Outputs};
use recfleet_protocol::{
    ChunkReport, ConsoleRequest, ConsoleResponse, CoordinatorMessage, Event, EventKind,
    RecordingId, RecordingState, WireError, WorkerHello, WorkerInfo, WorkerMessage, WorkerName,
    WorkerState,
};

use self::placement::{Hold, Placements};
use super::metrics::CoordinatorMetrics;
use super::store::RecordingRow;
use super::webhook::WebhookEvent;

pub use self::views::{info_of, segment_totals, SNAPSHOT_ENDED};

/// The time of a turn: monotonic for every deadline and timeout, the wall
/// clock only for the times recorded and shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Now {
    /// Milliseconds on a monotonic clock (any origin).
    pub mono_ms: u64,
    /// Milliseconds since the Unix epoch.
    pub wall_ms: u64,
}

/// Who waits for an answer: a number the driver maps to a channel.
pub type ReplyTo = u64;

/// What goes into the core.
#[derive(Debug)]
pub enum Input {
    /// A worker's hello on a new control stream; answered by [`Effect::Welcome`].
    Hello {
        /// Session id (one per control stream).
        session: u64,
        /// Its address.
        address: String,
        /// What it said.
        hello: WorkerHello,
        /// Who waits for the verdict.
        reply: ReplyTo,
    },
    /// A frame from a worker.
    FromWorker {
        /// Session id.
        session: u64,
        /// The worker.
        name: WorkerName,
        /// The frame.
        msg: WorkerMessage,
        /// Current QUIC round-trip time.
        rtt_us: u32,
    },
    /// A worker's control stream ended (or fell silent, or its outbox filled).
    WorkerClosed {
        /// Session id.
        session: u64,
        /// The worker.
        name: WorkerName,
        /// Why, for the log.
        why: String,
    },
    /// A console request, authorized already.
    Request {
        /// Who asks.
        identity: Identity,
        /// The request.
        req: ConsoleRequest,
        /// Who waits for the answer.
        reply: ReplyTo,
    },
    /// A request was refused for the asker's role, or a connection in its
    /// handshake: audited.
    Refused {
        /// Who asked, or where from (see [`crate::coordinator::cmd::Cmd::Refused`]).
        actor: String,
        /// What they were refused.
        what: String,
    },
    /// Time passes: deadlines, drains, retention, scheduling.
    Tick,
    /// The stitched outputs of a recording in Finalizing are made (or
    /// could not be): answers [`Effect::Finalize`].
    Finalized {
        /// The recording.
        id: RecordingId,
        /// What was made; `error` set if the stitched file was not.
        outputs: Outputs,
        /// Each segment's objects as read back from the store, by (epoch, part).
        stored: Vec<StoredSegment>,
    },
}

pub use crate::output::finalize::StoredSegment;

/// What comes out of the core.
#[derive(Debug, Clone)]
pub enum Effect {
    /// Store a recording's row (insert or replace).
    PutRecording(RecordingRow),
    /// Store a segment of a recording.
    PutSegment(RecordingId, ManifestSegment),
    /// Store what is known of one stored object of a segment.
    PutChunk(RecordingId, ChunkReport),
    /// Append to the audit log.
    Audit {
        /// Wall-clock time.
        at: u64,
        /// Who (the certificate identity).
        actor: String,
        /// What (start, stop, drain, ...).
        action: &'static str,
        /// On what.
        target: String,
    },
    /// Send a frame on a worker's session.
    Send {
        /// The session.
        session: u64,
        /// The frame.
        msg: CoordinatorMessage,
    },
    /// Close a worker's session (replaced or lost).
    CloseSession {
        /// The session.
        session: u64,
    },
    /// The verdict on a hello.
    Welcome {
        /// Who waits.
        to: ReplyTo,
        /// Accepted, or why not.
        result: Result<(), WireError>,
    },
    /// The answer to a request.
    Reply {
        /// Who waits.
        to: ReplyTo,
        /// The answer.
        response: ConsoleResponse,
    },
    /// A numbered event for subscribers.
    Event(Event),
    /// Write a recording's manifest in its output directory; the driver
    /// adds the chunks the store holds.
    WriteManifest {
        /// The destination URL.
        destination: String,
        /// The recording's directory in it.
        dir: String,
        /// The manifest.
        manifest: Manifest,
    },
    /// Make a recording's stitched outputs (recording.mp4, index.m3u8);
    /// answered by [`Input::Finalized`].
    Finalize {
        /// The recording's spec (destination, picture size, audio).
        spec: recfleet_protocol::RecordingSpec,
        /// Its manifest so far.
        manifest: Manifest,
    },
    /// Queue a webhook event for every configured URL (a store write: the
    /// outbox row commits with the state change it reports).
    Webhook(WebhookEvent),
}

impl Effect {
    /// Whether the driver writes it to the store (in the turn's transaction).
    pub fn is_store_write(&self) -> bool {
        matches!(
            self,
            Effect::PutRecording(_)
                | Effect::PutSegment(..)
                | Effect::PutChunk(..)
                | Effect::Audit { .. }
                | Effect::Webhook(_)
        )
    }
}

/// Settings of the fleet logic.
#[derive(Debug, Clone)]
pub struct FleetSettings {
    /// Where browsers may go.
    pub url_policy: UrlPolicy,
    /// After a restart, how long to wait for workers to come back before
    /// their recordings are placed elsewhere.
    pub reconnect_grace: Duration,
    /// Telemetry period asked of workers.
    pub telemetry_interval: Duration,
    /// Placements that may fail before a recording fails.
    pub max_failed_placements: u32,
    /// Finished recordings leave memory (and snapshots) this long after
    /// their end; they stay readable from the store.
    pub retention: Duration,
    /// A PingWorker not answered within this is answered with an error.
    pub forward_deadline: Duration,
    /// Where recordings go unless their request says otherwise.
    pub destination: String,
    /// Other destinations a request may name (URL prefixes); none: only
    /// `destination`. A request must not send recordings to any bucket the
    /// fleet's credentials happen to reach.
    pub allowed_destinations: Vec<String>,
    /// Media health defaults for what a request leaves out.
    pub health: recfleet_protocol::HealthPolicy,
    /// Where webhook events go; empty: no webhook effects at all.
    pub webhook_urls: Vec<String>,
    /// Admission by measured cost.
    pub admission: admission::AdmissionConfig,
}

impl Default for FleetSettings {
    fn default() -> Self {
        FleetSettings {
            url_policy: UrlPolicy::default(),
            reconnect_grace: Duration::from_secs(5),
            telemetry_interval: Duration::from_secs(1),
            max_failed_placements: 3,
            retention: Duration::from_secs(24 * 3600),
            forward_deadline: Duration::from_secs(5),
            destination: "file:///var/lib/recfleet/recordings".into(),
            allowed_destinations: Vec::new(),
            health: recfleet_protocol::HealthPolicy::default(),
            webhook_urls: Vec::new(),
            admission: admission::AdmissionConfig::default(),
        }
    }
}

#[derive(Debug)]
struct WorkerEntry {
    info: WorkerInfo,
    /// The live control stream's session id.
    session: Option<u64>,
    /// Monotonic time of the last WorkerChanged event (rate limit).
    last_event_at: u64,
    /// What its telemetry measured, for admission (None: nothing yet).
    measured: Option<admission::Measured>,
}

/// A recording and what is known of it beyond the stored row.
#[derive(Debug, Clone)]
struct Recording {
    row: RecordingRow,
    segments: Vec<ManifestSegment>,
    bytes_live: u64,
    fps_milli: u32,
    repeated_permille: u16,
    last_frame_at: Option<u64>,
    /// Why it is not placed, when it waits.
    waiting: Option<String>,
    /// A worker to avoid at the next placement (it just failed).
    avoid: Option<WorkerName>,
    /// Its worker did not report it in a hello at this (monotonic) time.
    suspect_since: Option<u64>,
    /// A make-before-break move in progress.
    moving: Option<moves::Move>,
    /// Placements that were current before a move and are still stopping.
    old_placements: Vec<(WorkerName, recfleet_protocol::Epoch)>,
    /// Monotonic time it reached an end state (retention counts from it).
    ended_mono: Option<u64>,
    /// Age of the oldest chunk its worker has not stored yet, ms.
    upload_lag_ms: u64,
    /// Monotonic time its manifest was last written while it records.
    manifest_written: u64,
    /// What its capture says (from its worker's telemetry).
    health: recfleet_protocol::Health,
    /// Its sound level, dBFS.
    level_db: Option<i16>,
    /// Its second copy (redundancy 2).
    copy: Option<copies::Copy>,
    /// No second copy is placed before this (monotonic).
    copy_rest_until: u64,
    /// The worker its last second copy failed on (not asked again next).
    copy_avoid: Option<WorkerName>,
}

impl Recording {
    fn new(row: RecordingRow) -> Self {
        Recording {
            row,
            segments: Vec::new(),
            bytes_live: 0,
            fps_milli: 0,
            repeated_permille: 0,
            last_frame_at: None,
            waiting: None,
            avoid: None,
            suspect_since: None,
            moving: None,
            old_placements: Vec::new(),
            ended_mono: None,
            upload_lag_ms: 0,
            manifest_written: 0,
            health: recfleet_protocol::Health::default(),
            level_db: None,
            copy: None,
            copy_rest_until: 0,
            copy_avoid: None,
        }
    }

    /// What it holds on workers, for the capacity index.
    fn holds(&self) -> Vec<Hold> {
        let cost = self.row.spec.cost;
        let mut out = Vec::new();
        if self.row.state.holds_capacity() {
            if let Some(w) = &self.row.worker {
                out.push(Hold {
                    worker: w.clone(),
                    cost,
                    incoming: false,
                });
            }
        }
        if let Some(m) = &self.moving {
            out.push(Hold {
                worker: m.to.clone(),
                cost,
                incoming: true,
            });
        }
        if let Some(c) = &self.copy {
            // It holds capacity; the recording runs "on" its first copy.
            out.push(Hold {
                worker: c.worker.clone(),
                cost,
                incoming: true,
            });
        }
        out
    }

    fn waits(&self) -> bool {
        matches!(
            self.row.state,
            RecordingState::Pending | RecordingState::Interrupted
        )
    }
}

/// A PingWorker waiting for its pong.
#[derive(Debug)]
struct PendingPing {
    reply: ReplyTo,
    deadline: u64,
}

/// The coordinator's state.
pub struct Fleet {
    /// Who acts in the request being handled (its events carry it).
    actor: Option<String>,
    settings: FleetSettings,
    version: String,
    seq: u64,
    workers: BTreeMap<WorkerName, WorkerEntry>,
    recordings: BTreeMap<RecordingId, Recording>,
    /// Capacity per worker, kept current.
    placements: Placements,
    /// What a recording costs, learned from the fleet's telemetry.
    cost: admission::CostModel,
    /// Recordings waiting for a worker, in request order.
    queue: BTreeSet<(u64, RecordingId)>,
    /// Recordings with a move in progress.
    moving: BTreeSet<RecordingId>,
    /// Recordings a worker did not report in its hello.
    suspects: BTreeSet<RecordingId>,
    /// Recordings that should have a second copy and have none.
    uncopied: BTreeSet<RecordingId>,
    /// Recordings with a second copy.
    copied: BTreeSet<RecordingId>,
    /// Ended recordings by monotonic end time (retention).
    ended: BTreeSet<(u64, RecordingId)>,
    /// Why the head of the queue waits (shown for every waiting recording
    /// the scheduler did not reach).
    blocked: Option<String>,
    /// Monotonic time the core started (reconnect grace).
    started: Option<u64>,
    grace_over: bool,
    /// Capacity was freed or a recording began to wait: schedule at the
    /// end of the turn.
    dirty: bool,
    pings: HashMap<u64, PendingPing>,
    next_ping: u64,
    drains: BTreeMap<WorkerName, moves::Drain>,
    /// Old placements of completed moves, stopped at the given monotonic time.
    pending_stops: Vec<(RecordingId, WorkerName, recfleet_protocol::Epoch, u64)>,
    metrics: CoordinatorMetrics,
    now: Now,
    out: Vec<Effect>,
    /// Recordings found in Finalizing at start-up: their outputs are made
    /// again at the first turn (the run that started it is gone).
    unfinished: Vec<RecordingId>,
    /// Recordings in Finalizing, with the monotonic time their outputs were
    /// last asked for: asked again every [`FINALIZE_ASK_EVERY_MS`] (a full
    /// queue or a lost answer never leaves one in Finalizing for good; the
    /// writer ignores an ask for one it is already making).
    finalizing: BTreeMap<RecordingId, u64>,
}

/// See [`Fleet::finalizing`].
const FINALIZE_ASK_EVERY_MS: u64 = 60_000;

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("workers", &self.workers.len())
            .field("recordings", &self.recordings.len())
            .field("queue", &self.queue.len())
            .finish()
    }
}

impl Fleet {
    /// A fleet from what the store holds: `boot` numbers its events (the
    /// boot count in the high bits keeps them increasing across restarts
    /// without a write per event); `loaded` are the recordings still in
    /// memory's window (not ended, or ended within the retention) with
    /// their segments.
    pub fn new(
        settings: FleetSettings,
        boot: u64,
        loaded: Vec<(RecordingRow, Vec<ManifestSegment>)>,
    ) -> Fleet {
        let mut fleet = Fleet {
            actor: None,
            cost: admission::CostModel::new(settings.admission.clone()),
            settings,
            version: env!("CARGO_PKG_VERSION").to_string(),
            seq: boot << 40,
            workers: BTreeMap::new(),
            recordings: BTreeMap::new(),
            placements: Placements::default(),
            queue: BTreeSet::new(),
            moving: BTreeSet::new(),
            suspects: BTreeSet::new(),
            uncopied: BTreeSet::new(),
            copied: BTreeSet::new(),
            ended: BTreeSet::new(),
            blocked: None,
            started: None,
            grace_over: false,
            dirty: false,
            pings: HashMap::new(),
            next_ping: 1,
            drains: BTreeMap::new(),
            pending_stops: Vec::new(),
            metrics: CoordinatorMetrics::default(),
            now: Now::default(),
            out: Vec::new(),
            unfinished: Vec::new(),
            finalizing: BTreeMap::new(),
        };
        for (row, segments) in loaded {
            fleet.restore(&row.spec.id.clone(), Some((row, segments)));
        }
        // Loading is not news: subscribers start from a snapshot.
        fleet.out.clear();
        fleet.unfinished = fleet
            .recordings
            .values()
            .filter(|r| r.row.state == RecordingState::Finalizing)
            .map(|r| r.row.spec.id.clone())
            .collect();
        fleet
    }

    /// One turn: applies `input` at `now` and returns what must happen.
    pub fn handle(&mut self, now: Now, input: Input) -> Vec<Effect> {
        self.now = now;
        self.started.get_or_insert(now.mono_ms);
        for id in std::mem::take(&mut self.unfinished) {
            self.request_outputs(&id);
        }
        match input {
            Input::Hello {
                session,
                address,
                hello,
                reply,
            } => {
                let result = self.worker_hello(session, address, hello);
                self.out.push(Effect::Welcome { to: reply, result });
                self.schedule();
            }
            Input::FromWorker {
                session,
                name,
                msg,
                rtt_us,
            } => self.worker_message(session, &name, msg, rtt_us),
            Input::WorkerClosed { session, name, why } => self.worker_closed(session, &name, &why),
            Input::Request {
                identity,
                req,
                reply,
            } => self.request(&identity, req, reply),
            Input::Refused { actor, what } => self.refused(&actor, &what),
            Input::Tick => self.tick(),
            Input::Finalized {
                id,
                outputs,
                stored,
            } => self.finalized(&id, outputs, stored),
        }
        if std::mem::take(&mut self.dirty) {
            self.schedule();
            self.dirty = false;
        }
        std::mem::take(&mut self.out)
    }

    /// Replaces a recording by what the store holds (`None`: it is not
    /// there): after a turn whose writes failed, memory goes back to the
    /// store's truth, and at start-up.
    pub fn restore(
        &mut self,
        id: &RecordingId,
        stored: Option<(RecordingRow, Vec<ManifestSegment>)>,
    ) {
        let old = self.recordings.remove(id);
        match stored {
            Some((row, segments)) => {
                let mut r = Recording::new(row);
                r.last_frame_at = segments.iter().filter_map(|s| s.last_frame_at).max();
                r.segments = segments;
                if let Some(old) = &old {
                    // Live facts the store never held.
                    r.bytes_live = old.bytes_live;
                    r.fps_milli = old.fps_milli;
                    r.repeated_permille = old.repeated_permille;
                    r.health = old.health.clone();
                    r.level_db = old.level_db;
                    // The second copy is not in the store: it still runs.
                    r.copy = old.copy.clone();
                    r.copy_rest_until = old.copy_rest_until;
                    r.copy_avoid = old.copy_avoid.clone();
                }
                self.recordings.insert(id.clone(), r);
            }
            None => {
                if let Some(old) = &old {
                    self.queue.remove(&(old.row.created_at, id.clone()));
                }
            }
        }
        if let Some(old) = &old {
            if let Some(at) = old.ended_mono {
                self.ended.remove(&(at, id.clone()));
            }
        }
        self.reindex(id);
        if self.recordings.contains_key(id) {
            self.changed(id);
        }
    }

    /// Keeps every index current after a change of recording `id`: the
    /// capacity it holds, the queue, moves, suspects, retention. Every
    /// mutation of a recording's state, worker or move goes through here.
    fn reindex(&mut self, id: &RecordingId) {
        let Some(r) = self.recordings.get_mut(id) else {
            self.placements.set_holds(id, Vec::new());
            self.moving.remove(id);
            self.suspects.remove(id);
            self.uncopied.remove(id);
            self.copied.remove(id);
            return;
        };
        let key = (r.row.created_at, id.clone());
        if r.waits() {
            self.dirty |= self.queue.insert(key);
        } else {
            self.queue.remove(&key);
            r.waiting = None;
        }
        if r.moving.is_some() {
            self.moving.insert(id.clone());
        } else {
            self.moving.remove(id);
        }
        if r.suspect_since.is_some() {
            self.suspects.insert(id.clone());
        } else {
            self.suspects.remove(id);
        }
        if r.wants_copy() {
            self.dirty |= self.uncopied.insert(id.clone());
        } else {
            self.uncopied.remove(id);
        }
        if r.copy.is_some() {
            self.copied.insert(id.clone());
        } else {
            self.copied.remove(id);
        }
        if r.row.state.is_terminal() && r.ended_mono.is_none() {
            r.ended_mono = Some(self.now.mono_ms);
            self.ended.insert((self.now.mono_ms, id.clone()));
        }
        let holds = r.holds();
        let old = self.placements.holds_of(id);
        if old == holds.as_slice() {
            return;
        }
        // The workers whose holds change: their offers are recomputed, so
        // that what admission says of them (takes N more) is current.
        let touched: BTreeSet<WorkerName> = old
            .iter()
            .chain(holds.iter())
            .map(|h| h.worker.clone())
            .collect();
        self.dirty |= self.placements.set_holds(id, holds);
        for w in &touched {
            self.worker_touched(w);
        }
    }

    /// Keeps a worker's eligibility in the capacity index current: its
    /// slots, within what its measured cost leaves (admission).
    fn worker_touched(&mut self, name: &WorkerName) {
        let held = self.placements.used(name);
        let cost = &self.cost;
        let cap = self.workers.get_mut(name).and_then(|w| {
            let (units, admission) = cost.offer(w.info.capacity, held, w.measured.as_ref());
            w.info.admission = admission;
            (w.session.is_some() && w.info.state == WorkerState::Ready).then_some(units)
        });
        self.placements.set_eligible(name, cap);
    }

    /// Periodic work: deadlines of pings, vanished recordings, moves and
    /// drains, the reconnect grace, retention, and placing what waits.
    fn tick(&mut self) {
        self.expire_pings();
        let now = self.now.mono_ms;
        let due: Vec<RecordingId> = self
            .finalizing
            .iter()
            .filter(|(_, at)| now.saturating_sub(**at) >= FINALIZE_ASK_EVERY_MS)
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            self.request_outputs(&id);
        }
        self.interrupt_vanished();
        self.tick_moves();
        self.tick_copies();
        let since_start = self
            .now
            .mono_ms
            .saturating_sub(self.started.unwrap_or(self.now.mono_ms));
        if !self.grace_over && since_start >= self.settings.reconnect_grace.as_millis() as u64 {
            self.grace_over = true;
            self.interrupt_orphaned_recordings();
        }
        self.forget_old();
        self.schedule();
    }

    /// Finished recordings past the retention leave memory; the store keeps
    /// them (`record show` and paged lists read them there).
    fn forget_old(&mut self) {
        let keep = self.settings.retention.as_millis() as u64;
        while let Some((at, id)) = self.ended.first().cloned() {
            if self.now.mono_ms.saturating_sub(at) < keep {
                break;
            }
            self.ended.pop_first();
            if self
                .recordings
                .get(&id)
                .is_some_and(|r| r.old_placements.is_empty())
            {
                self.recordings.remove(&id);
                self.reindex(&id);
            }
        }
    }

    fn expire_pings(&mut self) {
        let now = self.now.mono_ms;
        let late: Vec<u64> = self
            .pings
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in late {
            if let Some(p) = self.pings.remove(&id) {
                self.out.push(Effect::Reply {
                    to: p.reply,
                    response: ConsoleResponse::Error(WireError::new(
                        recfleet_protocol::ErrorCode::Unavailable,
                        format!(
                            "the worker did not answer within {} ms",
                            self.settings.forward_deadline.as_millis()
                        ),
                    )),
                });
            }
        }
    }

    fn emit(&mut self, kind: EventKind) {
        self.seq += 1;
        self.out.push(Effect::Event(Event {
            seq: self.seq,
            at: self.now.wall_ms,
            kind,
            by: self.actor.clone(),
        }));
    }

    fn persist(&mut self, id: &RecordingId) {
        if let Some(r) = self.recordings.get(id) {
            self.out.push(Effect::PutRecording(r.row.clone()));
        }
    }

    /// Queues a frame for `worker`'s live session; false if it has none.
    fn send_to(&mut self, worker: &WorkerName, msg: CoordinatorMessage) -> bool {
        match self.workers.get(worker).and_then(|w| w.session) {
            Some(session) => {
                self.out.push(Effect::Send { session, msg });
                true
            }
            None => false,
        }
    }

    /// Capacity units in use on a worker.
    fn used_on(&self, name: &WorkerName) -> u32 {
        self.placements.used(name)
    }

    /// Recordings whose current placement is on a worker.
    fn recordings_on(&self, name: &WorkerName) -> Vec<RecordingId> {
        self.placements.on(name)
    }

    /// Whether a recording is in memory (else it is read from the store).
    pub fn holds(&self, id: &RecordingId) -> bool {
        self.recordings.contains_key(id)
    }

    /// Recordings in memory (tests and metrics).
    pub fn recordings_in_memory(&self) -> usize {
        self.recordings.len()
    }

    /// Effects produced outside a turn (by [`Fleet::restore`]).
    pub fn take_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.out)
    }

    /// The metrics the driver updates too.
    pub fn metrics(&self) -> &CoordinatorMetrics {
        &self.metrics
    }

    /// The current event number.
    pub fn seq(&self) -> u64 {
        self.seq
    }
}
