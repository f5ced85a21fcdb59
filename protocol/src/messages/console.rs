//! Console (operator, viewer, platform backend) <-> coordinator.

use serde::{Deserialize, Serialize};

use super::info::{CoordinatorInfo, RecordingDetail, RecordingInfo, WebhookDelivery, WorkerInfo};
use super::UnixMillis;
use crate::error::WireError;
use crate::ids::{RecordingId, WorkerName};
use crate::spec::RecordingSpec;
use crate::state::RecordingState;

/// How a drain treats the worker's recordings.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DrainMode {
    /// Let them run to their natural end.
    Wait,
    /// Move each to another worker, make-before-break.
    Migrate,
}

/// One request on its own stream; the answer is one [`ConsoleResponse`].
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ConsoleRequest {
    /// Who the coordinator sees (role and name from the certificate).
    WhoAmI,
    /// No-op round trip to the coordinator.
    Ping {
        /// Echoed back.
        payload: Vec<u8>,
    },
    /// No-op round trip through the coordinator to a worker and back.
    PingWorker {
        /// The worker.
        worker: WorkerName,
        /// Echoed back.
        payload: Vec<u8>,
    },
    /// All workers.
    ListWorkers,
    /// Recordings, optionally only those in the given states, oldest first.
    /// Answered with at most [`LIST_MAX`] of them (the first page); a client
    /// that wants them all asks [`ConsoleRequest::ListRecordingsPage`].
    ListRecordings {
        /// Empty means every state.
        states: Vec<RecordingState>,
    },
    /// One recording with its segments and manifest.
    ShowRecording {
        /// The recording.
        id: RecordingId,
    },
    /// Start a recording (idempotent by id). Operator role.
    StartRecording(RecordingSpec),
    /// Stop a recording. Operator role.
    StopRecording {
        /// The recording.
        id: RecordingId,
    },
    /// Drain a worker. Operator role.
    Drain {
        /// The worker.
        worker: WorkerName,
        /// Wait or migrate.
        mode: DrainMode,
        /// After this many seconds, what remains is migrated; `None` = default.
        deadline_secs: Option<u32>,
        /// Migrate now, whatever the mode (Nomad's `-force`).
        force: bool,
    },
    /// Return a drained worker to service. Operator role.
    Undrain {
        /// The worker.
        worker: WorkerName,
        /// End the drain but keep the worker ineligible for new work.
        keep_ineligible: bool,
    },
    /// Move a recording, make-before-break. Operator role.
    Reassign {
        /// The recording.
        id: RecordingId,
        /// The target; `None` lets the scheduler pick.
        to: Option<WorkerName>,
    },
    /// One page of recordings, oldest first (by request time, then id). The
    /// answer is [`ConsoleResponse::RecordingsPage`]; its `next` token asks
    /// for the page after it. Finished recordings are listed from the store
    /// long after they have left the coordinator's memory.
    ListRecordingsPage {
        /// Empty means every state.
        states: Vec<RecordingState>,
        /// At most this many (0: [`LIST_DEFAULT`]; capped at [`LIST_MAX`]).
        limit: u32,
        /// The `next` token of the previous page; `None` for the first.
        after: Option<String>,
    },
    /// The webhook deliveries of one recording's events, oldest first; the
    /// answer is [`ConsoleResponse::WebhookDeliveries`]. A request of its
    /// own (not a field of [`RecordingDetail`]) so that the wire format of
    /// `ShowRecording` stays as it is.
    ShowWebhooks {
        /// The recording.
        id: RecordingId,
    },
    /// The coordinators of the fleet: who leads, under which term, and
    /// when each was last heard of. Answer: [`ConsoleResponse::Coordinators`].
    ListCoordinators,
    /// The latest events about one recording or one worker (both: either),
    /// newest last, at most `limit` (0: 100). Answer: [`ConsoleResponse::History`].
    History {
        /// Events naming this recording.
        recording: Option<RecordingId>,
        /// Events naming this worker.
        worker: Option<WorkerName>,
        /// At most this many.
        limit: u32,
    },
    /// The audit trail, newest last: every action and every refused
    /// request, with who and when (operator role). Answer:
    /// [`ConsoleResponse::Audit`].
    Audit {
        /// At most this many of the latest entries (0: 100, at most 1000).
        limit: u32,
    },
}

