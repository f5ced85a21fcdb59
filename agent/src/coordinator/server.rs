//! The coordinator's QUIC side: accepts connections, authorizes each stream
//! by the certificate's role, and bridges streams to the fleet driver.
//!
//! Everything here is bounded: requests wait a bounded time for the driver
//! ([`REQUEST_DEADLINE`]); telemetry is dropped rather than queued when the
//! driver is behind; reply bytes held at once are capped by budgets
//! ([`ServerLimits`]) and every reply or event write has a timeout; a worker
//! is judged silent on its session's own clock, never the driver's.

mod budget;
mod events;
mod query;
mod replies;
pub mod standby;
mod subscription;
mod watch;
mod worker_session;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use quinn::{Connection, Endpoint, RecvStream, SendStream, VarInt};
use recfleet_certs::{Identity, Role};
use recfleet_protocol::egress::UrlPolicy;
use recfleet_protocol::error::close;
use recfleet_protocol::frame::{self, FrameError};
use recfleet_protocol::quic::{self, LenientFrame, TransportError};
use recfleet_protocol::{
    ConsoleRequest, ConsoleResponse, CoordinatorMessage, ErrorCode, OpenStream, SubscriptionFrame,
    WireError, WorkerGone, WorkerHello, WorkerMessage, WorkerName,
};
use serde::Serialize;
use tokio::sync::{broadcast, mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use self::budget::{ConnectionBudget, GlobalBudget, Reserved};
use self::replies::*;
use self::subscription::*;
use self::watch::{Liveness, UndecodableRun, MAX_UNDECODABLE_IN_A_ROW};
use self::worker_session::*;
use super::cmd::{Cmd, FleetTx, Subscription, REQUEST_DEADLINE, WORKER_OUTBOX};

static SESSIONS: AtomicU64 = AtomicU64::new(1);

/// The next worker session id. They start at a random number in each
/// coordinator process: a dead worker's guard reports the session of its
/// last welcome, which must never name the session of another process of
/// that worker on a coordinator started since.
pub(super) fn next_session() -> u64 {
    static BASE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let base = *BASE.get_or_init(|| fastrand::u64(1..u64::MAX / 2));
    base + SESSIONS.fetch_add(1, Ordering::Relaxed)
}
static TELEMETRY_DROPPED: AtomicU64 = AtomicU64::new(0);

/// Telemetry frames dropped since start because the driver's queue was full
/// (for the metrics).
pub fn telemetry_dropped() -> u64 {
    TELEMETRY_DROPPED.load(Ordering::Relaxed)
}

/// How long a new stream may take to send its first frame.
const FIRST_FRAME_TIMEOUT: Duration = Duration::from_secs(10);
/// Frames read from a worker and not yet handed to the driver, per session:
/// when the session waits for room in the driver's queue, the reader stops
/// reading and QUIC flow control holds the worker back.
const WORKER_INBOX: usize = 64;

/// The server's bounds. `Default` gives the documented values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// Encoded reply bytes held at once by the whole coordinator (replies
    /// and subscription snapshots waiting to be written or being written).
    /// A reply that does not fit is replaced by a small `unavailable` error
    /// "reply budget exhausted: read your replies". Default 64 MiB; 0 turns
    /// the limit off.
    pub reply_budget: usize,
    /// The same, for one connection (all its streams). Default 8 MiB; 0
    /// turns the limit off. A reply larger than a whole budget is charged
    /// the whole budget, so it goes when nothing else is held.
    pub connection_reply_budget: usize,
    /// Requests (and subscription starts) of one connection that are at
    /// the driver or whose answer is being encoded, at most; more wait
    /// their turn, within the request deadline, then get `unavailable` "the
    /// coordinator is busy; retry". One console's burst thus cannot fill
    /// the driver's queue ahead of everyone else, and answers in hand before
    /// they are charged to the budgets stay few. Default 8; at least 1.
    pub connection_requests: usize,
    /// The same for all connections together. Default 64; at least 1.
    pub requests: usize,
    /// How long writing one reply (or a refusal, or a frame to a worker) may
    /// take; then the stream is reset with `UNRESPONSIVE` (6), or the worker
    /// session ends. Default 10 s.
    pub reply_write_timeout: Duration,
    /// How long writing one subscription frame may take; then the
    /// subscriber is cut off: its stream is reset with `UNRESPONSIVE` (6),
    /// and a console reconnects and resyncs from a fresh snapshot.
    /// Default 5 s.
    pub event_write_timeout: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            reply_budget: 64 << 20,
            connection_reply_budget: 8 << 20,
            connection_requests: 8,
            requests: 64,
            reply_write_timeout: Duration::from_secs(10),
            event_write_timeout: Duration::from_secs(5),
        }
    }
}

