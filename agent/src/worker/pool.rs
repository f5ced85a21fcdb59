//! The warm pool: a worker keeps `target` ready slots (see `ready.rs`) and
//! refills it in the background. A start takes a ready slot when one fits.
//!
//! The refill waits while a part of a recording starts, while an encoder of
//! the worker is behind, and [`REFILL_AFTER_TAKE`] after a slot is taken:
//! starting a browser costs about a core-second, which the recordings need
//! more. A draining or stopping worker keeps no
//! ready slot; a ready slot whose process dies is torn down and replaced;
//! slots that fail to start are retried with a capped backoff.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use recfleet_protocol::egress::UrlPolicy;
use recfleet_protocol::spec::RecordingSpec;

use super::cgroup::Hierarchy;
use super::config::EngineConfig;
use super::ready::{ReadySlot, Shape};

/// After a take, the pool waits this long before it starts the next slot.
pub const REFILL_AFTER_TAKE: Duration = Duration::from_secs(3);

/// How often the pool looks at its slots.
const TICK: Duration = Duration::from_millis(250);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What the pool shows of itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolView {
    /// Slots ready now.
    pub ready: u32,
    /// Slots it keeps ready when it can.
    pub target: u32,
    /// Tags of the ready slots' processes (their idle cost is measured
    /// from them).
    pub tags: Vec<String>,
}

struct State {
    ready: Vec<ReadySlot>,
    paused: bool,
    last_take: Option<Instant>,
    failures: u32,
    retry_at: Option<Instant>,
}

/// The pool. Shared behind an `Arc`; its refill task runs until [`close`].
///
/// [`close`]: WarmPool::close
pub struct WarmPool {
    target: usize,
    shape: Shape,
    config: Arc<EngineConfig>,
    instance: String,
    cgroups: Option<Arc<Hierarchy>>,
    policy: Arc<Mutex<Arc<UrlPolicy>>>,
    state: Mutex<State>,
    counter: AtomicU64,
    closed: AtomicBool,
    /// Parts bringing their processes up, until their first frame.
    starting: Arc<AtomicUsize>,
    /// The URL policy is the coordinator's (its welcome came): a slot
    /// started before would be started again at once.
    policy_known: AtomicBool,
    /// Whether a recording of the worker has its encoder behind (see
    /// [`BEHIND_MS`]): the pool does not take CPU from it then.
    behind: Box<dyn Fn() -> bool + Send + Sync>,
}

/// An encoder whose last frame is older than this is behind: it holds
/// frames a kill -9 would lose, and a browser starting beside it would
/// push it further behind (measured: 2.4 s behind after a start on two
/// busy cores, and 5.8 s of recording lost at a kill -9 when the pool
/// refilled beside it).
pub const BEHIND_MS: u64 = 1_500;

/// A part that is starting: the pool starts no ready slot meanwhile, so as
/// not to take CPU from it. Done at the first frame, or when dropped.
#[derive(Debug)]
pub struct StartTicket(Option<Arc<AtomicUsize>>);

impl StartTicket {
    /// The part is up (its first frame came).
    pub fn done(&mut self) {
        if let Some(n) = self.0.take() {
            n.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl Drop for StartTicket {
    fn drop(&mut self) {
        self.done();
    }
}

impl std::fmt::Debug for WarmPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WarmPool")
            .field("target", &self.target)
            .finish()
    }
}

impl WarmPool {
    /// A pool of `target` ready slots of `shape`; `policy` is the engine's
    /// current URL policy (each slot takes the one of its start).
    pub fn start(
        target: usize,
        shape: Shape,
        config: Arc<EngineConfig>,
        instance: String,
        cgroups: Option<Arc<Hierarchy>>,
        policy: Arc<Mutex<Arc<UrlPolicy>>>,
        behind: Box<dyn Fn() -> bool + Send + Sync>,
    ) -> Arc<WarmPool> {
        let pool = Arc::new(WarmPool {
            target,
            shape,
            config,
            instance,
            cgroups,
            policy,
            state: Mutex::new(State {
                ready: Vec::new(),
                paused: false,
                last_take: None,
                failures: 0,
                retry_at: None,
            }),
            counter: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            starting: Arc::new(AtomicUsize::new(0)),
            policy_known: AtomicBool::new(false),
            behind,
        });
        if target > 0 {
            tokio::spawn(pool.clone().refill());
        }
        pool
    }

    /// Takes a ready slot that fits `spec`, if there is one.
    pub fn take(&self, spec: &RecordingSpec) -> Option<ReadySlot> {
        let shape = Shape::of(spec)?;
        let mut st = lock(&self.state);
        let i = st.ready.iter().position(|s| s.shape() == shape)?;
        st.last_take = Some(Instant::now());
        Some(st.ready.swap_remove(i))
    }

