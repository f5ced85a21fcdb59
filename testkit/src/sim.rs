//! Simulated workers: real QUIC connections with real agent certificates,
//! speaking the worker protocol (hello, telemetry at the asked rate, pongs)
//! and claiming fake slots: a StartSegment is answered at once with
//! SegmentStarted and FirstFrame, a StopSegment with SegmentEnded and
//! PlacementEnded. Telemetry carries a timestamp (µs since [`stamp_base`])
//! in fields that reach the console's events, so the console measures the
//! event latency: `rss_bytes` (in WorkerChanged) and each slot's `bytes`
//! (in RecordingChanged).
//!
//! [`SimFleet`] issues the certificates of many and connects them.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use quinn::{Endpoint, VarInt};
use recfleet_certs::TlsMaterial;
use recfleet_protocol::quic;
use recfleet_protocol::{
    now_ms, CoordinatorMessage, Epoch, OpenStream, RecordingId, SegmentReport, SlotProgress,
    WorkerHello, WorkerMessage, WorkerName, WorkerTelemetry,
};
use tokio::sync::{mpsc, Semaphore};

use crate::pki::Pki;

static BASE: OnceLock<Instant> = OnceLock::new();

/// The instant stamps count from (shared by the simulated workers and the
/// console subscriber, which live in the same process).
pub fn stamp_base() -> Instant {
    *BASE.get_or_init(Instant::now)
}

/// Microseconds since [`stamp_base`] (never 0).
pub fn stamp_now() -> u64 {
    stamp_base().elapsed().as_micros() as u64 + 1
}

/// Counters shared by all simulated workers.
#[derive(Debug, Default)]
pub struct Counters {
    /// Telemetry frames written.
    pub telemetry: AtomicU64,
    /// StartSegment received.
    pub starts: AtomicU64,
    /// StopSegment received.
    pub stops: AtomicU64,
    /// Connections that ended.
    pub closed: AtomicU64,
}

/// A quinn client config for one agent certificate, with recfleet's
/// transport settings (keep-alive 500 ms, idle timeout 3 s).
pub fn client_config(material: &TlsMaterial) -> anyhow::Result<quinn::ClientConfig> {
    let rustls = recfleet_certs::client_config(material, &[recfleet_protocol::version::ALPN])?;
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(rustls)?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    let mut t = quinn::TransportConfig::default();
    t.keep_alive_interval(Some(Duration::from_millis(500)));
    t.max_idle_timeout(Some(Duration::from_secs(3).try_into()?));
    t.max_concurrent_bidi_streams(VarInt::from_u32(0));
    t.max_concurrent_uni_streams(VarInt::from_u32(0));
    config.transport_config(Arc::new(t));
    Ok(config)
}