/// What every connection task shares.
#[derive(Debug)]
struct Shared {
    fleet: FleetTx,
    telemetry_ms: u32,
    /// The leader's term, told to workers (0 without a lease).
    term: u64,
    silence: Duration,
    limits: ServerLimits,
    budget: GlobalBudget,
    /// Turns at the driver, all connections together.
    turns: Arc<Semaphore>,
    /// Workers' connections, for queries relayed to them.
    connections: query::WorkerConnections,
    /// The URL policy, told to workers: their egress proxies enforce it.
    egress: UrlPolicy,
    /// Handshake refusals audited this minute.
    handshake_audits: HandshakeAudits,
}

/// Accepts connections until `shutdown` fires. `silence`: a worker that
/// sends no frame at all for this long (telemetry comes every
/// `telemetry_ms`) is disconnected as lost; the caller passes the QUIC idle
/// timeout + 1 s.
#[allow(clippy::too_many_arguments)]
pub async fn serve(
    endpoint: Endpoint,
    fleet: FleetTx,
    telemetry_ms: u32,
    term: u64,
    silence: Duration,
    limits: ServerLimits,
    egress: UrlPolicy,
    shutdown: CancellationToken,
) {
    let shared = Arc::new(Shared {
        fleet,
        telemetry_ms,
        term,
        silence,
        limits,
        budget: GlobalBudget::new(limits.reply_budget),
        turns: Arc::new(Semaphore::new(limits.requests.max(1))),
        connections: query::WorkerConnections::default(),
        egress,
        handshake_audits: HandshakeAudits::default(),
    });
    loop {
        let incoming = tokio::select! {
            i = endpoint.accept() => match i {
                Some(i) => i,
                None => break,
            },
            _ = shutdown.cancelled() => break,
        };
        let shared = shared.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let remote = incoming.remote_address();
            match quic::accept(incoming).await {
                Ok(peer) => {
                    tracing::debug!(%remote, identity = %peer.identity, "connection");
                    connection(peer.connection, Arc::new(peer.identity), shared, shutdown).await;
                }
                Err(e) => {
                    tracing::warn!(%remote, error = %e, "connection refused");
                    // Refusals, not a client that went away mid-handshake.
                    if matches!(
                        e,
                        TransportError::Refused(_) | TransportError::VersionMismatch(_)
                    ) {
                        audit_handshake_refusal(&shared, remote, &e.to_string());
                    }
                }
            }
        });
    }
    endpoint.close(
        VarInt::from_u32(close::SHUTDOWN),
        b"coordinator shutting down",
    );
}