/// Recordings in one page when the client does not say.
pub const LIST_DEFAULT: u32 = 500;
/// The most recordings in one page: 1,000 recordings with 2 KB URLs stay
/// far below the frame limit.
pub const LIST_MAX: u32 = 1000;

impl ConsoleRequest {
    /// Whether the request changes the fleet (and so needs the operator role).
    pub fn is_action(&self) -> bool {
        matches!(
            self,
            ConsoleRequest::StartRecording(_)
                | ConsoleRequest::StopRecording { .. }
                | ConsoleRequest::Drain { .. }
                | ConsoleRequest::Undrain { .. }
                | ConsoleRequest::Reassign { .. }
        )
    }

    /// Whether only an operator may ask it, though it changes nothing.
    pub fn needs_operator(&self) -> bool {
        self.is_action() || matches!(self, ConsoleRequest::Audit { .. })
    }
}

/// The answer to a [`ConsoleRequest`].
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ConsoleResponse {
    /// The request failed.
    Error(WireError),
    /// Answer to `WhoAmI`.
    Identity {
        /// `coordinator`, `agent`, `operator` or `viewer`.
        role: String,
        /// The certificate's name.
        name: String,
        /// The coordinator's build version.
        coordinator_version: String,
    },
    /// Answer to a ping.
    Pong {
        /// The payload, echoed.
        payload: Vec<u8>,
    },
    /// Answer to `ListWorkers`.
    Workers(Vec<WorkerInfo>),
    /// Answer to `ListRecordings`.
    Recordings(Vec<RecordingInfo>),
    /// Answer to `ShowRecording`.
    Recording(Box<RecordingDetail>),
    /// Answer to `StartRecording`.
    Started {
        /// The recording (new or existing).
        recording: RecordingInfo,
        /// False when the id already existed with the same spec.
        created: bool,
    },
    /// An action was accepted; what happens next arrives as events.
    Accepted {
        /// What the coordinator will do, in one sentence.
        message: String,
    },
    /// Answer to `ListRecordingsPage`.
    RecordingsPage {
        /// This page, oldest first.
        recordings: Vec<RecordingInfo>,
        /// The token of the next page; `None` on the last one.
        next: Option<String>,
    },
    /// Answer to `ShowWebhooks`: one entry per event and URL (empty when
    /// no webhook is configured).
    WebhookDeliveries(Vec<WebhookDelivery>),
    /// Answer to `ListCoordinators`, by name.
    Coordinators(Vec<CoordinatorInfo>),
    /// Answer to `History`, oldest first.
    History(Vec<Event>),
    /// Answer to `Audit`, oldest first.
    Audit(Vec<AuditEntry>),
}

/// One entry of the audit trail.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// When, wall clock at the coordinator.
    pub at: UnixMillis,
    /// Who (`operator/alice`).
    pub actor: String,
    /// `start`, `stop`, `drain`, `undrain`, `reassign`, or `refused` for a
    /// request the actor's role does not allow.
    pub action: String,
    /// On what (a recording, a worker), or what was refused.
    pub target: String,
}