/// Connects one simulated worker and runs it in the background until the
/// connection ends; returns once the coordinator said Welcome.
pub async fn connect(
    endpoint: &Endpoint,
    config: quinn::ClientConfig,
    addr: SocketAddr,
    name: &str,
    capacity: u32,
    counters: Arc<Counters>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let conn = endpoint.connect_with(config, addr, "localhost")?.await?;
    let (mut send, mut recv) = conn.open_bi().await?;
    let hello = WorkerHello {
        name: WorkerName::new(name)?,
        version: "sim".into(),
        capacity,
        labels: BTreeMap::new(),
        running: Vec::new(),
        draining: false,
        host: String::new(),
    };
    quic::write_frame(&mut send, &OpenStream::Worker(hello)).await?;
    let interval = match quic::read_frame::<CoordinatorMessage>(&mut recv).await? {
        Some(CoordinatorMessage::Welcome {
            telemetry_interval_ms,
            ..
        }) => Duration::from_millis(u64::from(telemetry_interval_ms.max(100))),
        other => anyhow::bail!("{name}: no welcome: {other:?}"),
    };
    let (tx, mut rx) = mpsc::unbounded_channel::<WorkerMessage>();
    let writer = tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            if quic::write_frame(&mut send, &m).await.is_err() {
                break;
            }
        }
    });
    let slots: Arc<Mutex<Vec<(RecordingId, Epoch, u64)>>> = Arc::default();
    let telemetry = {
        let (tx, slots, counters) = (tx.clone(), slots.clone(), counters.clone());
        tokio::spawn(async move {
            // Spread the workers over the period, as real ones are.
            let phase = Duration::from_micros(stamp_now() % interval.as_micros() as u64);
            tokio::time::sleep(phase).await;
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut frames = 0u64;
            loop {
                tick.tick().await;
                frames += 15;
                let stamp = stamp_now();
                let now = now_ms();
                let slots: Vec<SlotProgress> = slots
                    .lock()
                    .map(|s| s.clone())
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(id, epoch, started)| SlotProgress {
                        recording: Some(id),
                        epoch,
                        part: 0,
                        frames,
                        fps_milli: 15_000,
                        repeated_permille: 0,
                        bytes: stamp,
                        media_ms: now.saturating_sub(started),
                        restarts: 0,
                        last_frame_at: Some(now),
                        upload_lag_ms: 0,
                        ..Default::default()
                    })
                    .collect();
                let t = WorkerTelemetry {
                    at: now,
                    cpu_millicores: 50,
                    rss_bytes: stamp,
                    slots,
                    upload_buffer_bytes: 0,
                    upload_buffer_full: false,
                    ready: Default::default(),
                    // Simulated workers measure nothing: slots alone count.
                    capacity: Default::default(),
                };
                if tx.send(WorkerMessage::Telemetry(t)).is_err() {
                    break;
                }
                counters.telemetry.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    Ok(tokio::spawn(async move {
        let _conn = conn;
        while let Ok(Some(msg)) = quic::read_frame::<CoordinatorMessage>(&mut recv).await {
            match msg {
                CoordinatorMessage::Ping { id, payload } => {
                    let _ = tx.send(WorkerMessage::Pong { id, payload });
                }
                CoordinatorMessage::StartSegment { epoch, spec, .. } => {
                    counters.starts.fetch_add(1, Ordering::Relaxed);
                    let at = now_ms();
                    let id = spec.id.clone();
                    if let Ok(mut s) = slots.lock() {
                        s.push((id.clone(), epoch, at));
                    }
                    let file = format!("{id}/{epoch}-0.mp4");
                    let _ = tx.send(WorkerMessage::SegmentStarted {
                        recording: id.clone(),
                        epoch,
                        part: 0,
                        file,
                        at,
                    });
                    let _ = tx.send(WorkerMessage::FirstFrame {
                        recording: id,
                        epoch,
                        part: 0,
                        at,
                    });
                }
                CoordinatorMessage::StopSegment {
                    recording,
                    epoch,
                    reason,
                } => {
                    counters.stops.fetch_add(1, Ordering::Relaxed);
                    let started = slots.lock().ok().and_then(|mut s| {
                        let i = s.iter().position(|x| x.0 == recording && x.1 == epoch)?;
                        Some(s.remove(i).2)
                    });
                    let now = now_ms();
                    let started = started.unwrap_or(now);
                    let _ = tx.send(WorkerMessage::SegmentEnded(SegmentReport {
                        recording: recording.clone(),
                        epoch,
                        part: 0,
                        file: format!("{recording}/{epoch}-0.mp4"),
                        bytes: 0,
                        sha256: String::new(),
                        started_at: started,
                        ended_at: now,
                        first_frame_at: Some(started),
                        last_frame_at: Some(now),
                        reason: reason.clone(),
                    }));
                    let _ = tx.send(WorkerMessage::PlacementEnded {
                        recording,
                        epoch,
                        reason,
                    });
                }
                _ => {}
            }
        }
        telemetry.abort();
        writer.abort();
        counters.closed.fetch_add(1, Ordering::Relaxed);
    }))
}

/// How a [`SimFleet`] connects.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Capacity each simulated worker offers.
    pub capacity: u32,
    /// Handshakes in flight at once.
    pub concurrency: usize,
    /// Simulated workers per client UDP socket.
    pub per_endpoint: usize,
    /// No handshake starts after this.
    pub deadline: Option<Instant>,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            capacity: 4,
            concurrency: 32,
            per_endpoint: 500,
            deadline: None,
        }
    }
}

