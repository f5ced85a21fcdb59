//! The webhook sender: a task on the runtime that attempts due deliveries,
//! at most `in_flight` at once, each within its deadline, and records each
//! outcome in the outbox.
//!
//! It has its own SQLite connection to the store (WAL, so its short writes
//! interleave with the driver's transactions; a busy timeout covers a
//! commit in progress) rather than going through the driver's command
//! queue: an outcome is no fleet input, and a receiver that is down must
//! not add a turn per failed attempt to the queue that workers and
//! consoles wait on. Its SQLite calls run on the blocking pool, never on a
//! runtime thread.
//!
//! At least once: a row is leased (its next attempt moved past the
//! attempt's deadline) when claimed, so that a process that dies with it
//! in flight sends it again after a restart; a clean stop releases the
//! leases at once.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use recfleet_protocol::now_ms;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::config::WebhookConfig;
use super::outbox::{self, Due};
use super::retry;
use super::sign::{self, EVENT_ID_HEADER, EVENT_TYPE_HEADER, SIGNATURE_HEADER};
use crate::coordinator::metrics::{label, Labels};
use crate::coordinator::store::db::{Db, DbError};

/// The outbox is looked at this often even without a wake-up (retries
/// come due, another process may have queued rows).
const POLL: Duration = Duration::from_secs(5);
/// A lease outlasts the attempt's deadline by this much.
const LEASE_MARGIN: Duration = Duration::from_secs(30);
/// After a store error, the next look waits at least this long.
const STORE_ERROR_PAUSE: Duration = Duration::from_secs(1);
/// How long the sender waits for SQLite's lock (the driver's commit).
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Bytes of a refusing receiver's answer kept with the error.
const ANSWER_KEPT: usize = 200;

/// The sender's metrics (handles into the coordinator's registry).
#[derive(Debug, Clone)]
pub struct SenderMetrics {
    /// Attempts by result: `delivered`, `retry`, `failed` (given up).
    pub deliveries: Family<Labels, Counter>,
    /// Deliveries not yet delivered nor given up.
    pub pending: Gauge,
}

/// The sender, ready to run.
#[derive(Debug)]
pub struct Sender {
    db: Arc<Mutex<Db>>,
    client: reqwest::Client,
    config: WebhookConfig,
    wake: Arc<Notify>,
    metrics: SenderMetrics,
}

type Attempt = (Due, Result<(), String>);

impl Sender {
    /// A sender on its own connection to the store (already migrated by
    /// the driver's store): an SQLite file's, or PostgreSQL's (fenced by the
    /// lease, as the driver's is).
    pub fn new(
        db: Db,
        config: WebhookConfig,
        wake: Arc<Notify>,
        metrics: SenderMetrics,
    ) -> Result<Sender, String> {
        // reqwest takes the process's rustls provider: ring, as everywhere
        // in recfleet (an error means one is installed already).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            // A signed body is not re-sent to wherever a redirect points.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(config.timeout)
            .timeout(config.timeout)
            .user_agent(concat!("recfleet/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("webhook sender: HTTP client: {e}"))?;
        Ok(Sender {
            db: Arc::new(Mutex::new(db)),
            client,
            config,
            wake,
            metrics,
        })
    }

    /// Sends until `shutdown`; then attempts in flight are dropped and
    /// their rows released for the next start.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut tasks: JoinSet<Attempt> = JoinSet::new();
        let mut in_flight: Vec<Due> = Vec::new();
        let timeout_ms = self.config.timeout.as_millis() as u64;
        let lease_ms = timeout_ms + LEASE_MARGIN.as_millis() as u64;
        loop {
            let mut pause = POLL;
            let free = self.config.in_flight.saturating_sub(tasks.len());
            if free > 0 {
                let now = now_ms();
                match self
                    .db(move |c| outbox::claim_due(c, now, now + lease_ms, free))
                    .await
                {
                    Ok(due) => {
                        for d in due {
                            in_flight.push(d.clone());
                            tasks.spawn(attempt(
                                self.client.clone(),
                                self.config.secret.expose().to_vec(),
                                d,
                                self.config.timeout,
                            ));
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "webhook sender: cannot read the outbox");
                        pause = STORE_ERROR_PAUSE;
                    }
                }
            }
            match self
                .db(|c| Ok((outbox::next_due(c)?, outbox::pending(c)?)))
                .await
            {
                Ok((next, pending)) => {
                    self.metrics.pending.set(pending as i64);
                    if let Some(at) = next {
                        let until = Duration::from_millis(at.saturating_sub(now_ms()));
                        pause = pause.min(until.max(Duration::from_millis(10)));
                    }
                }
                Err(_) => pause = pause.max(STORE_ERROR_PAUSE),
            }
            if tasks.len() >= self.config.in_flight {
                // Full: only a finished attempt makes room.
                pause = POLL;
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(pause) => {}
                Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                    if let Ok((d, result)) = done {
                        in_flight.retain(|x| !(x.event_id == d.event_id && x.url == d.url));
                        self.record(d, result).await;
                    }
                }
            }
        }
        tasks.abort_all();
        if !in_flight.is_empty() {
            let n = in_flight.len();
            let now = now_ms();
            let released = self.db(move |c| outbox::release(c, &in_flight, now)).await;
            match released {
                Ok(()) => tracing::info!(
                    deliveries = n,
                    "webhook sender stopped; deliveries in flight are sent again at the next start"
                ),
                Err(e) => {
                    tracing::warn!(error = %e, "webhook sender stopped; in-flight deliveries are retried after their lease")
                }
            }
        } else {
            tracing::info!("webhook sender stopped");
        }
    }

