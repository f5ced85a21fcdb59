//! The coordinator's QUIC side: accepts connections, authorizes each stream
//! by the certificate's role, and bridges streams to the fleet driver.
//!
//! Everything here is bounded: requests wait a bounded time for the driver
//! ([`REQUEST_DEADLINE`]); telemetry is dropped rather than queued when the
//! driver is behind; reply bytes held at once are capped by budgets
//! ([`ServerLimits`]) and every reply or event write has a timeout; a worker
//! is judged silent on its session's own clock, never the driver's.

mod budget;
mod watch;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use quinn::{Connection, Endpoint, RecvStream, SendStream, VarInt};
use recfleet_certs::{Identity, Role};
use recfleet_protocol::error::close;
use recfleet_protocol::frame::{self, FrameError};
use recfleet_protocol::quic::{self, LenientFrame, TransportError};
use recfleet_protocol::{
    ConsoleRequest, ConsoleResponse, CoordinatorMessage, ErrorCode, OpenStream, SubscriptionFrame,
    WireError, WorkerHello, WorkerMessage,
};
use serde::Serialize;
use tokio::sync::{broadcast, mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use self::budget::{ConnectionBudget, GlobalBudget, Reserved};
use self::watch::{Liveness, UndecodableRun, MAX_UNDECODABLE_IN_A_ROW};
use super::cmd::{Cmd, FleetTx, Subscription, REQUEST_DEADLINE, WORKER_OUTBOX};

static SESSIONS: AtomicU64 = AtomicU64::new(1);
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
    silence: Duration,
    limits: ServerLimits,
    budget: GlobalBudget,
    /// Turns at the driver, all connections together.
    turns: Arc<Semaphore>,
}

