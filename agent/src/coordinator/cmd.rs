//! What the QUIC side asks of the fleet driver, and the bounds on asking.
//! The server holds a [`FleetTx`]; the driver thread owns the store and the
//! fleet core and answers on oneshot channels.

use std::time::Duration;

use recfleet_certs::Identity;
use recfleet_protocol::{
    ConsoleRequest, ConsoleResponse, CoordinatorMessage, Event, SubscriptionFrame, WireError,
    WorkerHello, WorkerMessage, WorkerName,
};
use tokio::sync::{broadcast, mpsc, oneshot};

/// Commands queued for the driver at most: the connections wait (requests)
/// or drop (telemetry) when it is full, so a burst never grows memory.
pub const FLEET_QUEUE: usize = 16_384;
/// Frames queued towards one worker at most; a worker that falls this far
/// behind is disconnected (and its recordings fail over).
pub const WORKER_OUTBOX: usize = 1024;
/// How long a request waits for room in the driver's queue, then for its
/// answer, before the client is told the coordinator is busy.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(10);

/// The sender side of the driver's queue.
pub type FleetTx = mpsc::Sender<Cmd>;
/// Where the driver sends frames for one worker session.
pub type WorkerTx = mpsc::Sender<CoordinatorMessage>;

/// A subscriber's start: the snapshot as frames (a `Snapshot`, then
/// `SnapshotMore` parts, each well below the frame limit) and the live
/// events after it.
#[derive(Debug)]
pub struct Subscription {
    /// The snapshot's frames, in order.
    pub frames: Vec<SubscriptionFrame>,
    /// Events numbered after the snapshot.
    pub events: broadcast::Receiver<Event>,
}

/// What a connection asks of the fleet.
#[derive(Debug)]
pub enum Cmd {
    /// A worker's hello on a new control stream.
    Hello {
        /// Session id (one per control stream).
        session: u64,
        /// Its address.
        address: String,
        /// What it said.
        hello: WorkerHello,
        /// Where to send it commands.
        tx: WorkerTx,
        /// Accepted, or why not.
        reply: oneshot::Sender<Result<(), WireError>>,
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
    /// A worker's control stream ended (closed, failed, or silent past the
    /// limit: the session task judges silence on its own clock, so a busy
    /// driver never declares a live worker lost).
    WorkerClosed {
        /// Session id.
        session: u64,
        /// The worker.
        name: WorkerName,
        /// Why, for the log.
        why: String,
    },
    /// A console request (authorized already).
    Request {
        /// Who asks.
        identity: Identity,
        /// The request.
        req: ConsoleRequest,
        /// The answer.
        reply: oneshot::Sender<ConsoleResponse>,
    },
    /// A request refused for the asker's role, or a connection refused in
    /// its handshake, to audit.
    Refused {
        /// Who asked (`viewer/bob`), or where from when the handshake did
        /// not say who (`unauthenticated@203.0.113.9`).
        actor: String,
        /// What was refused.
        what: String,
    },
    /// A new event subscriber.
    Subscribe {
        /// The snapshot and the live events after it.
        reply: oneshot::Sender<Subscription>,
    },
    /// A Prometheus scrape.
    Metrics {
        /// The text exposition.
        reply: oneshot::Sender<String>,
    },
    /// The outputs of a recording in Finalizing are made (or not).
    Finalized {
        /// The recording.
        id: recfleet_protocol::RecordingId,
        /// What was made.
        outputs: recfleet_protocol::Outputs,
        /// What the destination holds of its segments.
        stored: Vec<crate::output::finalize::StoredSegment>,
    },
    /// Readiness probe: `Err(why)` while the store refuses writes.
    Ready {
        /// The answer.
        reply: oneshot::Sender<Result<(), String>>,
    },
}