    /// Stores an attempt's outcome.
    async fn record(&self, d: Due, result: Result<(), String>) {
        let now = now_ms();
        let (outcome, label_value) = match &result {
            Ok(()) => (None, "delivered"),
            Err(_) => {
                let next = retry::after_failure(
                    &self.config.retry,
                    d.created_at,
                    d.attempts + 1,
                    now,
                    fastrand::f64(),
                );
                let l = match next {
                    retry::AfterFailure::RetryAt(_) => "retry",
                    retry::AfterFailure::GiveUp => "failed",
                };
                (Some(next), l)
            }
        };
        self.metrics
            .deliveries
            .get_or_create(&label("result", label_value))
            .inc();
        match (&result, outcome) {
            (Ok(()), _) => {
                tracing::info!(event = %d.event_id, url = %d.url, attempts = d.attempts + 1, "webhook delivered")
            }
            (Err(e), Some(retry::AfterFailure::GiveUp)) => {
                tracing::warn!(event = %d.event_id, url = %d.url, attempts = d.attempts + 1, error = %e, "webhook failed for good: its retry window is over")
            }
            (Err(e), _) => {
                tracing::info!(event = %d.event_id, url = %d.url, attempts = d.attempts + 1, error = %e, "webhook attempt failed; retrying")
            }
        }
        let written = self
            .db(move |c| match (result, outcome) {
                (Ok(()), _) => outbox::delivered(c, &d, now),
                (Err(e), Some(next)) => outbox::failed(c, &d, &e, next),
                (Err(e), None) => outbox::failed(c, &d, &e, retry::AfterFailure::RetryAt(now)),
            })
            .await;
        if let Err(e) = written {
            // The lease brings the row back: it is sent again (at least once).
            tracing::warn!(error = %e, "webhook sender: cannot record an attempt");
        }
    }

    /// Runs `f` on the connection, on the blocking pool.
    async fn db<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Db) -> Result<T, DbError> + Send + 'static,
    ) -> Result<T, String> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let conn = db.lock().unwrap_or_else(|e| e.into_inner());
            f(&conn)
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
    }
}

/// One POST of a delivery, signed now; `Ok` for a 2xx answer.
async fn attempt(client: reqwest::Client, secret: Vec<u8>, d: Due, timeout: Duration) -> Attempt {
    let t = now_ms() / 1000;
    let signature = sign::sign(&secret, t, d.body.as_bytes());
    let request = client
        .post(&d.url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(SIGNATURE_HEADER, signature)
        .header(EVENT_ID_HEADER, &d.event_id)
        .header(EVENT_TYPE_HEADER, &d.event_type)
        .body(d.body.clone());
    // reqwest's own timeout covers the request; this one bounds reading the
    // refusal's text as well.
    let result = match tokio::time::timeout(timeout, async {
        let response = request.send().await.map_err(|e| describe(&e))?;
        let status = response.status();
        if retry::delivered(status.as_u16()) {
            return Ok(());
        }
        let text = response.text().await.unwrap_or_default();
        let text: String = text.chars().take(ANSWER_KEPT).collect();
        Err(if text.trim().is_empty() {
            format!("HTTP {status}")
        } else {
            format!("HTTP {status}: {}", text.trim())
        })
    })
    .await
    {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {timeout:?}")),
    };
    (d, result)
}

/// A reqwest error with its causes (its Display alone often says only
/// "error sending request").
fn describe(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}
