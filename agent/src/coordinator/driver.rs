//! The fleet driver: a thread of its own (never a runtime thread) that owns
//! the store and the fleet core. Each turn takes the commands queued (up to
//! a bound), runs them through the core, writes all their store effects in
//! one transaction (one fsync for a burst), and only then sends, replies and
//! publishes. An input whose writes fail changes nothing: its recordings are
//! reloaded from the store, its requests get an error, and the coordinator
//! reports not ready until the store takes writes again.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use recfleet_protocol::{
    now_ms, ConsoleRequest, ConsoleResponse, ErrorCode, Event, RecordingId, RecordingInfo,
    WireError, WorkerName, LIST_DEFAULT, LIST_MAX,
};
use std::sync::Arc;
use tokio::sync::{broadcast, mpsc, oneshot, Notify};
use tokio_util::sync::CancellationToken;

use super::cmd::{Cmd, Subscription, WorkerTx};
use super::fleet::{info_of, segment_totals, Effect, Fleet, Input, Now, ReplyTo};
use super::outputs::{OutputJob, OutputTx};
use super::store::db::DbError;
use super::store::{Store, StoreError};

/// Commands one turn takes at most (one transaction).
const TURN_MAX: usize = 512;
/// Period of the fleet's tick.
const TICK: Duration = Duration::from_millis(250);
/// Events kept for slow subscribers before they are told they lagged.
const EVENT_BUFFER: usize = 8192;
/// Events kept for `describe`: about an hour of a busy fleet. Memory is
/// bounded by the count (an event is a few hundred bytes).
const HISTORY_MAX: usize = 10_000;

#[derive(Debug)]
enum Waiter {
    /// A worker's hello, and its session (forgotten if refused).
    Hello(oneshot::Sender<Result<(), WireError>>, u64),
    Console(oneshot::Sender<ConsoleResponse>),
}

/// The driver's state.
#[derive(Debug)]
pub struct Driver {
    fleet: Fleet,
    store: Store,
    outputs: Option<OutputTx>,
    waiters: HashMap<ReplyTo, Waiter>,
    next_waiter: ReplyTo,
    sessions: HashMap<u64, (WorkerName, WorkerTx)>,
    events: broadcast::Sender<Event>,
    /// The latest events, for `describe` (per-object history).
    history: std::collections::VecDeque<Event>,
    origin: Instant,
    /// Why the store refuses writes, while it does.
    store_error: Option<String>,
    /// Inputs the driver itself produced (a session whose outbox filled).
    feedback: Vec<Input>,
    /// Telemetry drops the server had counted at the last scrape.
    dropped_seen: u64,
    /// Webhook URLs and the sender to wake after a commit that queued
    /// deliveries (none: webhooks are off).
    webhooks: Option<Webhooks>,
    /// Cancelled when a write finds the lease held by another term: this
    /// coordinator was deposed and its leadership is torn down.
    deposed: Option<CancellationToken>,
}

/// What the driver knows of webhooks.
#[derive(Debug)]
struct Webhooks {
    urls: Vec<String>,
    wake: Arc<Notify>,
}

/// Where a turn's transaction stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Txn {
    /// Nothing written yet: no transaction.
    NotYet,
    /// Open: writes go in.
    Open,
    /// It could not begin, or SQLite rolled it back.
    Gone,
}

/// One input's outcome in a turn.
struct Outcome {
    effects: Vec<Effect>,
    /// Its store writes are durable (or it had none).
    durable: bool,
}

impl Driver {
    /// A driver for a loaded fleet and its store.
    pub fn new(fleet: Fleet, store: Store, outputs: Option<OutputTx>) -> Driver {
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        Driver {
            fleet,
            store,
            outputs,
            waiters: HashMap::new(),
            next_waiter: 1,
            sessions: HashMap::new(),
            events,
            history: std::collections::VecDeque::new(),
            origin: Instant::now(),
            store_error: None,
            feedback: Vec::new(),
            dropped_seen: 0,
            webhooks: None,
            deposed: None,
        }
    }

    /// Cancels `token` when a write finds that another coordinator leads.
    pub fn with_deposed(mut self, token: CancellationToken) -> Driver {
        self.deposed = Some(token);
        self
    }

    /// Queues webhook events for `urls` and wakes the sender through `wake`
    /// after each commit that queued some.
    pub fn with_webhooks(mut self, urls: Vec<String>, wake: Arc<Notify>) -> Driver {
        self.webhooks = Some(Webhooks { urls, wake });
        self
    }

