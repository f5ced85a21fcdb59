//! Worker <-> coordinator: the control stream.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::UnixMillis;
use crate::egress::UrlPolicy;
use crate::error::WireError;
use crate::ids::{Epoch, RecordingId, WorkerName};
use crate::manifest::{Chunk, SegmentEndReason};
use crate::spec::RecordingSpec;

/// The worker's first frame: who it is, what it offers, what it already runs
/// (after a coordinator restart or a partition, so the two can reconcile).
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerHello {
    /// Must equal the name in the agent certificate.
    pub name: WorkerName,
    /// Build version of the worker (`recfleet-agent --version`).
    pub version: String,
    /// Capacity units it offers.
    pub capacity: u32,
    /// Labels that recordings may require.
    pub labels: BTreeMap<String, String>,
    /// Segments it is running now.
    pub running: Vec<RunningSegment>,
    /// Whether it is draining itself (SIGTERM) and takes no new work.
    pub draining: bool,
    /// The machine it runs on (a node name, a hostname): the two copies of
    /// a recording with redundancy 2 go to different hosts when they can.
    #[serde(default)]
    pub host: String,
}

/// A segment a worker runs, as reported in hello and reconciled by epoch.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunningSegment {
    /// The recording.
    pub recording: RecordingId,
    /// The placement the worker holds.
    pub epoch: Epoch,
    /// The file part within the placement (restarts make new parts).
    pub part: u32,
    /// When the placement started on the worker.
    pub started_at: UnixMillis,
    /// The last captured frame, if any.
    pub last_frame_at: Option<UnixMillis>,
}

/// Worker -> coordinator, after the hello.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WorkerMessage {
    /// Periodic load and per-slot progress.
    Telemetry(WorkerTelemetry),
    /// A segment part's processes are up and its file is open.
    SegmentStarted {
        /// The recording.
        recording: RecordingId,
        /// The placement.
        epoch: Epoch,
        /// The file part.
        part: u32,
        /// The segment file, relative to the output root.
        file: String,
        /// Wall clock of the start.
        at: UnixMillis,
    },
    /// The encoder produced the first frame of a part: the moment capture is
    /// real (make-before-break waits for this).
    FirstFrame {
        /// The recording.
        recording: RecordingId,
        /// The placement.
        epoch: Epoch,
        /// The file part.
        part: u32,
        /// Wall clock of the first frame.
        at: UnixMillis,
    },
    /// A part ended (the placement may go on in a new part after a restart).
    SegmentEnded(SegmentReport),
    /// An object of a segment (its init or a chunk) is in the recording's
    /// destination: the store confirmed the upload.
    ChunkStored(ChunkReport),
    /// The placement is over on this worker: stopped, finished, or given up.
    PlacementEnded {
        /// The recording.
        recording: RecordingId,
        /// The placement.
        epoch: Epoch,
        /// Why it ended.
        reason: SegmentEndReason,
    },
    /// Answer to [`CoordinatorMessage::Ping`].
    Pong {
        /// The ping's id.
        id: u64,
        /// The ping's payload, echoed.
        payload: Vec<u8>,
    },
    /// The worker starts draining itself (it got SIGTERM).
    Draining {
        /// Seconds it will wait for its recordings to move before it exits.
        grace_secs: u32,
    },
}

/// Load and progress, about once a second.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct WorkerTelemetry {
    /// Wall clock of the sample.
    pub at: UnixMillis,
    /// CPU of the worker and its children, in thousandths of one core.
    pub cpu_millicores: u32,
    /// Resident memory of the worker and its children, bytes.
    pub rss_bytes: u64,
    /// Per running slot.
    pub slots: Vec<SlotProgress>,
    /// Bytes of closed chunks waiting on this worker's disk for upload.
    #[serde(default)]
    pub upload_buffer_bytes: u64,
    /// The upload buffer is over its limit (the store is slow or away):
    /// recordings go on, chunks wait on disk.
    #[serde(default)]
    pub upload_buffer_full: bool,
    /// Its warm pool: ready slots and what they cost while they wait.
    #[serde(default)]
    pub ready: ReadySlots,
    /// What the machine offers, for admission by measured cost.
    #[serde(default)]
    pub capacity: MachineCapacity,
}

/// What a worker's machine offers: the CPU it may use and the memory
/// still available. `cpu_millicores` 0: not measured (admission then
/// counts slots only).
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct MachineCapacity {
    /// CPU the worker may use, thousandths of a core (its CPUs, its
    /// cgroup's quota or its setting).
    pub cpu_millicores: u32,
    /// Memory available on the machine now (MemAvailable), bytes.
    pub memory_available_bytes: u64,
}

/// A worker's warm pool: slots started before a recording asks (display,
/// sound, ChromeDriver and a blank browser), and their idle cost.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ReadySlots {
    /// Slots ready now.
    pub ready: u32,
    /// Slots the worker keeps ready when it can (0: no pool).
    pub target: u32,
    /// CPU of the ready slots' processes while they wait, thousandths of a
    /// core.
    pub cpu_millicores: u32,
    /// Their resident memory, bytes.
    pub rss_bytes: u64,
}