/// Frames on a subscription stream, coordinator -> console.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
// Events are the frames that come by the thousand and each is dropped once
// applied: kept inline rather than boxed (one allocation less per event).
#[allow(clippy::large_enum_variant)]
pub enum SubscriptionFrame {
    /// The whole state; events that follow have `seq` greater than this one.
    Snapshot {
        /// The event number this snapshot includes.
        seq: u64,
        /// Every worker.
        workers: Vec<WorkerInfo>,
        /// Every recording not yet ended, plus recently ended ones.
        recordings: Vec<RecordingInfo>,
    },
    /// One change.
    Event(Event),
    /// The subscriber fell behind and `missed` events were dropped; a fresh
    /// snapshot follows.
    Lagged {
        /// How many events were dropped.
        missed: u64,
    },
    /// The subscription was refused (e.g. an agent certificate).
    Refused(WireError),
    /// More of the snapshot just sent, when it is too large for one frame:
    /// add these to it. Events follow the last part.
    SnapshotMore {
        /// More workers.
        workers: Vec<WorkerInfo>,
        /// More recordings.
        recordings: Vec<RecordingInfo>,
    },
}

/// A numbered change in the fleet.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Strictly increasing per coordinator run... and across restarts (stored).
    pub seq: u64,
    /// Wall clock at the coordinator.
    pub at: UnixMillis,
    /// What happened.
    pub kind: EventKind,
    /// Who caused it, when a person did (`operator/alice`): the events of
    /// an action carry its actor; those of the fleet's own doing, none.
    #[serde(default)]
    pub by: Option<String>,
}

/// What happened.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A worker connected (or reconnected); its current info.
    WorkerUp(WorkerInfo),
    /// A worker's info changed (state, load, drain progress).
    WorkerChanged(WorkerInfo),
    /// A worker disconnected cleanly (it said so).
    WorkerLeft {
        /// The worker.
        name: WorkerName,
    },
    /// A worker stopped answering and was declared lost.
    WorkerLost {
        /// The worker.
        name: WorkerName,
    },
    /// A recording's info changed (state, placement, progress).
    RecordingChanged(RecordingInfo),
    /// A drain's progress: what is still running and why.
    DrainProgress {
        /// The worker.
        worker: WorkerName,
        /// Recordings still on it.
        remaining: Vec<RecordingId>,
        /// One sentence on where the drain stands.
        message: String,
        /// True once every slot process group of the worker is reaped.
        complete: bool,
    },
    /// A note for the operator (a refused reassign, no capacity, ...).
    Notice {
        /// The recording concerned, if any.
        recording: Option<RecordingId>,
        /// The worker concerned, if any.
        worker: Option<WorkerName>,
        /// What happened.
        message: String,
    },
    /// What a recording's capture says of it changed (see [`crate::Health`]).
    HealthChanged {
        /// The recording.
        recording: RecordingId,
        /// The worker capturing it.
        worker: WorkerName,
        /// The new health.
        health: crate::health::Health,
    },
}

impl EventKind {
    /// The recordings an event is about: a recording's own events, a
    /// notice's, a worker's events (the recordings it runs) and a drain's
    /// progress (the recordings it has left).
    pub fn recordings(&self) -> Vec<&RecordingId> {
        match self {
            EventKind::RecordingChanged(r) => vec![&r.id],
            EventKind::DrainProgress { remaining, .. } => remaining.iter().collect(),
            EventKind::Notice { recording, .. } => recording.iter().collect(),
            EventKind::WorkerUp(w) | EventKind::WorkerChanged(w) => w.recordings.iter().collect(),
            EventKind::WorkerLeft { .. } | EventKind::WorkerLost { .. } => Vec::new(),
            EventKind::HealthChanged { recording, .. } => vec![recording],
        }
    }

    /// The workers an event is about: the worker itself, its drain, the
    /// worker of a recording event.
    pub fn workers(&self) -> Vec<&WorkerName> {
        match self {
            EventKind::WorkerUp(w) | EventKind::WorkerChanged(w) => vec![&w.name],
            EventKind::WorkerLeft { name } | EventKind::WorkerLost { name } => vec![name],
            EventKind::RecordingChanged(r) => r.worker.iter().collect(),
            EventKind::DrainProgress { worker, .. } => vec![worker],
            EventKind::Notice { worker, .. } => worker.iter().collect(),
            EventKind::HealthChanged { worker, .. } => vec![worker],
        }
    }
}