async fn connection(
    conn: Connection,
    identity: Arc<Identity>,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) {
    let budget = shared
        .budget
        .connection(shared.limits.connection_reply_budget);
    let turns = Turns {
        own: Arc::new(Semaphore::new(shared.limits.connection_requests.max(1))),
        all: shared.turns.clone(),
    };
    if identity.role().can_read_fleet() {
        // A console makes many requests at once; a worker needs one stream
        // and keeps the small initial allowance (quinn holds state for each).
        conn.set_max_concurrent_bi_streams(VarInt::from_u32(quic::CONSOLE_STREAMS));
    }
    loop {
        let (send, recv) = tokio::select! {
            s = conn.accept_bi() => match s {
                Ok(s) => s,
                Err(_) => break,
            },
            _ = shutdown.cancelled() => break,
        };
        let (conn, identity, shared) = (conn.clone(), identity.clone(), shared.clone());
        let per_conn = PerConnection {
            budget: budget.clone(),
            turns: turns.clone(),
        };
        tokio::spawn(async move {
            stream(conn, identity, &shared, per_conn, send, recv).await;
        });
    }
}

/// What the streams of one connection share.
#[derive(Debug)]
struct PerConnection {
    /// Its reply bytes.
    budget: ConnectionBudget,
    /// Its turns at the driver.
    turns: Turns,
}

/// Where a connection's turns at the driver come from.
#[derive(Debug, Clone)]
struct Turns {
    /// [`ServerLimits::connection_requests`].
    own: Arc<Semaphore>,
    /// [`ServerLimits::requests`], shared.
    all: Arc<Semaphore>,
}

/// A turn at the driver, given back on drop.
#[derive(Debug)]
struct Turn {
    _own: OwnedSemaphorePermit,
    _all: OwnedSemaphorePermit,
}

async fn stream(
    conn: Connection,
    identity: Arc<Identity>,
    shared: &Shared,
    PerConnection { budget, turns }: PerConnection,
    mut send: SendStream,
    mut recv: RecvStream,
) {
    let reply_timeout = shared.limits.reply_write_timeout;
    let first = match tokio::time::timeout(
        FIRST_FRAME_TIMEOUT,
        quic::read_frame::<OpenStream>(&mut recv),
    )
    .await
    {
        Ok(Ok(Some(first))) => first,
        Ok(Ok(None)) => return,
        Ok(Err(e)) => {
            tracing::warn!(identity = %identity, error = %e, "bad first frame");
            quic::reject_stream(&mut send, &mut recv);
            return;
        }
        Err(_) => {
            quic::reject_stream(&mut send, &mut recv);
            return;
        }
    };
    match first {
        OpenStream::Worker(hello) => {
            if let Err(e) = authorize_worker(&identity, &hello) {
                tracing::warn!(identity = %identity, error = %e.message, "worker refused");
                let what = format!("register as worker {}", hello.name);
                refuse_agent(shared, &identity, &what, e, send).await;
                return;
            }
            worker_session(shared, conn, hello, send, recv).await;
        }
        OpenStream::Request(req) => {
            let until = Instant::now() + REQUEST_DEADLINE;
            let refuse = |e| (encode_small(&ConsoleResponse::Error(e)), None);
            let (bytes, held) = match authorize_request(&identity, &req) {
                Err(e) => {
                    audit_refusal(shared, &identity, request_name(&req));
                    refuse(e)
                }
                Ok(()) => match take_turn(&turns, until).await {
                    Err(e) => refuse(e),
                    Ok(turn) => {
                        let identity = (*identity).clone();
                        let response = ask(&shared.fleet, until, |reply| Cmd::Request {
                            identity,
                            req,
                            reply,
                        })
                        .await
                        .unwrap_or_else(ConsoleResponse::Error);
                        let admitted = admit_reply(response, budget).await;
                        drop(turn);
                        admitted
                    }
                },
            };
            if write_bytes(&mut send, &bytes, reply_timeout).await.is_ok() {
                let _ = send.finish();
            }
            drop(held);
        }
        OpenStream::Subscribe => {
            if !identity.role().can_read_fleet() {
                audit_refusal(shared, &identity, "watch the fleet");
                let refused = SubscriptionFrame::Refused(forbidden(&identity, "watch the fleet"));
                if write_small(&mut send, &refused, reply_timeout)
                    .await
                    .is_ok()
                {
                    let _ = send.finish();
                }
                return;
            }
            subscription(shared, &budget, &turns, send).await;
        }
        OpenStream::Query(q) => query::relay(shared, &identity, q, send).await,
        OpenStream::Events(req) => events::answer(shared, &identity, req, send).await,
        OpenStream::WorkerGone(gone) => worker_gone(shared, &identity, gone, send).await,
    }
}

