//! The worker's link to the coordinator: connect with the agent
//! certificate, say hello with what runs here, then carry starts, stops,
//! reports and telemetry. Recordings go on while the coordinator is away;
//! reports wait in order and are delivered after the next hello.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use quinn::{Connection, Endpoint, SendStream, VarInt};
use recfleet_protocol::error::close;
use recfleet_protocol::frame::{self, FrameError};
use recfleet_protocol::manifest::SegmentEndReason;
use recfleet_protocol::quic::{self, TransportError};
use recfleet_protocol::{
    now_ms, CoordinatorMessage, OpenStream, ReadySlots, WorkerHello, WorkerMessage, WorkerName,
    WorkerTelemetry,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::engine::Engine;
use super::guard;
use super::load::LoadWatch;
use super::status::WorkerStatus;
use crate::backoff;

/// Where and as whom to connect.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// The coordinators (`host:port`; a name may resolve to several):
    /// one leads, the others answer with where it is.
    pub coordinators: Vec<String>,
    /// The name its certificate carries.
    pub server_name: String,
    /// This worker's name (from its certificate).
    pub name: WorkerName,
    /// Capacity units offered.
    pub capacity: u32,
    /// Labels.
    pub labels: std::collections::BTreeMap<String, String>,
    /// On SIGTERM, how long the coordinator has to move our recordings away.
    pub drain_grace_secs: u32,
    /// The CA, certificate and key files: the guard uses them to report
    /// this process's death (None: it does not report).
    pub tls_files: Option<(std::path::PathBuf, std::path::PathBuf, std::path::PathBuf)>,
    /// CPU for recordings, thousandths of a core (0: the machine's CPUs).
    pub cpu_capacity_millicores: u32,
    /// The machine it runs on.
    pub host: String,
}

/// Why a session ended.
enum SessionEnd {
    /// Connection trouble: reconnect.
    Lost(String),
    /// Refused by the coordinator: retrying the same hello is pointless
    /// unless the operator fixes something, so retry slowly.
    Refused(String),
    /// A standby, or a deposed leader: go to the leader at once.
    NotLeader(String),
    /// Shutting down.
    Shutdown,
}

/// The link's state that survives reconnects.
struct Link {
    status: Arc<WorkerStatus>,
    /// Cancelled when the worker got SIGTERM: tell the coordinator to move
    /// our recordings away.
    drain: CancellationToken,
    drain_announced: bool,
    config: LinkConfig,
    engine: Arc<Engine>,
    events: mpsc::UnboundedReceiver<WorkerMessage>,
    pending: VecDeque<WorkerMessage>,
    draining: bool,
    load: LoadWatch,
    /// Where a standby said the leader is (tried first), or which standby
    /// knew none (left out of the next try).
    redirect: recfleet_client::connect::Redirect,
    /// The highest leader term seen: a coordinator of a lower one was
    /// deposed and is not followed.
    term: u64,
}

/// Why connecting did not give a session.
enum ConnectError {
    Transport(TransportError),
    NotLeader(String),
}

impl From<TransportError> for ConnectError {
    fn from(e: TransportError) -> Self {
        ConnectError::Transport(e)
    }
}