    fn now(&self) -> Now {
        Now {
            mono_ms: self.origin.elapsed().as_millis() as u64,
            wall_ms: now_ms(),
        }
    }

    /// Runs on the calling thread until `shutdown`: then what is queued is
    /// still handled and committed, and the waiting clients answered.
    pub fn run(mut self, mut rx: mpsc::Receiver<Cmd>, shutdown: CancellationToken) {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!(error = %e, "the fleet driver cannot start");
                return;
            }
        };
        let mut next_tick = Instant::now() + TICK;
        let mut stopping = false;
        loop {
            let mut cmds = Vec::new();
            if !stopping {
                let wait = next_tick.saturating_duration_since(Instant::now());
                let first = rt.block_on(async {
                    tokio::select! {
                        c = rx.recv() => Some(c),
                        _ = tokio::time::sleep(wait) => None,
                        _ = shutdown.cancelled() => Some(None),
                    }
                });
                match first {
                    Some(Some(cmd)) => cmds.push(cmd),
                    Some(None) => stopping = true,
                    None => {}
                }
            }
            while cmds.len() < TURN_MAX {
                match rx.try_recv() {
                    Ok(c) => cmds.push(c),
                    Err(_) => break,
                }
            }
            self.fleet.metrics().queue_depth.set(rx.len() as i64);
            let tick = Instant::now() >= next_tick;
            if tick {
                next_tick = Instant::now() + TICK;
            }
            let idle = cmds.is_empty();
            self.turn(cmds, tick);
            if stopping && idle {
                break;
            }
        }
        for (_, w) in self.waiters.drain() {
            if let Waiter::Console(tx) = w {
                let _ = tx.send(ConsoleResponse::Error(WireError::new(
                    ErrorCode::Unavailable,
                    "the coordinator is shutting down",
                )));
            }
        }
        tracing::info!("fleet stopped");
    }

    fn wait_for(&mut self, w: Waiter) -> ReplyTo {
        let id = self.next_waiter;
        self.next_waiter += 1;
        self.waiters.insert(id, w);
        id
    }

    /// One turn: commands in, one transaction, effects out.
    pub fn turn(&mut self, cmds: Vec<Cmd>, tick: bool) {
        let now = self.now();
        let mut inputs = Vec::with_capacity(cmds.len() + 1);
        let mut after: Vec<Cmd> = Vec::new();
        for cmd in cmds {
            match cmd {
                Cmd::Hello {
                    session,
                    address,
                    hello,
                    tx,
                    reply,
                } => {
                    self.sessions.insert(session, (hello.name.clone(), tx));
                    let reply = self.wait_for(Waiter::Hello(reply, session));
                    inputs.push(Input::Hello {
                        session,
                        address,
                        hello,
                        reply,
                    });
                }
                Cmd::FromWorker {
                    session,
                    name,
                    msg,
                    rtt_us,
                } => inputs.push(Input::FromWorker {
                    session,
                    name,
                    msg,
                    rtt_us,
                }),
                Cmd::Finalized {
                    id,
                    outputs,
                    stored,
                } => inputs.push(Input::Finalized {
                    id,
                    outputs,
                    stored,
                }),
                Cmd::WorkerClosed { session, name, why } => {
                    self.sessions.remove(&session);
                    inputs.push(Input::WorkerClosed { session, name, why });
                }
                Cmd::Refused { actor, what } => inputs.push(Input::Refused { actor, what }),
                Cmd::Request {
                    identity,
                    req,
                    reply,
                } => match self.read_from_store(&req) {
                    Some(response) => {
                        let _ = reply.send(response);
                    }
                    None => {
                        let reply = self.wait_for(Waiter::Console(reply));
                        inputs.push(Input::Request {
                            identity,
                            req,
                            reply,
                        });
                    }
                },
                // After the turn: a snapshot then holds the turn's changes,
                // and its events are numbered before the subscription's.
                c @ (Cmd::Subscribe { .. } | Cmd::Metrics { .. } | Cmd::Ready { .. }) => {
                    after.push(c)
                }
            }
        }
        inputs.append(&mut self.feedback);
        if tick {
            inputs.push(Input::Tick);
        }
        if !inputs.is_empty() {
            self.fleet
                .metrics()
                .turn_inputs
                .observe(inputs.len() as f64);
            let outcomes = self.run_inputs(now, inputs);
            for o in outcomes {
                self.dispatch(o);
            }
        }
        if tick && self.store_error.is_some() {
            self.probe_store(now);
        }
        for c in after {
            match c {
                Cmd::Subscribe { reply } => {
                    let events = self.events.subscribe();
                    let frames = self.fleet.snapshot();
                    let _ = reply.send(Subscription { frames, events });
                }
                Cmd::Metrics { reply } => {
                    let dropped = super::server::telemetry_dropped();
                    self.fleet
                        .metrics()
                        .telemetry_dropped
                        .inc_by(dropped.saturating_sub(self.dropped_seen));
                    self.dropped_seen = dropped;
                    let _ = reply.send(self.fleet.scrape());
                }
                Cmd::Ready { reply } => {
                    let _ = reply.send(match &self.store_error {
                        None => Ok(()),
                        Some(e) => Err(format!("the store refuses writes: {e}")),
                    });
                }
                _ => {}
            }
        }
    }

    /// Requests answered from the store: lists (finished recordings leave
    /// memory but stay listed) and recordings no longer in memory.
    fn read_from_store(&mut self, req: &ConsoleRequest) -> Option<ConsoleResponse> {
        let (states, limit, after, paged) = match req {
            ConsoleRequest::ListRecordings { states } => (states, LIST_MAX, None, false),
            ConsoleRequest::ListRecordingsPage {
                states,
                limit,
                after,
            } => {
                let limit = if *limit == 0 { LIST_DEFAULT } else { *limit };
                (states, limit.min(LIST_MAX), after.as_ref(), true)
            }
            ConsoleRequest::ShowRecording { id } if !self.fleet.holds(id) => {
                return Some(self.show_from_store(id));
            }
            // The deliveries are in the store only (the sender updates them).
            ConsoleRequest::ShowWebhooks { id } => {
                let deliveries = super::webhook::outbox::for_recording(self.store.db(), id)
                    .map_err(|e| self.store.db_error(e));
                return Some(match deliveries {
                    Ok(d) => ConsoleResponse::WebhookDeliveries(d),
                    Err(e) => error(
                        ErrorCode::Unavailable,
                        format!("cannot read the store: {e}"),
                    ),
                });
            }
            ConsoleRequest::Audit { limit } => {
                let limit = match *limit {
                    0 => 100,
                    n => n.min(1000),
                };
                return Some(match self.store.audit_trail(limit) {
                    Ok(entries) => ConsoleResponse::Audit(entries),
                    Err(e) => error(
                        ErrorCode::Unavailable,
                        format!("cannot read the store: {e}"),
                    ),
                });
            }
            ConsoleRequest::History {
                recording,
                worker,
                limit,
            } => {
                return Some(ConsoleResponse::History(self.history_of(
                    recording.as_ref(),
                    worker.as_ref(),
                    *limit,
                )));
            }
            ConsoleRequest::ListCoordinators => {
                return Some(match self.store.coordinators() {
                    // SQLite: this coordinator alone, no lease.
                    Ok(list) if list.is_empty() => {
                        ConsoleResponse::Coordinators(vec![recfleet_protocol::CoordinatorInfo {
                            name: "coordinator".into(),
                            address: String::new(),
                            role: "leader".into(),
                            term: 0,
                            lease_expires_in_ms: None,
                            seen_ms_ago: 0,
                        }])
                    }
                    Ok(list) => ConsoleResponse::Coordinators(list),
                    Err(e) => error(
                        ErrorCode::Unavailable,
                        format!("cannot read the store: {e}"),
                    ),
                });
            }
            _ => return None,
        };
        let (ids, next) = match self
            .store
            .page_ids(states, after.map(String::as_str), limit)
        {
            Ok(p) => p,
            Err(e @ StoreError::BadRow { .. }) if after.is_some() => {
                return Some(error(ErrorCode::InvalidInput, e.to_string()));
            }
            Err(e) => {
                return Some(error(
                    ErrorCode::Unavailable,
                    format!("cannot read the store: {e}"),
                ))
            }
        };
        let mut recordings: Vec<RecordingInfo> = Vec::with_capacity(ids.len());
        for id in &ids {
            if let Some(info) = self.fleet.info(id) {
                recordings.push(info);
                continue;
            }
            match self.store.summary(id) {
                Ok(Some((row, totals))) => recordings.push(info_of(&row, totals, None, None)),
                Ok(None) => {}
                Err(e) => {
                    return Some(error(
                        ErrorCode::Unavailable,
                        format!("cannot read the store: {e}"),
                    ))
                }
            }
        }
        Some(if paged {
            ConsoleResponse::RecordingsPage { recordings, next }
        } else {
            ConsoleResponse::Recordings(recordings)
        })
    }

    fn show_from_store(&self, id: &RecordingId) -> ConsoleResponse {
        match self.store.recording(id) {
            Ok(Some((row, segments))) => {
                let mut manifest = recfleet_protocol::manifest::Manifest::build(
                    id.clone(),
                    row.spec.url.clone(),
                    row.state,
                    row.reason.clone(),
                    segments.clone(),
                );
                manifest.outputs = row.outputs.clone();
                ConsoleResponse::Recording(Box::new(recfleet_protocol::RecordingDetail {
                    info: info_of(&row, segment_totals(&segments), None, None),
                    spec: row.spec,
                    manifest,
                }))
            }
            Ok(None) => error(ErrorCode::NotFound, format!("no recording \"{id}\"")),
            Err(e) => error(
                ErrorCode::Unavailable,
                format!("cannot read the store: {e}"),
            ),
        }
    }

    /// Runs the inputs through the core inside one transaction; a savepoint
    /// per input, so one input's failed write undoes only that input.
    fn run_inputs(&mut self, now: Now, inputs: Vec<Input>) -> Vec<Outcome> {
        // The transaction begins at the first write: most turns (telemetry,
        // pings, reads) write nothing and touch no file.
        let mut txn = Txn::NotYet;
        let mut outcomes: Vec<Outcome> = Vec::with_capacity(inputs.len());
        let mut any_writes = false;
        for input in inputs {
            let effects = self.fleet.handle(now, input);
            let writes = effects.iter().any(Effect::is_store_write);
            if writes && txn == Txn::NotYet {
                txn = match self.store.begin() {
                    Ok(()) => Txn::Open,
                    Err(e) => {
                        self.store_failed(&e);
                        Txn::Gone
                    }
                };
            }
            let durable = if !writes {
                true
            } else if txn == Txn::Open {
                any_writes = true;
                match self.write_input(&effects) {
                    Ok(()) => true,
                    Err(e) => {
                        self.store_failed(&e);
                        if !self.store.in_transaction() {
                            // SQLite rolled the whole transaction back: the
                            // inputs before this one lost their writes too.
                            txn = Txn::Gone;
                            self.undo_all(&mut outcomes);
                        }
                        false
                    }
                }
            } else {
                false
            };
            if !durable {
                self.revert(&effects);
            }
            outcomes.push(Outcome { effects, durable });
        }
        if txn == Txn::Open {
            let started = Instant::now();
            match self.store.commit() {
                Ok(()) => {
                    self.fleet
                        .metrics()
                        .store_commit
                        .observe(started.elapsed().as_secs_f64());
                    if any_writes && outcomes.iter().all(|o| o.durable) {
                        self.store_recovered();
                    }
                }
                Err(e) => {
                    self.store.rollback();
                    self.store_failed(&e);
                    self.undo_all(&mut outcomes);
                }
            }
        } else if txn == Txn::Gone {
            self.store.rollback();
        }
        outcomes
    }

    /// The transaction is gone: every input that wrote is undone.
    fn undo_all(&mut self, outcomes: &mut [Outcome]) {
        let mut undone = Vec::new();
        for o in outcomes.iter_mut() {
            if o.durable && o.effects.iter().any(Effect::is_store_write) {
                o.durable = false;
                undone.extend(o.effects.iter().filter(|e| e.is_store_write()).cloned());
            }
        }
        self.revert(&undone);
    }

    fn write_input(&self, effects: &[Effect]) -> Result<(), StoreError> {
        self.store.savepoint()?;
        for e in effects.iter().filter(|e| e.is_store_write()) {
            let r = match e {
                Effect::PutRecording(row) => self.store.put_recording(row),
                Effect::PutSegment(id, seg) => self.store.put_segment(id, seg),
                Effect::PutChunk(id, c) => self.store.put_chunk(id, c),
                Effect::Audit {
                    at,
                    actor,
                    action,
                    target,
                } => self.store.audit(*at, actor, action, target, ""),
                Effect::Webhook(event) => match &self.webhooks {
                    Some(w) => super::webhook::outbox::insert(self.store.db(), event, &w.urls)
                        .map_err(|e| self.store.db_error(e)),
                    None => Ok(()),
                },
                _ => Ok(()),
            };
            if let Err(e) = r {
                self.undo_input();
                return Err(e);
            }
        }
        // On PostgreSQL the input's writes go out here, in one round trip,
        // and a failed one shows here.
        self.store.release().inspect_err(|_| self.undo_input())
    }

    fn undo_input(&self) {
        if let Err(e) = self.store.rollback_to() {
            tracing::warn!(error = %e, "cannot roll back to the savepoint");
        }
    }

    /// Memory goes back to what the store holds for every recording the
    /// failed writes touched.
    fn revert(&mut self, effects: &[Effect]) {
        let ids: BTreeSet<RecordingId> = effects
            .iter()
            .filter_map(|e| match e {
                Effect::PutRecording(row) => Some(row.spec.id.clone()),
                Effect::PutSegment(id, _) | Effect::PutChunk(id, _) => Some(id.clone()),
                _ => None,
            })
            .collect();
        for id in ids {
            match self.store.recording(&id) {
                Ok(stored) => self.fleet.restore(&id, stored),
                Err(e) => {
                    tracing::error!(recording = %id, error = %e, "cannot reload a recording from the store")
                }
            }
        }
        let effects = self.fleet.take_effects();
        for e in effects {
            if let Effect::Event(ev) = e {
                self.publish(ev);
            }
        }
    }

    /// Sends an event to subscribers and keeps it in the history.
    fn publish(&mut self, ev: Event) {
        if self.history.len() >= HISTORY_MAX {
            self.history.pop_front();
        }
        self.history.push_back(ev.clone());
        let _ = self.events.send(ev);
    }

    /// The latest events naming a recording or a worker, oldest first.
    fn history_of(
        &self,
        recording: Option<&RecordingId>,
        worker: Option<&WorkerName>,
        limit: u32,
    ) -> Vec<Event> {
        let limit = match limit {
            0 => 100,
            n => n.min(1000),
        } as usize;
        let mut out: Vec<Event> = self
            .history
            .iter()
            .rev()
            .filter(|e| {
                recording.is_some_and(|r| e.kind.recordings().contains(&r))
                    || worker.is_some_and(|w| e.kind.workers().contains(&w))
            })
            .take(limit)
            .cloned()
            .collect();
        out.reverse();
        out
    }

    fn store_failed(&mut self, e: &StoreError) {
        if matches!(
            e,
            StoreError::Db {
                source: DbError::Deposed,
                ..
            }
        ) {
            if let Some(t) = &self.deposed {
                if !t.is_cancelled() {
                    tracing::error!("deposed: another coordinator leads; this one stops acting");
                    t.cancel();
                }
            }
        }
        if self.store_error.is_none() {
            tracing::error!(error = %e, "the store refuses writes: requests that change the fleet are refused until it recovers");
        }
        self.fleet.metrics().store_errors.inc();
        self.fleet.metrics().store_unavailable.set(1);
        self.store_error = Some(e.to_string());
    }

    fn store_recovered(&mut self) {
        if self.store_error.take().is_some() {
            tracing::info!("the store takes writes again");
            self.fleet.metrics().store_unavailable.set(0);
        }
    }

    fn probe_store(&mut self, now: Now) {
        match self.store.probe_write(now.wall_ms) {
            Ok(()) => self.store_recovered(),
            Err(e) => self.store_error = Some(e.to_string()),
        }
    }

    /// Carries out an input's effects other than store writes.
    fn dispatch(&mut self, o: Outcome) {
        let failure = self
            .store_error
            .clone()
            .unwrap_or_else(|| "the store refused the write".into());
        for e in o.effects {
            match e {
                Effect::PutRecording(_)
                | Effect::PutSegment(..)
                | Effect::PutChunk(..)
                | Effect::Audit { .. } => {}
                Effect::Webhook(_) => {
                    // Committed: the sender finds the rows now rather than
                    // at its next poll.
                    if let (true, Some(w)) = (o.durable, &self.webhooks) {
                        w.wake.notify_one();
                    }
                }
                Effect::Send { session, msg } => {
                    if !o.durable {
                        continue;
                    }
                    let full = match self.sessions.get(&session) {
                        Some((_, tx)) => {
                            matches!(tx.try_send(msg), Err(mpsc::error::TrySendError::Full(_)))
                        }
                        None => false,
                    };
                    if full {
                        if let Some((name, _)) = self.sessions.remove(&session) {
                            tracing::warn!(worker = %name, "the worker reads too slowly: its session is closed");
                            self.feedback.push(Input::WorkerClosed {
                                session,
                                name,
                                why: "its outbox was full".into(),
                            });
                        }
                    }
                }
                Effect::CloseSession { session } => {
                    self.sessions.remove(&session);
                }
                Effect::Welcome { to, result } => {
                    if let Some(Waiter::Hello(tx, session)) = self.waiters.remove(&to) {
                        if result.is_err() {
                            // The server ends a refused session without a
                            // WorkerClosed: nothing of it may stay here.
                            self.sessions.remove(&session);
                        }
                        let _ = tx.send(result);
                    }
                }
                Effect::Reply { to, response } => {
                    let response = if o.durable {
                        response
                    } else {
                        error(
                            ErrorCode::Unavailable,
                            format!("nothing was changed: the store refuses writes ({failure}); retry when /readyz is ready"),
                        )
                    };
                    if let Some(Waiter::Console(tx)) = self.waiters.remove(&to) {
                        let _ = tx.send(response);
                    }
                }
                Effect::Event(ev) => {
                    if o.durable {
                        self.publish(ev);
                    }
                }
                Effect::WriteManifest {
                    destination,
                    dir,
                    mut manifest,
                } => {
                    if !o.durable {
                        continue;
                    }
                    let Some(outputs) = &self.outputs else {
                        continue;
                    };
                    self.with_chunks(&mut manifest);
                    let json = match serde_json::to_vec_pretty(&manifest) {
                        Ok(j) => j,
                        Err(e) => {
                            tracing::warn!(recording = %manifest.recording, error = %e, "cannot encode the manifest");
                            continue;
                        }
                    };
                    let job = OutputJob::Manifest {
                        id: manifest.recording.clone(),
                        destination,
                        dir,
                        json: json.into(),
                    };
                    if !outputs.offer(job) {
                        tracing::warn!(recording = %manifest.recording, "the output queue is full; this manifest is skipped (a later one supersedes it)");
                    }
                }
                Effect::Finalize { spec, mut manifest } => {
                    if !o.durable {
                        continue;
                    }
                    let Some(outputs) = &self.outputs else {
                        continue;
                    };
                    self.with_chunks(&mut manifest);
                    let job = OutputJob::Finalize {
                        spec: Box::new(spec),
                        manifest: Box::new(manifest),
                    };
                    if !outputs.offer(job) {
                        tracing::warn!(
                            "the output queue is full; the finalization is asked again later"
                        );
                    }
                }
            }
        }
    }

    /// Adds to a manifest the chunks the store holds of each segment.
    fn with_chunks(&self, manifest: &mut recfleet_protocol::Manifest) {
        match self.store.chunks_of(&manifest.recording) {
            Ok(mut chunks) => {
                for s in &mut manifest.segments {
                    if let Some(c) = chunks.remove(&(s.epoch.0, s.part)) {
                        s.chunks = c;
                    }
                }
            }
            Err(e) => {
                tracing::warn!(recording = %manifest.recording, error = %e, "cannot read the chunks of the manifest")
            }
        }
    }
}