/// Waits until `until` for a turn at the driver: one of the connection's,
/// then one of all connections' (both queues are first come, first
/// served). A turn is held from asking until the answer is encoded and
/// charged to the budgets, so few answers are ever in hand uncharged.
async fn take_turn(turns: &Turns, until: Instant) -> Result<Turn, WireError> {
    async fn one(sem: &Arc<Semaphore>, until: Instant) -> Result<OwnedSemaphorePermit, WireError> {
        match tokio::time::timeout_at(until, sem.clone().acquire_owned()).await {
            Err(_) => Err(busy()),
            Ok(Err(_)) => Err(shutting_down()),
            Ok(Ok(permit)) => Ok(permit),
        }
    }
    let own = one(&turns.own, until).await?;
    let all = one(&turns.all, until).await?;
    Ok(Turn {
        _own: own,
        _all: all,
    })
}

/// Asks the driver: waits for room in its queue, then for its answer, both
/// before `until`. The error is the answer for the client.
async fn ask<T>(
    fleet: &FleetTx,
    until: Instant,
    cmd: impl FnOnce(oneshot::Sender<T>) -> Cmd,
) -> Result<T, WireError> {
    let (reply, answer) = oneshot::channel();
    match tokio::time::timeout_at(until, fleet.send(cmd(reply))).await {
        Err(_) => return Err(busy()),
        Ok(Err(_)) => return Err(shutting_down()),
        Ok(Ok(())) => {}
    }
    match tokio::time::timeout_at(until, answer).await {
        Err(_) => Err(busy()),
        Ok(Err(_)) => Err(shutting_down()),
        Ok(Ok(v)) => Ok(v),
    }
}

fn busy() -> WireError {
    WireError::new(ErrorCode::Unavailable, "the coordinator is busy; retry")
}

fn shutting_down() -> WireError {
    WireError::new(ErrorCode::Unavailable, "the coordinator is shutting down")
}

fn budget_exhausted() -> WireError {
    WireError::new(
        ErrorCode::Unavailable,
        "reply budget exhausted: read your replies",
    )
}

/// Logs a request refused for the asker's role and puts it in the audit
/// trail. Never waits: when the driver is full the entry is dropped (the
/// log line stays), so a flood of refused requests cannot hold anything up.
fn audit_refusal(shared: &Shared, identity: &Identity, what: &str) {
    tracing::warn!(identity = %identity, what, "refused: the role does not allow it");
    let cmd = Cmd::Refused {
        actor: identity.to_string(),
        what: what.to_string(),
    };
    if shared.fleet.try_send(cmd).is_err() {
        tracing::warn!(identity = %identity, what, "refusal not audited: the coordinator is busy");
    }
}

/// Puts a connection refused in its handshake (no certificate, another
/// CA, expired, no or two identities, another version) in the audit trail
/// as `unauthenticated@IP`. Anyone who can send a packet can cause one, so
/// at most [`HANDSHAKE_AUDITS_PER_MINUTE`] a minute are written; the rest
/// are counted in the log (each is logged anyway, with its reason).
fn audit_handshake_refusal(shared: &Shared, remote: std::net::SocketAddr, why: &str) {
    let written = shared.handshake_audits.admit(Instant::now());
    match written {
        Admit::Yes { suppressed } => {
            if suppressed > 0 {
                tracing::warn!(suppressed, "handshake refusals not audited in the last minute (over the limit; each was logged)");
            }
            let cmd = Cmd::Refused {
                actor: format!("unauthenticated@{}", remote.ip()),
                what: format!("connect: {why}"),
            };
            if shared.fleet.try_send(cmd).is_err() {
                tracing::warn!(%remote, "handshake refusal not audited: the coordinator is busy");
            }
        }
        Admit::No => {}
    }
}