/// Runs the link until `shutdown`; then delivers what is pending (with a
/// short limit) and closes the connection.
pub async fn run(
    config: LinkConfig,
    endpoint: Endpoint,
    engine: Arc<Engine>,
    events: mpsc::UnboundedReceiver<WorkerMessage>,
    status: Arc<WorkerStatus>,
    drain: CancellationToken,
    shutdown: CancellationToken,
) {
    let load = LoadWatch::start(engine.clone(), config.cpu_capacity_millicores);
    let mut link = Link {
        status,
        drain,
        drain_announced: false,
        config,
        engine,
        events,
        pending: VecDeque::new(),
        draining: false,
        load,
        redirect: Default::default(),
        term: 0,
    };
    let mut attempt = 0u32;
    loop {
        if shutdown.is_cancelled() {
            break;
        }
        let end = match link.connect(&endpoint).await {
            Ok((conn, send, inbox, telemetry)) => {
                attempt = 0;
                link.status.set_connected(true);
                // systemd: ready once the coordinator has accepted us.
                crate::health::notify_ready();
                let end = link.session(&conn, send, inbox, telemetry, &shutdown).await;
                link.status.set_connected(false);
                end
            }
            Err(ConnectError::NotLeader(why)) => SessionEnd::NotLeader(why),
            Err(ConnectError::Transport(e)) => match e {
                TransportError::Refused(m) | TransportError::VersionMismatch(m) => {
                    SessionEnd::Refused(m)
                }
                other => SessionEnd::Lost(other.to_string()),
            },
        };
        let delay = match end {
            SessionEnd::Shutdown => break,
            SessionEnd::NotLeader(why) => {
                // A coordinator answered: no backoff builds up. To the
                // leader at once when a standby named it; a moment later
                // when none is known (a takeover under way).
                attempt = 0;
                let d = if link.redirect.leader.is_some() {
                    Duration::ZERO
                } else {
                    Duration::from_millis(300)
                };
                tracing::info!(coordinators = ?link.config.coordinators, leader = ?link.redirect.leader, %why, "not the leader; going to the leader");
                d
            }
            SessionEnd::Lost(why) => {
                let d = backoff::delay(
                    attempt,
                    Duration::from_millis(100),
                    Duration::from_secs(5),
                    fastrand::f64(),
                );
                tracing::warn!(coordinators = ?link.config.coordinators, error = %why, retry_in_ms = d.as_millis() as u64, "coordinator unreachable; recordings go on");
                d
            }
            SessionEnd::Refused(why) => {
                let d = backoff::delay(
                    attempt.max(5),
                    Duration::from_millis(100),
                    Duration::from_secs(30),
                    fastrand::f64(),
                );
                tracing::error!(coordinators = ?link.config.coordinators, error = %why, retry_in_ms = d.as_millis() as u64, "refused by the coordinator");
                d
            }
        };
        attempt = attempt.saturating_add(1);
        // Keep collecting reports while waiting to reconnect.
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep => break,
                _ = shutdown.cancelled() => break,
                Some(ev) = link.events.recv() => {
                    link.status.observe(&ev);
                    link.pending.push_back(ev);
                }
            }
        }
    }
}

type Inbox = mpsc::UnboundedReceiver<Result<CoordinatorMessage, TransportError>>;

/// Frames in a row that do not decode after which the control stream is
/// closed: one or a few are messages of a newer coordinator (a rolling
/// upgrade), a long run is a broken peer.
pub const MAX_UNDECODABLE_IN_A_ROW: u32 = 16;

/// What to do with one well-framed payload from the coordinator.
#[derive(Debug)]
enum Verdict {
    /// A message this worker knows (boxed: a StartSegment is large).
    Deliver(Box<CoordinatorMessage>),
    /// A message it does not know (logged): carry on with the next frame.
    Skip,
    /// Too many in a row: close the stream, for this reason.
    GiveUp(FrameError),
}

/// Counts the coordinator's frames that do not decode, in a row. A frame
/// whose length prefix was fine but whose payload is no message this
/// version knows (an unknown variant from a newer coordinator) is skipped
/// with a warning instead of ending the connection.
#[derive(Debug, Default)]
struct Undecodable {
    in_a_row: u32,
}

impl Undecodable {
    fn judge(&mut self, payload: &[u8]) -> Verdict {
        match frame::decode_payload::<CoordinatorMessage>(payload) {
            Ok(m) => {
                self.in_a_row = 0;
                Verdict::Deliver(Box::new(m))
            }
            Err(e) => {
                self.in_a_row += 1;
                if self.in_a_row >= MAX_UNDECODABLE_IN_A_ROW {
                    tracing::warn!(error = %e, in_a_row = self.in_a_row, "closing the control stream: too many coordinator messages in a row could not be decoded");
                    return Verdict::GiveUp(FrameError::Malformed(format!(
                        "{} coordinator messages in a row could not be decoded (the last: {e})",
                        self.in_a_row
                    )));
                }
                tracing::warn!(error = %e, bytes = payload.len(), in_a_row = self.in_a_row, "skipping a coordinator message this worker cannot decode (from a newer coordinator?)");
                Verdict::Skip
            }
        }
    }
}