/// Client configs of simulated workers `names`, their agent certificates
/// issued in memory by `pki` (on two blocking threads: issuing is the slow
/// part of a large fleet).
pub async fn client_configs(
    pki: &Arc<Pki>,
    names: &[String],
) -> anyhow::Result<Vec<(String, quinn::ClientConfig)>> {
    const THREADS: usize = 2;
    let mut handles = Vec::new();
    for k in 0..THREADS {
        let pki = pki.clone();
        let names: Vec<(usize, String)> = names
            .iter()
            .cloned()
            .enumerate()
            .skip(k)
            .step_by(THREADS)
            .collect();
        handles.push(tokio::task::spawn_blocking(move || {
            names
                .into_iter()
                .map(|(i, name)| {
                    let m = pki.issue(recfleet_certs::Role::Agent, &name)?;
                    Ok((i, name, client_config(&m)?))
                })
                .collect::<anyhow::Result<Vec<_>>>()
        }));
    }
    let mut configs = Vec::with_capacity(names.len());
    for h in handles {
        configs.extend(h.await??);
    }
    configs.sort_by_key(|(i, _, _)| *i);
    Ok(configs.into_iter().map(|(_, n, c)| (n, c)).collect())
}

/// Many simulated workers connected to one coordinator; they disconnect
/// when it is dropped (or [`SimFleet::close`]d).
#[derive(Debug)]
pub struct SimFleet {
    /// Counters of all of them.
    pub counters: Arc<Counters>,
    /// Handshakes that failed.
    pub failed: usize,
    /// Handshakes not started before the deadline.
    pub not_started: usize,
    /// The first failure, for the report.
    pub first_error: Option<String>,
    endpoints: Vec<Endpoint>,
    workers: Vec<(String, tokio::task::JoinHandle<()>)>,
}

impl SimFleet {
    /// Connects one simulated worker per config, `opts.concurrency`
    /// handshakes at a time; returns once each said Welcome or failed.
    pub async fn connect(
        addr: SocketAddr,
        configs: Vec<(String, quinn::ClientConfig)>,
        opts: &SimOptions,
    ) -> anyhow::Result<SimFleet> {
        let counters = Arc::new(Counters::default());
        let endpoints: Vec<Endpoint> = (0..configs.len().div_ceil(opts.per_endpoint.max(1)))
            .map(|_| Endpoint::client(([0, 0, 0, 0], 0).into()))
            .collect::<Result<_, _>>()?;
        let sem = Arc::new(Semaphore::new(opts.concurrency.max(1)));
        let total = configs.len();
        let mut joins = Vec::new();
        for (i, (name, config)) in configs.into_iter().enumerate() {
            let permit = sem.clone().acquire_owned().await?;
            if opts.deadline.is_some_and(|d| Instant::now() > d) {
                break;
            }
            let ep = endpoints[i / opts.per_endpoint.max(1)].clone();
            let (counters, capacity) = (counters.clone(), opts.capacity);
            joins.push(tokio::spawn(async move {
                let r = connect(&ep, config, addr, &name, capacity, counters).await;
                drop(permit);
                r.map(|h| (name, h))
            }));
        }
        let mut fleet = SimFleet {
            counters,
            failed: 0,
            not_started: total - joins.len(),
            first_error: None,
            endpoints,
            workers: Vec::new(),
        };
        for j in joins {
            match j.await? {
                Ok(w) => fleet.workers.push(w),
                Err(e) => {
                    fleet.failed += 1;
                    fleet.first_error.get_or_insert(format!("{e:#}"));
                }
            }
        }
        Ok(fleet)
    }

    /// How many connected.
    pub fn connected(&self) -> usize {
        self.workers.len()
    }

    /// The names of those that connected.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.workers.iter().map(|(n, _)| n.as_str())
    }

    /// How many connections have ended since they connected.
    pub fn closed(&self) -> u64 {
        self.counters.closed.load(Ordering::Relaxed)
    }

    /// Disconnects them all.
    pub fn close(&mut self) {
        for (_, w) in self.workers.drain(..) {
            w.abort();
        }
        for e in &self.endpoints {
            e.close(0u32.into(), b"simulation over");
        }
    }
}

impl Drop for SimFleet {
    fn drop(&mut self) {
        self.close();
    }
}