/// Handshake refusals audited per minute at most.
pub const HANDSHAKE_AUDITS_PER_MINUTE: u32 = 30;

/// A fixed one-minute window of handshake audits.
#[derive(Debug, Default)]
struct HandshakeAudits(std::sync::Mutex<AuditWindow>);

#[derive(Debug, Default)]
struct AuditWindow {
    start: Option<Instant>,
    written: u32,
    suppressed: u64,
}

enum Admit {
    Yes { suppressed: u64 },
    No,
}

impl HandshakeAudits {
    fn admit(&self, now: Instant) -> Admit {
        let mut w = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let mut carried = 0;
        if w.start
            .is_none_or(|s| now.duration_since(s) >= Duration::from_secs(60))
        {
            carried = std::mem::take(&mut w.suppressed);
            *w = AuditWindow {
                start: Some(now),
                written: 0,
                suppressed: 0,
            };
        }
        if w.written < HANDSHAKE_AUDITS_PER_MINUTE {
            w.written += 1;
            Admit::Yes {
                suppressed: carried,
            }
        } else {
            w.suppressed += 1;
            Admit::No
        }
    }
}

/// What a refused request asked, for the audit trail.
fn request_name(req: &ConsoleRequest) -> &'static str {
    match req {
        ConsoleRequest::StartRecording(_) => "start a recording",
        ConsoleRequest::StopRecording { .. } => "stop a recording",
        ConsoleRequest::Drain { .. } => "drain a worker",
        ConsoleRequest::Undrain { .. } => "undrain a worker",
        ConsoleRequest::Reassign { .. } => "reassign a recording",
        ConsoleRequest::Audit { .. } => "read the audit trail",
        _ => "use the console protocol",
    }
}

fn forbidden(identity: &Identity, what: &str) -> WireError {
    let hint = match identity.role() {
        Role::Agent => "agent certificates may only speak the worker protocol",
        Role::Viewer => "a viewer may only watch; use an operator certificate to act",
        Role::Coordinator => "a coordinator certificate is a server identity",
        Role::Operator => "",
    };
    WireError::new(
        ErrorCode::Forbidden,
        format!("{identity} may not {what}: {hint}"),
    )
}

/// Only an agent certificate registers a worker, and only under its own name.
fn authorize_worker(identity: &Identity, hello: &WorkerHello) -> Result<(), WireError> {
    authorize_agent(identity, &hello.name, "register as")
}

/// Only the worker's own agent certificate speaks for worker `name`.
fn authorize_agent(identity: &Identity, name: &WorkerName, what: &str) -> Result<(), WireError> {
    if identity.role() != Role::Agent {
        return Err(WireError::new(
            ErrorCode::Forbidden,
            format!("{identity} may not {what} a worker: only agent certificates may"),
        ));
    }
    if identity.name() != name.as_str() {
        return Err(WireError::new(
            ErrorCode::Forbidden,
            format!(
                "certificate agent/{} may not {what} worker \"{name}\"",
                identity.name(),
            ),
        ));
    }
    Ok(())
}

/// Audits a refused worker stream and tells the peer why.
async fn refuse_agent(
    shared: &Shared,
    identity: &Identity,
    what: &str,
    e: WireError,
    mut send: SendStream,
) {
    audit_refusal(shared, identity, what);
    let refused = CoordinatorMessage::Refused(e);
    if write_small(&mut send, &refused, shared.limits.reply_write_timeout)
        .await
        .is_ok()
    {
        let _ = send.finish();
    }
}

