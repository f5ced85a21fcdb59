//! Several coordinators on one PostgreSQL: each is a standby until it takes
//! the lease, then leads until it is deposed, cannot renew in time, or is
//! told to stop. A standby answers every client with where the leader is
//! (`server::standby`); a leader runs the whole coordinator ([`super::start`])
//! with its store fenced by its term. Stepping down tears the leader down
//! at once (no more sends, no more replies) and goes back to standby.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use recfleet_certs::TlsMaterial;
use recfleet_protocol::quic::TransportSettings;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

use super::database::DbTarget;
use super::lease::pg::{self as lease_db, Candidate, LeaseError};
use super::lease::timing::{Leadership, Role, StepDown};
use super::lease::{LeaseSettings, Term};
use super::store::{pg::Fence, redact_url, Store};
use super::{server, start, CoordinatorProbe, CoordinatorSettings, Leading, SHUTDOWN_GRACE};
use crate::exit::Failure;

/// What the lease says of this coordinator, for /metrics and /readyz.
#[derive(Debug)]
pub struct HaStatus {
    registry: Registry,
    leader: Gauge,
    term: Gauge,
    renewal: Histogram,
}

impl HaStatus {
    fn new() -> Self {
        let mut registry = Registry::default();
        let leader = Gauge::default();
        let term = Gauge::default();
        let renewal = Histogram::new([0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0]);
        registry.register(
            "recfleet_coordinator_leader",
            "1 while this coordinator leads, 0 while it is a standby",
            leader.clone(),
        );
        registry.register(
            "recfleet_coordinator_term",
            "The leadership term this coordinator leads, or last saw",
            term.clone(),
        );
        registry.register_with_unit(
            "recfleet_lease_renewal",
            "Time for the database to renew the leader's lease",
            Unit::Seconds,
            renewal.clone(),
        );
        HaStatus {
            registry,
            leader,
            term,
            renewal,
        }
    }

    /// The metrics in text form (OpenMetrics, without the final `# EOF`).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            return String::new();
        }
        out.trim_end_matches("# EOF\n").to_string()
    }
}

/// Runs a coordinator of several on the PostgreSQL at `url` until
/// SIGTERM/SIGINT.
pub async fn run(
    settings: CoordinatorSettings,
    target: DbTarget,
    probe: Arc<CoordinatorProbe>,
) -> Result<(), Failure> {
    let lease = LeaseSettings {
        ttl: Duration::from_millis(settings.lease_ttl_ms),
        renew_every: Duration::from_millis(settings.lease_renew_ms),
        margin: Duration::from_millis(settings.lease_ttl_ms / 6),
    };
    lease.check().map_err(Failure::invalid)?;
    let name = settings.name.clone().unwrap_or_else(host_name);
    let advertise = settings
        .advertise
        .clone()
        .unwrap_or_else(|| advertised(&settings));
    let me = Candidate::new(&name, &advertise);
    let (ca, cert, key) = settings.tls_paths();
    let tls =
        TlsMaterial::load(&ca, &cert, &key).map_err(|e| Failure::invalid(format!("tls: {e}")))?;
    let transport = TransportSettings {
        keep_alive: Duration::from_millis(settings.keep_alive_ms),
        idle_timeout: Duration::from_millis(settings.idle_timeout_ms),
    };
    let status = Arc::new(HaStatus::new());
    probe.set_ha(status.clone());
    let mut ha = Ha {
        target,
        me,
        lease,
        leadership: Leadership::new(lease),
        db: None,
        status,
        leader: watch::channel(None).0,
    };
    tracing::info!(name = %ha.me.name, advertise = %ha.me.address, store = %redact_url(&ha.target.url),
        ttl_ms = settings.lease_ttl_ms, renew_ms = settings.lease_renew_ms, "coordinator of several starting as a standby");
    crate::health::notify_ready();
    let terminated = crate::signals::wait_for_termination();
    tokio::pin!(terminated);
    loop {
        probe.set(Err(ha.standby_reason()));
        let Some((term, sent, endpoint)) = ha
            .standby(&settings, &tls, transport, &probe, &mut terminated)
            .await?
        else {
            return Ok(());
        };
        ha.leadership.acquired(term, sent.into_std());
        if !ha
            .lead(&settings, term, endpoint, &probe, &mut terminated)
            .await
        {
            return Ok(());
        }
    }
}

/// The lease loop's state.
struct Ha {
    target: DbTarget,
    me: Candidate,
    lease: LeaseSettings,
    leadership: Leadership,
    /// The lease's own connection (made again after a failure).
    db: Option<Client>,
    status: Arc<HaStatus>,
    /// Where the leader is, as standbys tell clients.
    leader: watch::Sender<Option<String>>,
}

impl Ha {
    fn within(&self) -> Duration {
        self.lease.renew_every
    }