/// Progress of one slot.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SlotProgress {
    /// The recording.
    pub recording: Option<RecordingId>,
    /// The placement.
    pub epoch: Epoch,
    /// The current file part.
    pub part: u32,
    /// Frames encoded in the current part.
    pub frames: u64,
    /// Frames encoded per second over the last 5 s, thousandths.
    pub fps_milli: u32,
    /// Frames of those 5 s that repeat the previous picture (the grab came
    /// late: a busy machine), per mille.
    #[serde(default)]
    pub repeated_permille: u16,
    /// Bytes written, all parts of the placement.
    pub bytes: u64,
    /// Captured media time of the current part, ms.
    pub media_ms: u64,
    /// Restarts of the slot in this placement.
    pub restarts: u32,
    /// Wall clock of the last frame seen.
    pub last_frame_at: Option<UnixMillis>,
    /// How far the store is behind: age of the oldest closed chunk not yet
    /// stored, ms (0: everything closed is stored).
    #[serde(default)]
    pub upload_lag_ms: u64,
    /// What the capture says of the picture, sound and page.
    #[serde(default)]
    pub health: crate::health::Health,
    /// Sound level of the last half second, dBFS (None: no sound measured).
    #[serde(default)]
    pub level_db: Option<i16>,
    /// CPU of the slot's processes (browser, display, sound, encoder)
    /// over the last second, thousandths of a core.
    #[serde(default)]
    pub cpu_millicores: u32,
    /// Their proportional memory, bytes (sampled every 5 s).
    #[serde(default)]
    pub memory_bytes: u64,
}

/// Media time after which a part's cost counts as measured: a browser's
/// start costs more than its steady state, so admission reserves an
/// estimate until then (Egress reserves for 15 s).
pub const COST_SETTLES_AFTER_MS: u64 = 10_000;

impl SlotProgress {
    /// Whether the slot's cost is measured: its part has captured
    /// [`COST_SETTLES_AFTER_MS`] of media.
    pub fn cost_settled(&self) -> bool {
        self.media_ms >= COST_SETTLES_AFTER_MS
    }
}

/// One stored object of a segment (its init or a chunk), as the worker
/// stored it.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkReport {
    /// The recording.
    pub recording: RecordingId,
    /// The placement.
    pub epoch: Epoch,
    /// The part within the placement.
    pub part: u32,
    /// The object, as the manifest lists it.
    pub chunk: Chunk,
}

/// What a worker knows of a finished part.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentReport {
    /// The recording.
    pub recording: RecordingId,
    /// The placement.
    pub epoch: Epoch,
    /// The file part.
    pub part: u32,
    /// File path relative to the output root.
    pub file: String,
    /// Size in bytes.
    pub bytes: u64,
    /// SHA-256 of the file, hex.
    pub sha256: String,
    /// Wall clock of the part's start.
    pub started_at: UnixMillis,
    /// Wall clock of its end.
    pub ended_at: UnixMillis,
    /// First captured frame, if any.
    pub first_frame_at: Option<UnixMillis>,
    /// Last captured frame, if any.
    pub last_frame_at: Option<UnixMillis>,
    /// Why it ended.
    pub reason: SegmentEndReason,
}

/// Coordinator -> worker.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CoordinatorMessage {
    /// The hello was accepted.
    Welcome {
        /// The coordinator's build version.
        version: String,
        /// How often the worker should send telemetry, ms.
        telemetry_interval_ms: u32,
        /// The leader's term (0: a coordinator without a lease, on SQLite).
        /// A worker that has seen a higher term refuses this coordinator:
        /// it was deposed.
        term: u64,
        /// Where pages may go: the worker's egress proxies enforce it on
        /// every request of every page it records from now on.
        egress: UrlPolicy,
        /// This control stream's session: the worker's guard names it when
        /// it reports the worker's death ([`WorkerGone`]).
        session: u64,
    },
    /// The hello was refused; the stream is closed after this frame.
    Refused(WireError),
    /// Start (or keep) a placement of a recording.
    StartSegment {
        /// The placement's epoch; higher than any before for this recording.
        epoch: Epoch,
        /// What to record.
        spec: RecordingSpec,
        /// Wall clock when the recording should stop by itself (max duration
        /// measured from the recording's first start, not this placement's).
        deadline: Option<UnixMillis>,
    },
    /// Stop a placement. A worker holding an older epoch stops it too.
    StopSegment {
        /// The recording.
        recording: RecordingId,
        /// The placement to stop.
        epoch: Epoch,
        /// Why.
        reason: SegmentEndReason,
    },
    /// A no-op round trip through the worker (status probes, benchmarks).
    Ping {
        /// Echoed in the pong.
        id: u64,
        /// Echoed in the pong.
        payload: Vec<u8>,
    },
    /// Drain state changed for this worker (e.g. an operator drained it).
    DrainState {
        /// Whether it may take new work.
        draining: bool,
    },
}

/// A worker's guard, which outlives it, reports that the worker process
/// died (kill -9, a crash), so that the coordinator places its recordings
/// again at once instead of waiting for the connection's idle timeout. It
/// connects with the worker's own certificate; a session that is no
/// longer the worker's current one is ignored.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerGone {
    /// The worker (must equal the name in the certificate).
    pub name: WorkerName,
    /// The session its welcome named.
    pub session: u64,
}