/// A worker's guard reports the worker dead: its session ends now, as if
/// its connection had timed out (the driver ignores a session that is no
/// longer current: a new process of the worker may have connected since).
async fn worker_gone(shared: &Shared, identity: &Identity, gone: WorkerGone, mut send: SendStream) {
    if let Err(e) = authorize_agent(identity, &gone.name, "report the death of") {
        let what = format!("report worker {} dead", gone.name);
        refuse_agent(shared, identity, &what, e, send).await;
        return;
    }
    tracing::info!(worker = %gone.name, session = gone.session, "the worker's guard reports its process dead");
    let cmd = Cmd::WorkerClosed {
        session: gone.session,
        name: gone.name,
        why: "its guard saw the worker process die".to_string(),
    };
    if shared.fleet.send(cmd).await.is_ok() {
        let _ = send.finish();
    }
}

/// Viewers read, operators also act, nobody else speaks the console protocol.
pub fn authorize_request(identity: &Identity, req: &ConsoleRequest) -> Result<(), WireError> {
    let role = identity.role();
    if !role.can_read_fleet() {
        return Err(forbidden(identity, "use the console protocol"));
    }
    if req.is_action() && !role.can_operate() {
        return Err(forbidden(identity, "change the fleet"));
    }
    if req.needs_operator() && !role.can_operate() {
        return Err(forbidden(identity, "read the audit trail"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use recfleet_protocol::{RecordingId, WorkerName};

    fn id(role: Role, name: &str) -> Identity {
        Identity::new(role, name).unwrap()
    }

    #[test]
    fn handshake_refusals_are_audited_at_a_bounded_rate() {
        let audits = HandshakeAudits::default();
        let t0 = Instant::now();
        let admitted = (0..100)
            .filter(|_| matches!(audits.admit(t0), Admit::Yes { .. }))
            .count();
        assert_eq!(admitted, HANDSHAKE_AUDITS_PER_MINUTE as usize);
        // A minute on: audited again, and told how many were not.
        match audits.admit(t0 + Duration::from_secs(61)) {
            Admit::Yes { suppressed } => {
                assert_eq!(suppressed, 100 - u64::from(HANDSHAKE_AUDITS_PER_MINUTE))
            }
            Admit::No => panic!("a new minute audits again"),
        }
    }

    #[test]
    fn roles_decide_what_may_be_asked() {
        let stop = ConsoleRequest::StopRecording {
            id: RecordingId::new("r").unwrap(),
        };
        let list = ConsoleRequest::ListWorkers;
        assert!(authorize_request(&id(Role::Operator, "o"), &stop).is_ok());
        assert!(authorize_request(&id(Role::Viewer, "v"), &list).is_ok());
        let e = authorize_request(&id(Role::Viewer, "v"), &stop).unwrap_err();
        assert_eq!(e.code, ErrorCode::Forbidden);
        assert!(
            e.message.contains("viewer/v may not change the fleet"),
            "{}",
            e.message
        );
        let e = authorize_request(&id(Role::Agent, "w1"), &list).unwrap_err();
        assert!(
            e.message.contains("only speak the worker protocol"),
            "{}",
            e.message
        );
    }

    #[test]
    fn only_an_agent_registers_and_only_as_itself() {
        let hello = WorkerHello {
            name: WorkerName::new("w1").unwrap(),
            version: "t".into(),
            capacity: 1,
            labels: Default::default(),
            running: vec![],
            draining: false,
            host: String::new(),
        };
        assert!(authorize_worker(&id(Role::Agent, "w1"), &hello).is_ok());
        assert!(authorize_worker(&id(Role::Agent, "w2"), &hello).is_err());
        assert!(authorize_worker(&id(Role::Operator, "w1"), &hello).is_err());
        assert!(authorize_worker(&id(Role::Viewer, "w1"), &hello).is_err());
    }

    fn pong(len: usize) -> ConsoleResponse {
        ConsoleResponse::Pong {
            payload: vec![7; len],
        }
    }

    fn decoded(bytes: &[u8]) -> ConsoleResponse {
        frame::decode::<ConsoleResponse>(bytes).unwrap().0
    }

    #[test]
    fn a_reply_over_budget_is_replaced_by_a_small_error() {
        let global = GlobalBudget::new(64 << 20);
        let conn = global.connection(10_000);
        let (bytes, held) = admit(&pong(6_000), &conn, ConsoleResponse::Error);
        assert!(held.is_some());
        assert_eq!(decoded(&bytes), pong(6_000));
        // The first is still held: the second does not fit beside it.
        let (bytes, none) = admit(&pong(6_000), &conn, ConsoleResponse::Error);
        assert!(none.is_none());
        assert!(bytes.len() < 100, "{}", bytes.len());
        match decoded(&bytes) {
            ConsoleResponse::Error(e) => {
                assert_eq!(e.code, ErrorCode::Unavailable);
                assert_eq!(e.message, "reply budget exhausted: read your replies");
            }
            other => panic!("{other:?}"),
        }
        drop(held);
        let (_, again) = admit(&pong(6_000), &conn, ConsoleResponse::Error);
        assert!(again.is_some(), "the budget is back once the write ended");
    }

    #[test]
    fn a_reply_too_large_for_a_frame_is_an_error_not_a_panic() {
        let conn = GlobalBudget::new(0).connection(0);
        let (bytes, held) = admit(
            &pong(frame::MAX_FRAME_LEN + 1),
            &conn,
            ConsoleResponse::Error,
        );
        assert!(held.is_none());
        match decoded(&bytes) {
            ConsoleResponse::Error(e) => {
                assert_eq!(e.code, ErrorCode::Internal);
                assert!(e.message.contains("oversized frame"), "{}", e.message);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_snapshot_is_charged_whole_and_written_in_order() {
        let global = GlobalBudget::new(1 << 20);
        let conn = global.connection(1 << 20);
        let frames = vec![
            SubscriptionFrame::Snapshot {
                seq: 9,
                workers: vec![],
                recordings: vec![],
            },
            SubscriptionFrame::SnapshotMore {
                workers: vec![],
                recordings: vec![],
            },
        ];
        let (parts, held) = admit_snapshot(frames, &conn).unwrap();
        assert_eq!(parts.len(), 2);
        assert!(matches!(
            frame::decode::<SubscriptionFrame>(&parts[0]).unwrap().0,
            SubscriptionFrame::Snapshot { seq: 9, .. }
        ));
        assert!(matches!(
            frame::decode::<SubscriptionFrame>(&parts[1]).unwrap().0,
            SubscriptionFrame::SnapshotMore { .. }
        ));
        drop(held);
        let tiny = GlobalBudget::new(1 << 20).connection(4);
        let _busy = tiny.reserve(1).unwrap();
        let e = admit_snapshot(vec![SubscriptionFrame::Lagged { missed: 1 }], &tiny).unwrap_err();
        assert_eq!(e.message, "reply budget exhausted: read your replies");
    }

    #[tokio::test]
    async fn a_busy_driver_makes_requests_fail_fast_and_plainly() {
        let ping = || ConsoleRequest::Ping { payload: vec![] };
        let request = |reply| Cmd::Request {
            identity: id(Role::Viewer, "v"),
            req: ping(),
            reply,
        };
        // The queue is full and nobody takes from it.
        let (fleet, mut driver) = mpsc::channel(1);
        let (filler, _) = oneshot::channel();
        fleet.try_send(request(filler)).unwrap();
        let e = ask(&fleet, soon(), request).await.unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (ErrorCode::Unavailable, "the coordinator is busy; retry")
        );
        // Queued but never answered: busy too.
        let _ = driver.recv().await;
        let e = ask(&fleet, soon(), request).await.unwrap_err();
        assert_eq!(e.message, "the coordinator is busy; retry");
        // Answered.
        let answering = tokio::spawn(async move {
            let _ = driver.recv().await; // the unanswered one
            if let Some(Cmd::Request { req, reply, .. }) = driver.recv().await {
                let ConsoleRequest::Ping { payload } = req else {
                    unreachable!()
                };
                let _ = reply.send(ConsoleResponse::Pong { payload });
            }
            driver
        });
        let r = ask(&fleet, Instant::now() + Duration::from_secs(5), request)
            .await
            .unwrap();
        assert_eq!(r, ConsoleResponse::Pong { payload: vec![] });
        // The driver is gone.
        drop(answering.await.unwrap());
        let e = ask(&fleet, soon(), request).await.unwrap_err();
        assert_eq!(e.message, "the coordinator is shutting down");
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_millis(50)
    }

    #[tokio::test]
    async fn a_connection_waits_for_its_turn_within_the_deadline() {
        let all = Arc::new(Semaphore::new(3));
        let conn = |n| Turns {
            own: Arc::new(Semaphore::new(n)),
            all: all.clone(),
        };
        let (c1, c2) = (conn(2), conn(2));
        let (a, b) = (
            take_turn(&c1, soon()).await.unwrap(),
            take_turn(&c1, soon()).await.unwrap(),
        );
        // The connection has used its turns; another still has one...
        let e = take_turn(&c1, soon()).await.unwrap_err();
        assert_eq!(e.message, "the coordinator is busy; retry");
        let c = take_turn(&c2, soon()).await.unwrap();
        // ...and then all turns are taken.
        let e = take_turn(&c2, soon()).await.unwrap_err();
        assert_eq!(e.message, "the coordinator is busy; retry");
        assert_eq!(
            c2.own.available_permits(),
            1,
            "a refused turn holds nothing"
        );
        drop(a);
        let d = take_turn(&c1, soon()).await.unwrap();
        drop((b, c, d));
        assert_eq!(all.available_permits(), 3, "turns are given back");
        all.close();
        let e = take_turn(&c1, soon()).await.unwrap_err();
        assert_eq!(e.message, "the coordinator is shutting down");
    }

    #[test]
    fn only_lists_and_details_are_encoded_off_the_runtime() {
        assert!(may_be_large(&ConsoleResponse::Workers(vec![])));
        assert!(may_be_large(&ConsoleResponse::RecordingsPage {
            recordings: vec![],
            next: None
        }));
        assert!(!may_be_large(&pong(10)));
    }

    #[tokio::test]
    async fn telemetry_is_dropped_when_the_driver_is_full_and_nothing_else_is() {
        let name = WorkerName::new("w1").unwrap();
        let from = |msg| Cmd::FromWorker {
            session: 1,
            name: name.clone(),
            msg,
            rtt_us: 0,
        };
        let telemetry = WorkerMessage::Telemetry(recfleet_protocol::WorkerTelemetry {
            at: 0,
            cpu_millicores: 0,
            rss_bytes: 0,
            slots: vec![],
            ..Default::default()
        });
        let pong = WorkerMessage::Pong {
            id: 1,
            payload: vec![],
        };
        assert!(droppable(&telemetry));
        assert!(!droppable(&pong));
        let (fleet, mut driver) = mpsc::channel(1);
        let before = telemetry_dropped();
        forward(&fleet, from(telemetry.clone()), true)
            .await
            .unwrap();
        forward(&fleet, from(telemetry.clone()), true)
            .await
            .unwrap();
        assert_eq!(telemetry_dropped(), before + 1);
        // A frame that must not be lost waits for room.
        let waiting = forward(&fleet, from(pong), false);
        tokio::pin!(waiting);
        assert!(
            tokio::time::timeout(Duration::from_millis(50), &mut waiting)
                .await
                .is_err(),
            "it waited"
        );
        assert!(matches!(
            driver.recv().await,
            Some(Cmd::FromWorker {
                msg: WorkerMessage::Telemetry(_),
                ..
            })
        ));
        waiting.await.unwrap();
        assert!(matches!(
            driver.recv().await,
            Some(Cmd::FromWorker {
                msg: WorkerMessage::Pong { .. },
                ..
            })
        ));
        drop(driver);
        assert!(forward(&fleet, from(telemetry), true).await.is_err());
    }
}
