//! Simulated workers: real QUIC connections with real agent certificates,
//! speaking the worker protocol (hello, telemetry at the asked rate, pongs)
//! and claiming fake slots: a StartSegment is answered at once with
//! SegmentStarted and FirstFrame, a StopSegment with SegmentEnded and
//! PlacementEnded. Telemetry carries a timestamp (µs since [`stamp_base`])
//! in fields that reach the console's events, so the console measures the
//! event latency: `rss_bytes` (in WorkerChanged) and each slot's `bytes`
//! (in RecordingChanged).

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
use tokio::sync::mpsc;

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
    t.max_concurrent_bidi_streams(VarInt::from_u32(1024));
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
        version: "bench-sim".into(),
        capacity,
        labels: BTreeMap::new(),
        running: Vec::new(),
        draining: false,
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
                        bytes: stamp,
                        media_ms: now.saturating_sub(started),
                        restarts: 0,
                        last_frame_at: Some(now),
                    })
                    .collect();
                let t = WorkerTelemetry {
                    at: now,
                    cpu_millicores: 50,
                    rss_bytes: stamp,
                    slots,
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