    fn standby_reason(&self) -> String {
        match &*self.leader.borrow() {
            Some(l) => format!("standby: the leader is at {l}"),
            None => "standby: no leader known yet".into(),
        }
    }

    /// Makes the lease's connection if there is none (or it broke).
    async fn connect(&mut self) -> Result<(), LeaseError> {
        if self.db.as_ref().is_none_or(Client::is_closed) {
            let mut c = lease_db::connect(&self.target, self.within()).await?;
            lease_db::ensure_schema(&mut c, self.within()).await?;
            self.db = Some(c);
        }
        Ok(())
    }

    fn db_failed(&mut self, e: &LeaseError, what: &str) {
        tracing::warn!(error = %e, "{what}");
        if !matches!(e, LeaseError::Deposed) {
            self.db = None;
        }
    }

    /// Serves as a standby until this coordinator takes the lease: its term,
    /// when the request left, and the endpoint to lead on. `None`: told to
    /// stop.
    async fn standby(
        &mut self,
        settings: &CoordinatorSettings,
        tls: &TlsMaterial,
        transport: TransportSettings,
        probe: &CoordinatorProbe,
        terminated: &mut std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
    ) -> Result<Option<(Term, Instant, quinn::Endpoint)>, Failure> {
        self.status.leader.set(0);
        let endpoint = super::bind(settings.listen, tls, transport).await?;
        let stop = CancellationToken::new();
        let serving = tokio::spawn(server::standby::serve(
            endpoint.clone(),
            self.leader.subscribe(),
            stop.clone(),
        ));
        // The next try: a renewal period away, or just after the lease
        // expires if that is sooner (a takeover then costs the TTL only).
        let mut next_try = Instant::now();
        let taken = loop {
            tokio::select! {
                _ = tokio::time::sleep_until(next_try) => {}
                _ = terminated.as_mut() => break None,
            }
            next_try = Instant::now() + self.lease.renew_every;
            let (ttl, within) = (self.lease.ttl, self.within());
            let sent = Instant::now();
            let me = self.me.clone();
            let tried = match self.connect().await {
                Ok(()) => {
                    let db = self.db.as_ref().expect("connected");
                    match lease_db::try_acquire(db, &me, ttl, within).await {
                        Ok(Some(term)) => Ok(Some(term)),
                        Ok(None) => match lease_db::current(db, within).await {
                            Ok(r) => {
                                let _ =
                                    lease_db::heartbeat(db, &me, "standby", r.term, within).await;
                                let known = (r.expires_in_ms > 0 && !r.address.is_empty())
                                    .then_some(r.address);
                                if r.expires_in_ms >= 0 {
                                    let expiry = Instant::now()
                                        + Duration::from_millis(r.expires_in_ms as u64 + 20);
                                    next_try = next_try.min(expiry);
                                }
                                self.status.term.set(r.term.0 as i64);
                                self.leader.send_replace(known);
                                Ok(None)
                            }
                            Err(e) => Err(e),
                        },
                        Err(e) => Err(e),
                    }
                }
                Err(e) => Err(e),
            };
            match tried {
                Ok(Some(term)) => break Some((term, sent)),
                Ok(None) => probe.set(Err(self.standby_reason())),
                Err(e) => {
                    self.db_failed(&e, "standby: the lease cannot be read");
                    self.leader.send_replace(None);
                    probe.set(Err(format!("standby: the database is unreachable: {e}")));
                }
            }
        };
        stop.cancel();
        let _ = serving.await;
        match taken {
            Some((term, sent)) => Ok(Some((term, sent, endpoint))),
            None => {
                endpoint.close(0u32.into(), b"shutting down");
                Ok(None)
            }
        }
    }