impl Link {
    fn hello(&self) -> WorkerHello {
        WorkerHello {
            name: self.config.name.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            capacity: self.config.capacity,
            labels: self.config.labels.clone(),
            running: self.engine.running(),
            draining: self.draining,
            host: self.config.host.clone(),
        }
    }

    async fn connect(
        &mut self,
        endpoint: &Endpoint,
    ) -> Result<(Connection, SendStream, Inbox, Duration), ConnectError> {
        let redirect = std::mem::take(&mut self.redirect);
        let connected = recfleet_client::connect::connect_any(
            endpoint,
            &redirect,
            &self.config.coordinators,
            &self.config.server_name,
            Duration::from_secs(5),
        )
        .await
        .map_err(|e| match e {
            // A refused handshake (certificate, version) keeps its kind:
            // retried slowly, not as a lost connection.
            recfleet_client::ClientError::Transport(t) => t,
            other => TransportError::ConnectionLost(other.to_string()),
        })?;
        let (conn, at) = (connected.connection, connected.addr);
        let (mut send, mut recv) = conn.open_bi().await.map_err(TransportError::from)?;
        quic::write_frame(&mut send, &OpenStream::Worker(self.hello())).await?;
        let telemetry = match quic::read_frame::<CoordinatorMessage>(&mut recv).await? {
            Some(CoordinatorMessage::Welcome {
                version,
                telemetry_interval_ms,
                term,
                egress,
                session,
            }) => {
                if term < self.term {
                    conn.close(
                        VarInt::from_u32(close::NORMAL),
                        b"deposed: a newer term leads",
                    );
                    self.redirect.avoid = Some(at);
                    return Err(ConnectError::NotLeader(format!(
                        "{at} leads term {term}, but term {} was seen: it was deposed",
                        self.term
                    )));
                }
                self.term = term;
                self.engine.set_egress(egress);
                if let Some((ca, cert, key)) = &self.config.tls_files {
                    self.engine.guard_notice(guard::Notice {
                        coordinator: at,
                        server_name: self.config.server_name.clone(),
                        ca: ca.clone(),
                        cert: cert.clone(),
                        key: key.clone(),
                        name: self.config.name.clone(),
                        session,
                    });
                }
                tracing::info!(coordinator = %at, %version, term, running = self.engine.len(), "connected to the coordinator");
                Duration::from_millis(u64::from(telemetry_interval_ms.max(100)))
            }
            Some(CoordinatorMessage::Refused(e))
                if e.code == recfleet_protocol::ErrorCode::NotLeader =>
            {
                self.redirect = recfleet_client::connect::Redirect {
                    leader: e.leader().map(str::to_string),
                    avoid: e.leader().is_none().then_some(at),
                };
                return Err(ConnectError::NotLeader(format!("{at}: {}", e.message)));
            }
            Some(CoordinatorMessage::Refused(e)) => {
                return Err(TransportError::Refused(e.message).into())
            }
            Some(other) => {
                return Err(TransportError::Refused(format!(
                    "unexpected answer to hello: {other:?}"
                ))
                .into())
            }
            None => return Err(TransportError::StreamClosed.into()),
        };
        // Frames are read by a task of their own: a frame read is not
        // cancel-safe, so it must not sit in the session's select.
        let (tx, inbox) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut undecodable = Undecodable::default();
            loop {
                let payload = match quic::read_frame_bytes(&mut recv).await {
                    Ok(Some(payload)) => payload,
                    Ok(None) => {
                        let _ = tx.send(Err(TransportError::StreamClosed));
                        break;
                    }
                    Err(e) => {
                        if matches!(e, TransportError::Frame(_)) {
                            let _ = recv.stop(VarInt::from_u32(close::PROTOCOL_ERROR));
                        }
                        let _ = tx.send(Err(e));
                        break;
                    }
                };
                match undecodable.judge(&payload) {
                    Verdict::Deliver(m) => {
                        if tx.send(Ok(*m)).is_err() {
                            break;
                        }
                    }
                    Verdict::Skip => {}
                    Verdict::GiveUp(e) => {
                        let _ = recv.stop(VarInt::from_u32(close::PROTOCOL_ERROR));
                        let _ = tx.send(Err(TransportError::Frame(e)));
                        break;
                    }
                }
            }
        });
        Ok((conn, send, inbox, telemetry))
    }

    async fn session(
        &mut self,
        conn: &Connection,
        mut send: SendStream,
        mut inbox: Inbox,
        telemetry: Duration,
        shutdown: &CancellationToken,
    ) -> SessionEnd {
        // A new coordinator session must hear about a drain in progress.
        self.drain_announced = false;
        // The coordinator's queries (thumbnail, logs, processes) come on
        // streams it opens on this connection; served while it lasts.
        conn.set_max_concurrent_bi_streams(quinn::VarInt::from_u32(super::queries::CONCURRENT));
        let queries = shutdown.child_token();
        tokio::spawn(super::queries::serve(
            conn.clone(),
            self.engine.clone(),
            queries.clone(),
        ));
        let _stop_queries = queries.drop_guard();
        if let Err(e) = self.flush(&mut send).await {
            return SessionEnd::Lost(e);
        }
        let mut tick = tokio::time::interval(telemetry);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => {
                    self.finish(conn, &mut send).await;
                    return SessionEnd::Shutdown;
                }
                ev = self.events.recv() => {
                    let Some(ev) = ev else { return SessionEnd::Shutdown };
                    self.status.observe(&ev);
                    self.pending.push_back(ev);
                    if let Err(e) = self.flush(&mut send).await {
                        return SessionEnd::Lost(e);
                    }
                }
                _ = self.drain.cancelled(), if !self.drain_announced => {
                    self.drain_announced = true;
                    self.draining = true;
                    self.status.set_draining(true);
                    self.pending.push_back(WorkerMessage::Draining { grace_secs: self.config.drain_grace_secs });
                    if let Err(e) = self.flush(&mut send).await {
                        return SessionEnd::Lost(e);
                    }
                }
                m = inbox.recv() => match m {
                    Some(Ok(msg)) => {
                        if let Some(reply) = self.apply(msg) {
                            self.pending.push_back(reply);
                            if let Err(e) = self.flush(&mut send).await {
                                return SessionEnd::Lost(e);
                            }
                        }
                    }
                    Some(Err(e)) => {
                        // A protocol error closes this stream (the reader
                        // has stopped its half), not the connection.
                        if matches!(e, TransportError::Frame(_)) {
                            let _ = send.reset(VarInt::from_u32(close::PROTOCOL_ERROR));
                        }
                        return SessionEnd::Lost(e.to_string());
                    }
                    None => return SessionEnd::Lost("connection closed".into()),
                },
                _ = tick.tick() => {
                    let t = self.telemetry();
                    if let Err(e) = quic::write_frame(&mut send, &WorkerMessage::Telemetry(t)).await {
                        return SessionEnd::Lost(e.to_string());
                    }
                }
            }
        }
    }

    /// Sends what is pending, in order; what fails stays for the next session.
    async fn flush(&mut self, send: &mut SendStream) -> Result<(), String> {
        while let Some(msg) = self.pending.front() {
            quic::write_frame(send, msg)
                .await
                .map_err(|e| e.to_string())?;
            self.pending.pop_front();
        }
        Ok(())
    }

    /// Carries out a coordinator message; returns an answer to send, if any.
    fn apply(&mut self, msg: CoordinatorMessage) -> Option<WorkerMessage> {
        match msg {
            CoordinatorMessage::StartSegment {
                epoch,
                spec,
                deadline,
            } => {
                let id = spec.id.clone();
                match self.engine.start_recording(spec, epoch, deadline) {
                    Ok(()) => None,
                    Err(e) => {
                        tracing::warn!(recording = %id, %epoch, error = %e, "cannot start");
                        Some(WorkerMessage::PlacementEnded {
                            recording: id,
                            epoch,
                            reason: SegmentEndReason::StartFailed {
                                reason: e.to_string(),
                            },
                        })
                    }
                }
            }
            CoordinatorMessage::StopSegment {
                recording,
                epoch,
                reason,
            } => {
                if !self.engine.stop_recording(&recording, epoch, reason) {
                    tracing::debug!(%recording, %epoch, "stop for a placement not running here");
                }
                None
            }
            CoordinatorMessage::Ping { id, payload } => Some(WorkerMessage::Pong { id, payload }),
            CoordinatorMessage::DrainState { draining } => {
                self.draining = draining || self.drain.is_cancelled();
                self.status.set_draining(self.draining);
                self.engine.set_draining(self.draining);
                None
            }
            CoordinatorMessage::Welcome { .. } | CoordinatorMessage::Refused(_) => None,
        }
    }

    fn telemetry(&mut self) -> WorkerTelemetry {
        let load = self.load.latest();
        let (upload_buffer_bytes, upload_buffer_full) = self.engine.upload_buffer();
        let pool = self.engine.pool();
        WorkerTelemetry {
            at: now_ms(),
            cpu_millicores: load.cpu_millicores,
            rss_bytes: load.rss_bytes,
            slots: self
                .engine
                .progress()
                .into_iter()
                .map(|mut p| {
                    if let Some(c) = p
                        .recording
                        .clone()
                        .and_then(|id| load.slots.get(&(id, p.epoch)))
                    {
                        p.cpu_millicores = c.cpu_millicores;
                        p.memory_bytes = c.memory_bytes;
                    }
                    p
                })
                .collect(),
            upload_buffer_bytes,
            upload_buffer_full,
            ready: ReadySlots {
                ready: pool.ready,
                target: pool.target,
                cpu_millicores: load.ready_cpu_millicores,
                rss_bytes: load.ready_memory_bytes,
            },
            capacity: load.capacity,
        }
    }

    /// On shutdown: deliver the last reports (a few seconds at most), then
    /// close the connection so the coordinator knows at once.
    async fn finish(&mut self, conn: &Connection, send: &mut SendStream) {
        let until = tokio::time::Instant::now() + Duration::from_secs(3);
        loop {
            while let Ok(ev) = self.events.try_recv() {
                self.pending.push_back(ev);
            }
            if self.engine.is_empty() {
                break;
            }
            match tokio::time::timeout_at(until, self.events.recv()).await {
                Ok(Some(ev)) => self.pending.push_back(ev),
                _ => break,
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), self.flush(send)).await;
        let _ = send.finish();
        conn.close(VarInt::from_u32(close::NORMAL), b"worker shutting down");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(id: u64) -> Vec<u8> {
        let bytes = frame::encode(&CoordinatorMessage::Ping {
            id,
            payload: Vec::new(),
        })
        .unwrap();
        bytes[frame::PREFIX_LEN..].to_vec()
    }

    /// A variant index past the end of `CoordinatorMessage`, as a newer
    /// coordinator would send.
    fn unknown() -> Vec<u8> {
        vec![0x63, 1, 2, 3]
    }

    #[test]
    fn unknown_messages_are_skipped_and_known_ones_delivered() {
        let mut u = Undecodable::default();
        assert!(matches!(
            u.judge(&known(1)),
            Verdict::Deliver(m) if matches!(*m, CoordinatorMessage::Ping { id: 1, .. })
        ));
        for _ in 0..MAX_UNDECODABLE_IN_A_ROW - 1 {
            assert!(matches!(u.judge(&unknown()), Verdict::Skip));
        }
        // A known message in between starts the count again.
        assert!(matches!(
            u.judge(&known(2)),
            Verdict::Deliver(m) if matches!(*m, CoordinatorMessage::Ping { id: 2, .. })
        ));
        for _ in 0..MAX_UNDECODABLE_IN_A_ROW - 1 {
            assert!(matches!(u.judge(&unknown()), Verdict::Skip));
        }
        assert!(matches!(
            u.judge(&known(3)),
            Verdict::Deliver(m) if matches!(*m, CoordinatorMessage::Ping { id: 3, .. })
        ));
    }

    #[test]
    fn too_many_undecodable_messages_in_a_row_close_the_stream() {
        let mut u = Undecodable::default();
        for _ in 0..MAX_UNDECODABLE_IN_A_ROW - 1 {
            assert!(matches!(u.judge(&unknown()), Verdict::Skip));
        }
        match u.judge(&unknown()) {
            Verdict::GiveUp(FrameError::Malformed(why)) => {
                assert!(why.starts_with("16 coordinator messages in a row"), "{why}")
            }
            other => panic!("not a give-up: {other:?}"),
        }
        // Trailing bytes after a known message count as undecodable too.
        let mut u = Undecodable::default();
        let mut long = known(4);
        long.push(0);
        assert!(matches!(u.judge(&long), Verdict::Skip));
    }
}