fn error(code: ErrorCode, message: impl Into<String>) -> ConsoleResponse {
    ConsoleResponse::Error(WireError::new(code, message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coordinator::fleet::FleetSettings;
    use recfleet_certs::{Identity, Role};
    use recfleet_protocol::{RecordingSpec, RecordingState};

    fn request(d: &mut Driver, req: ConsoleRequest) -> ConsoleResponse {
        let (reply, mut rx) = oneshot::channel();
        d.turn(
            vec![Cmd::Request {
                identity: Identity::new(Role::Operator, "alice").unwrap(),
                req,
                reply,
            }],
            false,
        );
        rx.try_recv().expect("answered within the turn")
    }

    fn start(d: &mut Driver, id: &str) -> ConsoleResponse {
        let spec = RecordingSpec::new(
            RecordingId::new(id).unwrap(),
            format!("https://class.example/{}", "x".repeat(2000)),
        );
        request(d, ConsoleRequest::StartRecording(spec))
    }

    fn ready(d: &mut Driver) -> Result<(), String> {
        let (reply, mut rx) = oneshot::channel();
        d.turn(vec![Cmd::Ready { reply }], false);
        rx.try_recv().unwrap()
    }

    /// A store that fills up (SQLite's page limit stands in for a full
    /// disk here; tests/ does it with a real tmpfs): what was acknowledged
    /// stays, what was refused leaves no trace, readiness says why, and the
    /// driver recovers by itself when there is room again.
    #[test]
    fn a_full_store_refuses_requests_changes_nothing_and_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        let store = Store::open(&path).unwrap();
        let fleet = Fleet::new(FleetSettings::default(), 1, Vec::new());
        let mut d = Driver::new(fleet, store, None);
        let pages: i64 = d
            .store
            .sqlite()
            .unwrap()
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .unwrap();
        d.store
            .sqlite()
            .unwrap()
            .pragma_update(None, "max_page_count", pages + 8)
            .unwrap();
        let mut accepted = Vec::new();
        let mut refused = None;
        for i in 0..200 {
            let id = format!("r{i:03}");
            match start(&mut d, &id) {
                ConsoleResponse::Started { .. } => accepted.push(id),
                ConsoleResponse::Error(e) => {
                    refused = Some((id, e));
                    break;
                }
                other => panic!("{other:?}"),
            }
        }
        let (id, e) = refused.expect("the store fills up");
        assert!(!accepted.is_empty());
        assert_eq!(e.code, ErrorCode::Unavailable);
        assert!(e.message.contains("nothing was changed"), "{}", e.message);
        let why = ready(&mut d).unwrap_err();
        assert!(why.contains("full"), "{why}");
        // memory went back to the store's truth: the refused one is unknown
        let show = request(
            &mut d,
            ConsoleRequest::ShowRecording {
                id: RecordingId::new(&id).unwrap(),
            },
        );
        assert!(
            matches!(show, ConsoleResponse::Error(ref e) if e.code == ErrorCode::NotFound),
            "{show:?}"
        );
        // room again: the next tick's probe finds it, and requests succeed
        d.store
            .sqlite()
            .unwrap()
            .pragma_update(None, "max_page_count", 1_000_000)
            .unwrap();
        d.turn(Vec::new(), true);
        assert_eq!(ready(&mut d), Ok(()));
        assert!(matches!(
            start(&mut d, &id),
            ConsoleResponse::Started { .. }
        ));
        // everything acknowledged is in the store, as a restart reads it
        drop(d);
        let store = Store::open(&path).unwrap();
        let rows = store.recordings().unwrap();
        assert_eq!(rows.len(), accepted.len() + 1);
        assert!(rows.iter().all(|r| r.state == RecordingState::Pending));
    }

    #[test]
    fn lists_are_paged_from_the_store_and_old_recordings_are_shown_from_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store.db")).unwrap();
        let fleet = Fleet::new(FleetSettings::default(), 1, Vec::new());
        let mut d = Driver::new(fleet, store, None);
        for i in 0..25 {
            assert!(matches!(
                start(&mut d, &format!("r{i:03}")),
                ConsoleResponse::Started { .. }
            ));
        }
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = request(
                &mut d,
                ConsoleRequest::ListRecordingsPage {
                    states: vec![],
                    limit: 10,
                    after: after.clone(),
                },
            );
            let ConsoleResponse::RecordingsPage { recordings, next } = page else {
                panic!("{page:?}")
            };
            assert!(recordings.len() <= 10);
            seen.extend(recordings.into_iter().map(|r| r.id.to_string()));
            match next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        let want: Vec<String> = (0..25).map(|i| format!("r{i:03}")).collect();
        assert_eq!(seen, want);
        let bad = request(
            &mut d,
            ConsoleRequest::ListRecordingsPage {
                states: vec![],
                limit: 10,
                after: Some("garbage".into()),
            },
        );
        assert!(
            matches!(bad, ConsoleResponse::Error(ref e) if e.code == ErrorCode::InvalidInput),
            "{bad:?}"
        );
        // a recording no longer in memory is shown from the store
        let id = RecordingId::new("r003").unwrap();
        d.fleet.restore(&id, None);
        let shown = request(&mut d, ConsoleRequest::ShowRecording { id });
        assert!(matches!(shown, ConsoleResponse::Recording(_)), "{shown:?}");
    }
}