    /// A part begins to start (see [`StartTicket`]).
    pub fn start_begins(&self) -> StartTicket {
        self.starting.fetch_add(1, Ordering::SeqCst);
        StartTicket(Some(self.starting.clone()))
    }

    /// Pauses (draining: no ready slot is kept, those there are torn down)
    /// or resumes the pool.
    pub fn pause(&self, paused: bool) {
        let gone = {
            let mut st = lock(&self.state);
            st.paused = paused;
            if paused {
                std::mem::take(&mut st.ready)
            } else {
                Vec::new()
            }
        };
        discard_all(gone);
    }

    /// The engine has its coordinator's URL policy: the pool may fill.
    pub fn policy_known(&self) {
        self.policy_known.store(true, Ordering::SeqCst);
    }

    /// Tears the ready slots down so that new ones start with what changed
    /// (the URL policy).
    pub fn renew(&self) {
        let gone = std::mem::take(&mut lock(&self.state).ready);
        discard_all(gone);
    }

    /// Stops refilling and tears every ready slot down (the worker stops).
    pub async fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let gone = std::mem::take(&mut lock(&self.state).ready);
        for s in gone {
            s.discard().await;
        }
    }

    /// What the pool holds now.
    pub fn view(&self) -> PoolView {
        let st = lock(&self.state);
        PoolView {
            ready: st.ready.len() as u32,
            target: self.target as u32,
            tags: st.ready.iter().map(|s| s.tag().to_string()).collect(),
        }
    }

    async fn refill(self: Arc<Self>) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while !self.closed.load(Ordering::SeqCst) {
            tick.tick().await;
            self.drop_dead();
            if !self.wants_one() {
                continue;
            }
            let n = self.counter.fetch_add(1, Ordering::SeqCst);
            let name = format!("r{n}");
            let policy = lock(&self.policy).clone();
            let started = ReadySlot::start(
                &self.config,
                &self.instance,
                &name,
                self.shape,
                policy.clone(),
                self.cgroups.as_deref(),
            )
            .await;
            match started {
                Ok(slot) => {
                    tracing::debug!(tag = slot.tag(), "a ready slot is waiting");
                    // The policy changed while it started (the
                    // coordinator's welcome came): it is not served.
                    let stale = !Arc::ptr_eq(&policy, &lock(&self.policy));
                    let late = {
                        let mut st = lock(&self.state);
                        st.failures = 0;
                        st.retry_at = None;
                        if st.paused || stale || self.closed.load(Ordering::SeqCst) {
                            Some(slot)
                        } else {
                            st.ready.push(slot);
                            None
                        }
                    };
                    if let Some(slot) = late {
                        slot.discard().await;
                    }
                }
                Err(e) => {
                    let mut st = lock(&self.state);
                    let wait = crate::backoff::delay(
                        st.failures,
                        Duration::from_secs(1),
                        Duration::from_secs(60),
                        fastrand::f64(),
                    );
                    st.failures += 1;
                    st.retry_at = Some(Instant::now() + wait);
                    tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "a ready slot did not start");
                }
            }
        }
    }

    /// Whether the pool should start a slot now.
    fn wants_one(&self) -> bool {
        // Asked before the state's lock is taken: it takes the engine's.
        let behind = (self.behind)();
        let st = lock(&self.state);
        let now = Instant::now();
        !st.paused
            && self.policy_known.load(Ordering::SeqCst)
            && st.ready.len() < self.target
            && self.starting.load(Ordering::SeqCst) == 0
            && st.retry_at.is_none_or(|t| now >= t)
            && st
                .last_take
                .is_none_or(|t| now.duration_since(t) >= REFILL_AFTER_TAKE)
            && !behind
    }

    /// Tears down ready slots one of whose processes exited.
    fn drop_dead(&self) {
        let dead: Vec<ReadySlot> = {
            let mut st = lock(&self.state);
            let mut dead = Vec::new();
            let mut i = 0;
            while i < st.ready.len() {
                if let Some(exit) = st.ready[i].dead() {
                    tracing::warn!(tag = st.ready[i].tag(), process = exit.name, status = %exit.status, "a ready slot lost a process; it is replaced");
                    dead.push(st.ready.swap_remove(i));
                } else {
                    i += 1;
                }
            }
            dead
        };
        discard_all(dead);
    }
}

fn discard_all(slots: Vec<ReadySlot>) {
    for s in slots {
        tokio::spawn(s.discard());
    }
}
