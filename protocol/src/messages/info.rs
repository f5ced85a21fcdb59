//! The fleet as consoles see it: workers and recordings.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::UnixMillis;
use crate::ids::{Epoch, RecordingId, WorkerName};
use crate::manifest::Manifest;
use crate::spec::RecordingSpec;
use crate::state::RecordingState;

/// A worker's state in the registry.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerState {
    /// Connected and taking work.
    Ready,
    /// Taking no new work; its recordings end or move.
    Draining,
    /// Connected but kept out of placement (drained with keep-ineligible).
    Ineligible,
    /// Silent past the timeout; its recordings were placed elsewhere.
    Lost,
    /// Left cleanly.
    Gone,
}

impl WorkerState {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerState::Ready => "ready",
            WorkerState::Draining => "draining",
            WorkerState::Ineligible => "ineligible",
            WorkerState::Lost => "lost",
            WorkerState::Gone => "gone",
        }
    }
}

/// A coordinator, as listed (several share one PostgreSQL; one leads).
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoordinatorInfo {
    /// Its name (`--name`).
    pub name: String,
    /// Where workers and consoles reach it.
    pub address: String,
    /// `leader` or `standby` (a leader whose lease expired is `standby`).
    pub role: String,
    /// The term it leads, or the last it saw as a standby.
    pub term: u64,
    /// The leader's lease ends in this many ms (negative: ended); none for
    /// a standby.
    pub lease_expires_in_ms: Option<i64>,
    /// Its last heartbeat, ms ago (on the database's clock).
    pub seen_ms_ago: u64,
}

/// A worker, as listed.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerInfo {
    /// Its name (from its certificate).
    pub name: WorkerName,
    /// Its state.
    pub state: WorkerState,
    /// The address it connects from.
    pub address: String,
    /// Its build version.
    pub version: String,
    /// Capacity units offered.
    pub capacity: u32,
    /// Capacity units in use.
    pub used: u32,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// CPU in thousandths of a core (worker and children).
    pub cpu_millicores: u32,
    /// Resident memory, bytes.
    pub rss_bytes: u64,
    /// Round-trip time of its QUIC connection, microseconds.
    pub rtt_us: u32,
    /// When it connected (this session).
    pub connected_at: UnixMillis,
    /// Last message received.
    pub last_seen: UnixMillis,
    /// Recordings it runs now.
    pub recordings: Vec<RecordingId>,
    /// Bytes of chunks waiting on the worker's disk for upload.
    #[serde(default)]
    pub upload_buffer_bytes: u64,
    /// Its upload buffer is over its limit (the store is slow or away).
    #[serde(default)]
    pub upload_buffer_full: bool,
    /// Its warm pool and the pool's idle cost (included in `cpu_millicores`
    /// and `rss_bytes`).
    #[serde(default)]
    pub ready: super::worker::ReadySlots,
    /// Admission by measured cost: its headroom and how many more
    /// recordings it takes now.
    #[serde(default)]
    pub admission: Admission,
    /// The machine it runs on (the second copy of a recording goes to
    /// another host when there is one).
    #[serde(default)]
    pub host: String,
}

/// What the scheduler makes of a worker's measured load.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Admission {
    /// Measured (false: the worker reports no capacity, or admission by
    /// cost is off: slots alone count).
    pub measured: bool,
    /// CPU the worker may use, thousandths of a core.
    pub cpu_capacity_millicores: u32,
    /// CPU it uses now (smoothed), thousandths of a core.
    pub cpu_used_millicores: u32,
    /// CPU still free for recordings below the target utilization, after
    /// the estimates reserved for recordings not measured yet.
    pub cpu_headroom_millicores: u32,
    /// Memory available on its machine, bytes.
    pub memory_available_bytes: u64,
    /// What one more recording is expected to cost, thousandths of a core
    /// (the fleet's measured average).
    pub estimate_millicores: u32,
    /// Recordings it takes now, beyond those it runs.
    pub takes: u32,
    /// Why it takes no more than `takes` (empty: its slots are the limit).
    pub limit: String,
}