/// Accepts connections until `shutdown` fires. `silence`: a worker that
/// sends no frame at all for this long (telemetry comes every
/// `telemetry_ms`) is disconnected as lost; the caller passes the QUIC idle
/// timeout + 1 s.
pub async fn serve(
    endpoint: Endpoint,
    fleet: FleetTx,
    telemetry_ms: u32,
    silence: Duration,
    limits: ServerLimits,
    shutdown: CancellationToken,
) {
    let shared = Arc::new(Shared {
        fleet,
        telemetry_ms,
        silence,
        limits,
        budget: GlobalBudget::new(limits.reply_budget),
        turns: Arc::new(Semaphore::new(limits.requests.max(1))),
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
                Err(e) => tracing::warn!(%remote, error = %e, "connection refused"),
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
                let refused = CoordinatorMessage::Refused(e);
                if write_small(&mut send, &refused, reply_timeout)
                    .await
                    .is_ok()
                {
                    let _ = send.finish();
                }
                return;
            }
            worker_session(shared, conn, hello, send, recv).await;
        }
        OpenStream::Request(req) => {
            let until = Instant::now() + REQUEST_DEADLINE;
            let refuse = |e| (encode_small(&ConsoleResponse::Error(e)), None);
            let (bytes, held) = match authorize_request(&identity, &req) {
                Err(e) => refuse(e),
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

/// Encodes a reply and charges it to the budgets. What cannot be sent as it
/// is (too large for a frame, or over budget) is replaced by a small error
/// made by `error`, which is not charged: one per stream at most, and a
/// connection has at most 1024 streams.
fn admit<T: Serialize>(
    msg: &T,
    budget: &ConnectionBudget,
    error: impl Fn(WireError) -> T,
) -> (Vec<u8>, Option<Reserved>) {
    let refusal = match frame::encode(msg) {
        Ok(bytes) => match budget.reserve(bytes.len()) {
            Ok(held) => return (bytes, Some(held)),
            Err(_) => budget_exhausted(),
        },
        Err(e) => {
            tracing::warn!(error = %e, "a reply could not be encoded");
            too_large(&e)
        }
    };
    (encode_small(&error(refusal)), None)
}

fn too_large(e: &FrameError) -> WireError {
    WireError::new(
        ErrorCode::Internal,
        format!("the answer cannot be sent ({e}); ask for less, e.g. one page at a time"),
    )
}

/// Answers that may be megabytes (lists, pages, a recording's manifest).
fn may_be_large(response: &ConsoleResponse) -> bool {
    matches!(
        response,
        ConsoleResponse::Workers(_)
            | ConsoleResponse::Recordings(_)
            | ConsoleResponse::RecordingsPage { .. }
            | ConsoleResponse::Recording(_)
    )
}

/// [`admit`] for a console answer. Encoding (and freeing) a large answer
/// takes milliseconds of CPU: that runs on the blocking pool, so that the
/// runtime's threads stay free for QUIC and the other streams.
async fn admit_reply(
    response: ConsoleResponse,
    budget: ConnectionBudget,
) -> (Vec<u8>, Option<Reserved>) {
    if !may_be_large(&response) {
        return admit(&response, &budget, ConsoleResponse::Error);
    }
    tokio::task::spawn_blocking(move || admit(&response, &budget, ConsoleResponse::Error))
        .await
        .unwrap_or_else(|e| {
            tracing::error!(error = %e, "encoding a reply failed");
            let e = WireError::new(ErrorCode::Internal, "the answer could not be encoded");
            (encode_small(&ConsoleResponse::Error(e)), None)
        })
}

/// Encodes a frame known to be small (an error, a refusal, an event).
fn encode_small<T: Serialize>(msg: &T) -> Vec<u8> {
    frame::encode(msg).unwrap_or_else(|e| {
        // Not reachable for small messages; an empty write is harmless.
        tracing::error!(error = %e, "a small frame did not encode");
        Vec::new()
    })
}

/// Writes a small frame with a timeout.
async fn write_small<T: Serialize>(
    send: &mut SendStream,
    msg: &T,
    timeout: Duration,
) -> Result<(), String> {
    write_bytes(send, &encode_small(msg), timeout).await
}

/// Writes encoded bytes within `timeout`; a write that does not finish in
/// time resets the stream with `UNRESPONSIVE` (the peer is not reading).
async fn write_bytes(send: &mut SendStream, bytes: &[u8], timeout: Duration) -> Result<(), String> {
    match tokio::time::timeout(timeout, send.write_all(bytes)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => {
            let _ = send.reset(VarInt::from_u32(close::UNRESPONSIVE));
            Err(format!(
                "a frame could not be written within {} s: the peer does not read",
                timeout.as_secs_f32()
            ))
        }
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
    if identity.role() != Role::Agent {
        return Err(WireError::new(
            ErrorCode::Forbidden,
            format!("{identity} may not register as a worker: only agent certificates may"),
        ));
    }
    if identity.name() != hello.name.as_str() {
        return Err(WireError::new(
            ErrorCode::Forbidden,
            format!(
                "certificate agent/{} may not register as worker \"{}\"",
                identity.name(),
                hello.name
            ),
        ));
    }
    Ok(())
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
    Ok(())
}

/// What a worker session's reader hands to the session.
#[derive(Debug)]
enum Inbound {
    /// A frame that decoded.
    Message(WorkerMessage),
    /// The stream is over for reading: why, and whether it broke the
    /// protocol (then the session resets its send side with
    /// `PROTOCOL_ERROR`; the reader has stopped the receive side).
    End { why: String, protocol: bool },
}

/// Does a frame go to the driver even when its queue is full? Telemetry is
/// dropped then (the next one follows in a second); every other frame
/// changes the fleet and waits for room.
fn droppable(msg: &WorkerMessage) -> bool {
    matches!(msg, WorkerMessage::Telemetry(_))
}

/// Hands a worker frame to the driver; `Err` when the driver is gone.
async fn forward(fleet: &FleetTx, cmd: Cmd, droppable: bool) -> Result<(), ()> {
    if !droppable {
        return fleet.send(cmd).await.map_err(|_| ());
    }
    match fleet.try_send(cmd) {
        Ok(()) => Ok(()),
        Err(mpsc::error::TrySendError::Full(_)) => {
            let n = TELEMETRY_DROPPED.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(dropped = n, "the fleet driver is behind: telemetry dropped");
            }
            Ok(())
        }
        Err(mpsc::error::TrySendError::Closed(_)) => Err(()),
    }
}

/// Reads a worker's frames (a frame read is not cancel-safe, so it runs in
/// a task of its own, not in the session's select). Stamps `liveness` at
/// every frame; skips frames that do not decode (a newer worker's
/// variants), and gives the stream up after
/// [`MAX_UNDECODABLE_IN_A_ROW`] of them.
async fn read_worker(
    mut recv: RecvStream,
    name: recfleet_protocol::WorkerName,
    liveness: Arc<Liveness>,
    inbox: mpsc::Sender<Inbound>,
) {
    let mut run = UndecodableRun::default();
    let end = loop {
        match quic::read_frame_lenient::<WorkerMessage>(&mut recv).await {
            Ok(Some(frame)) => {
                liveness.heard(Instant::now());
                match frame {
                    LenientFrame::Message(msg) => {
                        run.decoded();
                        if inbox.send(Inbound::Message(msg)).await.is_err() {
                            return;
                        }
                    }
                    LenientFrame::Undecodable(e) => {
                        let give_up = run.undecodable();
                        tracing::warn!(worker = %name, error = %e, in_a_row = run.len(),
                            "skipped a worker frame that does not decode (a newer worker?)");
                        if give_up {
                            let _ = recv.stop(VarInt::from_u32(close::PROTOCOL_ERROR));
                            break Inbound::End {
                                why: format!(
                                    "protocol error: {MAX_UNDECODABLE_IN_A_ROW} frames in a row did not decode (last: {e})"
                                ),
                                protocol: true,
                            };
                        }
                    }
                }
            }
            Ok(None) => {
                break Inbound::End {
                    why: "the worker closed its control stream".into(),
                    protocol: false,
                }
            }
            Err(TransportError::Frame(e)) => {
                // Framing is broken: the next frame cannot be found.
                let _ = recv.stop(VarInt::from_u32(close::PROTOCOL_ERROR));
                break Inbound::End {
                    why: format!("protocol error: {e}"),
                    protocol: true,
                };
            }
            Err(e) => {
                break Inbound::End {
                    why: e.to_string(),
                    protocol: false,
                }
            }
        }
    };
    let _ = inbox.send(end).await;
}

/// A worker's control stream: the hello, then frames both ways until the
/// stream ends, the driver drops the session, or the worker is silent past
/// the limit. The driver always hears `WorkerClosed` for a session it
/// accepted.
async fn worker_session(
    shared: &Shared,
    conn: Connection,
    hello: WorkerHello,
    mut send: SendStream,
    recv: RecvStream,
) {
    let fleet = &shared.fleet;
    let write_timeout = shared.limits.reply_write_timeout;
    let session = SESSIONS.fetch_add(1, Ordering::Relaxed);
    let name = hello.name.clone();
    let (tx, mut outbox) = mpsc::channel(WORKER_OUTBOX);
    let (reply, verdict) = oneshot::channel();
    let hello = Cmd::Hello {
        session,
        address: conn.remote_address().to_string(),
        hello,
        tx,
        reply,
    };
    if fleet.send(hello).await.is_err() {
        let refused = CoordinatorMessage::Refused(shutting_down());
        let _ = write_small(&mut send, &refused, write_timeout).await;
        let _ = send.finish();
        return;
    }
    let closed = |why: &str| Cmd::WorkerClosed {
        session,
        name: name.clone(),
        why: why.to_string(),
    };
    match tokio::time::timeout(REQUEST_DEADLINE, verdict).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => {
            let _ = write_small(&mut send, &CoordinatorMessage::Refused(e), write_timeout).await;
            let _ = send.finish();
            return;
        }
        Ok(Err(_)) => return,
        Err(_) => {
            // The driver will see the hello, then this: it ends the session
            // it may have opened.
            let _ = write_small(
                &mut send,
                &CoordinatorMessage::Refused(busy()),
                write_timeout,
            )
            .await;
            let _ = send.finish();
            let _ = fleet
                .send(closed("the hello was not answered in time"))
                .await;
            return;
        }
    }
    let welcome = CoordinatorMessage::Welcome {
        version: env!("CARGO_PKG_VERSION").to_string(),
        telemetry_interval_ms: shared.telemetry_ms,
    };
    if let Err(e) = write_small(&mut send, &welcome, write_timeout).await {
        let _ = fleet
            .send(closed(&format!("welcome not delivered: {e}")))
            .await;
        return;
    }
    let liveness = Arc::new(Liveness::new(Instant::now()));
    let (in_tx, mut inbox) = mpsc::channel(WORKER_INBOX);
    let reader = tokio::spawn(read_worker(recv, name.clone(), liveness.clone(), in_tx));
    let silence = shared.silence;
    let why = loop {
        tokio::select! {
            m = inbox.recv() => match m {
                Some(Inbound::Message(msg)) => {
                    let rtt_us = conn.rtt().as_micros().min(u128::from(u32::MAX)) as u32;
                    let drop_ok = droppable(&msg);
                    let cmd = Cmd::FromWorker { session, name: name.clone(), msg, rtt_us };
                    if forward(fleet, cmd, drop_ok).await.is_err() {
                        break "the coordinator is shutting down".to_string();
                    }
                }
                Some(Inbound::End { why, protocol }) => {
                    if protocol {
                        // The stream only: never the connection for this.
                        let _ = send.reset(VarInt::from_u32(close::PROTOCOL_ERROR));
                    }
                    break why;
                }
                None => break "the worker's reader stopped".to_string(),
            },
            out = outbox.recv() => match out {
                Some(msg) => {
                    if let Err(e) = write_small(&mut send, &msg, write_timeout).await {
                        break e;
                    }
                }
                None => {
                    // The fleet dropped this session (a newer one, or lost).
                    conn.close(VarInt::from_u32(close::SUPERSEDED), b"session replaced or declared lost");
                    break "session closed by the coordinator".to_string();
                }
            },
            _ = tokio::time::sleep_until(liveness.deadline(silence)) => {
                // A frame may have been read since the sleep began: then
                // the next turn waits for the new deadline.
                if liveness.silent(Instant::now(), silence) {
                    conn.close(VarInt::from_u32(close::UNRESPONSIVE), b"silent past the limit");
                    break "silent past the limit".to_string();
                }
            }
        }
    };
    reader.abort();
    tracing::debug!(worker = %name, session, why = %why, "worker session ended");
    let _ = fleet.send(closed(&why)).await;
}

/// A console subscription: the snapshot's frames in order, then events; a
/// subscriber that falls behind the event buffer is told how many it missed
/// and gets a fresh snapshot. A subscriber that cannot take a frame within
/// the event write timeout is cut off (its stream reset with
/// `UNRESPONSIVE`): it reconnects and resyncs.
async fn subscription(
    shared: &Shared,
    budget: &ConnectionBudget,
    turns: &Turns,
    mut send: SendStream,
) {
    let timeout = shared.limits.event_write_timeout;
    // Resolves when the console stops the stream or the connection ends, so
    // a quiet fleet does not keep a gone subscriber's task.
    let gone = send.stopped();
    tokio::pin!(gone);
    loop {
        let until = Instant::now() + REQUEST_DEADLINE;
        let started = match take_turn(turns, until).await {
            Err(e) => Err(e),
            Ok(turn) => match ask(&shared.fleet, until, |reply| Cmd::Subscribe { reply }).await {
                Err(e) => Err(e),
                Ok(Subscription { frames, events }) => {
                    let budget = budget.clone();
                    let admitted =
                        tokio::task::spawn_blocking(move || admit_snapshot(frames, &budget))
                            .await
                            .unwrap_or_else(|e| {
                                tracing::error!(error = %e, "encoding a snapshot failed");
                                Err(WireError::new(
                                    ErrorCode::Internal,
                                    "the snapshot could not be encoded",
                                ))
                            });
                    drop(turn);
                    admitted.map(|(parts, held)| (parts, held, events))
                }
            },
        };
        let (parts, held, mut events) = match started {
            Ok(admitted) => admitted,
            Err(refusal) => {
                if write_small(&mut send, &SubscriptionFrame::Refused(refusal), timeout)
                    .await
                    .is_ok()
                {
                    let _ = send.finish();
                }
                return;
            }
        };
        for part in &parts {
            if write_bytes(&mut send, part, timeout).await.is_err() {
                return;
            }
        }
        drop((parts, held));
        loop {
            let frame = tokio::select! {
                ev = events.recv() => match ev {
                    Ok(ev) => SubscriptionFrame::Event(ev),
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        if write_small(&mut send, &SubscriptionFrame::Lagged { missed }, timeout)
                            .await
                            .is_err()
                        {
                            return;
                        }
                        break; // resync from a fresh snapshot
                    }
                    Err(broadcast::error::RecvError::Closed) => {
                        let _ = send.finish();
                        return;
                    }
                },
                _ = &mut gone => return,
            };
            if write_small(&mut send, &frame, timeout).await.is_err() {
                return;
            }
        }
    }
}

/// Encodes a snapshot's frames, in order, and charges them all to the
/// budgets; the error is the refusal to send instead.
fn admit_snapshot(
    frames: Vec<SubscriptionFrame>,
    budget: &ConnectionBudget,
) -> Result<(Vec<Vec<u8>>, Reserved), WireError> {
    let mut parts = Vec::with_capacity(frames.len());
    for f in frames {
        match frame::encode(&f) {
            Ok(bytes) => parts.push(bytes),
            Err(e) => {
                tracing::error!(error = %e, "a snapshot part could not be encoded");
                return Err(too_large(&e));
            }
        }
    }
    let total = parts.iter().map(Vec::len).sum();
    let held = budget.reserve(total).map_err(|_| budget_exhausted())?;
    Ok((parts, held))
}

#[cfg(test)]
mod tests {
    use super::*;
    use recfleet_protocol::{RecordingId, WorkerName};

    fn id(role: Role, name: &str) -> Identity {
        Identity::new(role, name).unwrap()
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