    /// Leads `term` until deposed, out of time or told to stop. False:
    /// told to stop (the lease is released for a quick takeover).
    async fn lead(
        &mut self,
        settings: &CoordinatorSettings,
        term: Term,
        endpoint: quinn::Endpoint,
        probe: &CoordinatorProbe,
        terminated: &mut std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
    ) -> bool {
        tracing::info!(term = term.0, "leading");
        if let Some(db) = &self.db {
            let _ = lease_db::heartbeat(db, &self.me, "leader", term, self.within()).await;
        }
        self.status.leader.set(1);
        self.status.term.set(term.0 as i64);
        self.leader.send_replace(Some(self.me.address.clone()));
        let fence = Fence {
            holder: self.me.holder.clone(),
            term,
        };
        let deposed = CancellationToken::new();
        let shutdown = CancellationToken::new();
        // Until the lease's local deadline, the store must open and the
        // state load; past it, this leadership is over anyway.
        let started = match self.deadline() {
            Some(until) => tokio::time::timeout_at(until, async {
                let store = Store::open_postgres(&self.target, self.within() * 5, Some(fence))
                    .await
                    .map_err(|e| Failure::unavailable(e.to_string()))?;
                let leading = Leading {
                    term,
                    deposed: deposed.clone(),
                    endpoint: Some(endpoint.clone()),
                };
                start(settings.clone(), store, shutdown.clone(), Some(leading)).await
            })
            .await
            .unwrap_or_else(|_| Err(Failure::unavailable("the lease ran out while loading"))),
            None => Err(Failure::unavailable("the lease ran out before loading")),
        };
        let running = match started {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "cannot lead; back to standby");
                self.release(term).await;
                self.leadership.deposed();
                return true;
            }
        };
        probe.set(Ok(running.fleet.clone()));
        tracing::info!(term = term.0, addr = %running.addr, "leader ready");
        let mut next_renewal = Instant::now() + self.lease.renew_every;
        let stop = loop {
            let Some(until) = self.deadline() else {
                break Some(StepDown::Expired);
            };
            tokio::select! {
                _ = tokio::time::sleep_until(next_renewal.min(until)) => {}
                _ = deposed.cancelled() => break self.leadership.deposed(),
                _ = terminated.as_mut() => break None,
            }
            if let Some(why) = self.leadership.check(Instant::now().into_std()) {
                break Some(why);
            }
            if Instant::now() < next_renewal {
                continue;
            }
            next_renewal = Instant::now() + self.lease.renew_every;
            match self.renew(term).await {
                Ok(()) => {}
                Err(LeaseError::Deposed) => break self.leadership.deposed(),
                Err(e) => self.db_failed(&e, "the lease could not be renewed; trying again"),
            }
        };
        // Stop acting at once: the server closes every connection, the
        // driver's writes are fenced, nothing more is sent or answered.
        shutdown.cancel();
        self.status.leader.set(0);
        self.leader.send_replace(None);
        match stop {
            Some(why) => {
                tracing::error!(term = term.0, reason = ?why, "stepped down: no longer the leader");
                probe.set(Err(format!(
                    "standby: stepped down from term {} ({why:?})",
                    term.0
                )));
            }
            None => {
                tracing::info!("shutting down");
                probe.set(Err("shutting down".into()));
            }
        }
        if tokio::time::timeout(SHUTDOWN_GRACE, running.stopped())
            .await
            .is_err()
        {
            tracing::error!(grace = ?SHUTDOWN_GRACE, "the fleet did not stop within its grace");
        }
        if stop.is_none() {
            // A clean stop hands the lease over at once, not after the TTL.
            self.release(term).await;
            self.leadership.deposed();
            return false;
        }
        true
    }

    /// The local deadline of the current leadership, if still leading.
    fn deadline(&self) -> Option<Instant> {
        match self.leadership.role() {
            Role::Leader { until, .. } if std::time::Instant::now() < until => {
                Some(Instant::from_std(until))
            }
            _ => None,
        }
    }

    async fn renew(&mut self, term: Term) -> Result<(), LeaseError> {
        // A renewal answered after the deadline is of no use: the whole
        // attempt, connecting again included, ends by then.
        let within = self
            .deadline()
            .map_or(Duration::ZERO, |d| {
                d.saturating_duration_since(Instant::now())
            })
            .min(self.within());
        tokio::time::timeout(within, self.try_renew(term, within))
            .await
            .unwrap_or(Err(LeaseError::Timeout(within)))
    }

    async fn try_renew(&mut self, term: Term, within: Duration) -> Result<(), LeaseError> {
        let (ttl, me) = (self.lease.ttl, self.me.clone());
        let sent = std::time::Instant::now();
        self.connect().await?;
        let db = self.db.as_ref().expect("connected");
        lease_db::renew(db, &me, term, ttl, within).await?;
        let _ = lease_db::heartbeat(db, &me, "leader", term, within).await;
        self.leadership.renewed(sent);
        self.status.renewal.observe(sent.elapsed().as_secs_f64());
        Ok(())
    }

    async fn release(&mut self, term: Term) {
        let (me, within) = (self.me.clone(), self.within());
        if self.connect().await.is_ok() {
            let db = self.db.as_ref().expect("connected");
            if let Err(e) = lease_db::release(db, &me, term, within).await {
                tracing::warn!(error = %e, "the lease could not be released; a standby takes over when it expires");
            }
        }
    }
}

/// This machine's host name (the default coordinator name).
fn host_name() -> String {
    crate::host_name().unwrap_or_else(|| "coordinator".into())
}

/// The address clients are told: the listen address, or the host name with
/// its port when it listens on every address.
fn advertised(settings: &CoordinatorSettings) -> String {
    if settings.listen.ip().is_unspecified() {
        format!("{}:{}", host_name(), settings.listen.port())
    } else {
        settings.listen.to_string()
    }
}