/// A recording, as listed.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordingInfo {
    /// Its id.
    pub id: RecordingId,
    /// Its state.
    pub state: RecordingState,
    /// The page.
    pub url: String,
    /// The worker running its current placement, if any.
    pub worker: Option<WorkerName>,
    /// The current placement.
    pub epoch: Epoch,
    /// When it was requested.
    pub created_at: UnixMillis,
    /// First captured frame of the whole recording.
    pub started_at: Option<UnixMillis>,
    /// When it reached an end state.
    pub ended_at: Option<UnixMillis>,
    /// Bytes written over all segments.
    pub bytes: u64,
    /// Frames encoded per second over the last 5 s, thousandths.
    pub fps_milli: u32,
    /// Frames of those 5 s that repeat the previous picture (a busy
    /// worker), per mille.
    #[serde(default)]
    pub repeated_permille: u16,
    /// Slot restarts over all placements.
    pub restarts: u32,
    /// Number of segment files.
    pub segments: u32,
    /// Why it failed or was interrupted, if it did.
    pub reason: Option<String>,
    /// How far its chunks' upload is behind, ms (0: all stored).
    #[serde(default)]
    pub upload_lag_ms: u64,
    /// What its capture says of its picture, sound and page (unknown when
    /// it is not running).
    #[serde(default)]
    pub health: crate::health::Health,
    /// Sound level of the last half second, dBFS.
    #[serde(default)]
    pub level_db: Option<i16>,
    /// Its second copy (redundancy 2): the worker recording it too, and
    /// whether that copy has captured its first frame. (Boxed: most
    /// recordings have none, and infos ride in every event.)
    #[serde(default)]
    #[cfg_attr(test, proptest(strategy = "copy_strategy()"))]
    pub copy: Option<Box<CopyInfo>>,
}

/// The second copy of a recording.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyInfo {
    /// The worker recording it.
    pub worker: WorkerName,
    /// Its placement.
    pub epoch: Epoch,
    /// It has captured its first frame (until then a death of the first
    /// copy's worker still costs a failover's gap).
    pub capturing: bool,
}

/// A recording with everything known of it.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordingDetail {
    /// The summary.
    pub info: RecordingInfo,
    /// The request.
    pub spec: RecordingSpec,
    /// Segments, gaps and overlaps so far (final once completed).
    pub manifest: Manifest,
}

/// Where one webhook delivery (one event to one URL) stands.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookState {
    /// Not delivered yet; it is retried until the retry window ends.
    Pending,
    /// A 2xx answer was received.
    Delivered,
    /// The retry window ended without a 2xx answer.
    Failed,
}

impl WebhookState {
    /// The lowercase name, as in JSON output and in the store.
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookState::Pending => "pending",
            WebhookState::Delivered => "delivered",
            WebhookState::Failed => "failed",
        }
    }
}

impl std::fmt::Display for WebhookState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One webhook event sent (or being sent) to one URL.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookDelivery {
    /// The event id (the receiver's idempotency key).
    pub event_id: String,
    /// `recording.started`, `recording.completed`, ...
    pub event_type: String,
    /// Where it goes.
    pub url: String,
    /// Where it stands.
    pub state: WebhookState,
    /// Attempts made so far.
    pub attempts: u32,
    /// Why the last attempt failed, if it did.
    pub last_error: Option<String>,
    /// The event happened at.
    pub created_at: UnixMillis,
    /// A 2xx answer came at.
    pub delivered_at: Option<UnixMillis>,
    /// The next attempt is due at (pending only).
    pub next_attempt_at: Option<UnixMillis>,
}

/// A flat strategy for `RecordingInfo.copy`: the derived one nests deep
/// enough, inside the console responses that hold many infos, to overflow a
/// test thread's stack while the strategy is built.
#[cfg(test)]
fn copy_strategy() -> impl proptest::strategy::Strategy<Value = Option<Box<CopyInfo>>> {
    use proptest::prelude::*;
    proptest::option::of(
        ("[a-z][a-z0-9-]{0,20}", any::<u64>(), any::<bool>()).prop_map(|(w, e, capturing)| {
            Box::new(CopyInfo {
                worker: WorkerName::new(w).expect("a valid name"),
                epoch: Epoch(e),
                capturing,
            })
        }),
    )
}
