//! Benchmark 2, fleet scale: N simulated workers (real QUIC + mTLS, one agent
//! certificate each, telemetry at 1 Hz) against one coordinator process,
//! with one console subscribed; then M recordings placed on them.

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use recfleet_protocol::quic;
use recfleet_protocol::spec::RecordingSpec;
use recfleet_protocol::{
    ConsoleRequest, ConsoleResponse, EventKind, OpenStream, RecordingId, RecordingState,
    SubscriptionFrame,
};
use recfleet_testkit::procs::{cores_between, proc_sample};
use recfleet_testkit::sim::{self, Counters, SimFleet, SimOptions};
use serde_json::{json, Value};
use tokio::sync::Semaphore;

use crate::harness::start_fleet_on;
use crate::stats::Summary;
use crate::Opts;

/// Simulated workers per client UDP socket.
const PER_ENDPOINT: usize = 500;
/// Handshakes in flight while the fleet connects.
const CONNECT_CONCURRENCY: usize = 32;
/// Capacity each simulated worker offers.
const SIM_CAPACITY: u32 = 4;

/// What the console saw.
#[derive(Debug, Default)]
struct Seen {
    window: bool,
    latencies_us: Vec<f64>,
    events: u64,
    worker_up: HashSet<String>,
    worker_lost: u64,
    lagged: u64,
    recording: HashSet<String>,
    all_recording_at: Option<Instant>,
    expect_recording: usize,
    console_closed: bool,
}

fn subscribe(conn: quinn::Connection, seen: Arc<Mutex<Seen>>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let Ok((mut send, mut recv)) = conn.open_bi().await else {
            return;
        };
        if quic::write_frame(&mut send, &OpenStream::Subscribe)
            .await
            .is_err()
        {
            return;
        }
        while let Ok(Some(frame)) = quic::read_frame::<SubscriptionFrame>(&mut recv).await {
            let now = sim::stamp_now();
            let Ok(mut s) = seen.lock() else { return };
            match frame {
                SubscriptionFrame::Event(ev) => {
                    s.events += 1;
                    let stamp = match &ev.kind {
                        EventKind::WorkerUp(w) => {
                            s.worker_up.insert(w.name.to_string());
                            None
                        }
                        EventKind::WorkerChanged(w) => Some(w.rss_bytes),
                        EventKind::WorkerLost { .. } => {
                            s.worker_lost += 1;
                            None
                        }
                        EventKind::RecordingChanged(r) => {
                            if r.state == RecordingState::Recording
                                && s.recording.insert(r.id.to_string())
                                && s.recording.len() == s.expect_recording
                            {
                                s.all_recording_at = Some(Instant::now());
                            }
                            (r.state == RecordingState::Recording).then_some(r.bytes)
                        }
                        _ => None,
                    };
                    if let Some(stamp) = stamp.filter(|&t| t > 0 && t <= now) {
                        if s.window {
                            s.latencies_us.push((now - stamp) as f64);
                        }
                    }
                }
                SubscriptionFrame::Lagged { .. } => s.lagged += 1,
                // Workers whose hello the coordinator handled in the turn
                // that took the subscription come in the snapshot, not as
                // events (more often the slower the store).
                SubscriptionFrame::Snapshot { workers, .. }
                | SubscriptionFrame::SnapshotMore { workers, .. } => {
                    for w in workers {
                        s.worker_up.insert(w.name.to_string());
                    }
                }
                _ => {}
            }
        }
        if let Ok(mut s) = seen.lock() {
            s.console_closed = true;
        }
    })
}

/// One measured window of steady state.
async fn window(
    secs: f64,
    pid: u32,
    seen: &Arc<Mutex<Seen>>,
    counters: &Counters,
) -> anyhow::Result<Value> {
    {
        let mut s = seen.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        s.window = true;
        s.latencies_us.clear();
    }
    let (e0, lost0, lag0) = {
        let s = seen.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        (s.events, s.worker_lost, s.lagged)
    };
    let t0 = counters.telemetry.load(Ordering::Relaxed);
    let closed0 = counters.closed.load(Ordering::Relaxed);
    let me = std::process::id();
    let (la, a) = (proc_sample(me), proc_sample(pid));
    let a = a.ok_or_else(|| anyhow::anyhow!("coordinator gone"))?;
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    let (lb, b) = (proc_sample(me), proc_sample(pid));
    let b = b.ok_or_else(|| anyhow::anyhow!("coordinator gone"))?;
    let loadgen = la.zip(lb).map(|(x, y)| cores_between(&x, &y));
    let t1 = counters.telemetry.load(Ordering::Relaxed);
    let mut s = seen.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
    s.window = false;
    let wall = b.at.duration_since(a.at).as_secs_f64();
    let lat = Summary::of(&s.latencies_us);
    Ok(json!({
        "secs": wall,
        "coordinator_cpu_cores": cores_between(&a, &b),
        "load_generator_cpu_cores": loadgen,
        "coordinator_rss_mb": b.rss_bytes as f64 / 1048576.0,
        "telemetry_sent_per_s": (t1 - t0) as f64 / wall,
        "events_at_console_per_s": (s.events - e0) as f64 / wall,
        "event_latency_ms": {
            "n": lat.n, "p50": lat.p50 / 1000.0, "p99": lat.p99 / 1000.0, "max": lat.max / 1000.0,
        },
        "workers_lost": s.worker_lost - lost0,
        "sim_connections_closed": counters.closed.load(Ordering::Relaxed) - closed0,
        "console_subscription_alive": !s.console_closed,
        "subscriber_lagged": s.lagged - lag0,
    }))
}

/// One fleet size, the coordinator on `store` (a PostgreSQL URL; `None`:
/// SQLite).
pub async fn one(
    opts: &Opts,
    agent: &Path,
    dir: &Path,
    n: usize,
    store: Option<String>,
) -> anyhow::Result<Value> {
    let fleet = start_fleet_on(agent, dir, 3000, store, 0).await?;
    let pid = fleet
        .coordinator_pid()
        .ok_or_else(|| anyhow::anyhow!("coordinator gone"))?;
    let idle = proc_sample(pid).map(|p| p.rss_bytes).unwrap_or(0);

    // Certificates: one per simulated worker, issued by the fleet CA.
    let t = Instant::now();
    let names: Vec<String> = (0..n).map(|i| format!("sim{i}")).collect();
    let configs = sim::client_configs(&fleet.pki, &names).await?;
    let issue_secs = t.elapsed().as_secs_f64();

    let seen = Arc::new(Mutex::new(Seen::default()));
    let console = subscribe(fleet.connect_operator().await?, seen.clone());

    // Connect the fleet.
    let connect_cpu0 = proc_sample(pid);
    let loadgen0 = proc_sample(std::process::id());
    let t = Instant::now();
    let mut sims = SimFleet::connect(
        fleet.local_addr(),
        configs,
        &SimOptions {
            capacity: SIM_CAPACITY,
            concurrency: CONNECT_CONCURRENCY,
            per_endpoint: PER_ENDPOINT,
            deadline: Some(t + opts.connect_cap()),
        },
    )
    .await?;
    let counters: Arc<Counters> = sims.counters.clone();
    let (failed, first_error) = (sims.failed, sims.first_error.clone());
    let connect_secs = t.elapsed().as_secs_f64();
    let connect_cpu = connect_cpu0
        .zip(proc_sample(pid))
        .map(|(a, b)| cores_between(&a, &b));
    let loadgen_connect_cpu = loadgen0
        .zip(proc_sample(std::process::id()))
        .map(|(a, b)| cores_between(&a, &b));
    let connected = sims.connected();
    // Every hello seen by the console.
    let until = Instant::now() + Duration::from_secs(30);
    while seen.lock().map(|s| s.worker_up.len()).unwrap_or(0) < connected && Instant::now() < until
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let up = seen.lock().map(|s| s.worker_up.len()).unwrap_or(0);
    println!(
        "    {n}: certificates {issue_secs:.1} s, {connected} connected in {connect_secs:.1} s ({failed} failed), {up} up at the console"
    );
    tokio::time::sleep(opts.settle()).await;
    let mut idle_window = window(opts.scale_window(), pid, &seen, &counters).await?;
    // One WorkerChanged per worker every 5 s.
    idle_window["events_expected_per_s"] = json!(connected as f64 / 5.0);

    // Placement: M recordings started through the operator, concurrently.
    let m = opts.placements().min(connected * SIM_CAPACITY as usize);
    if let Ok(mut s) = seen.lock() {
        s.expect_recording = m;
    }
    let op = fleet.connect_operator().await?;
    let sem = Arc::new(Semaphore::new(16));
    let t = Instant::now();
    let mut reqs = Vec::new();
    for k in 0..m {
        let permit = sem.clone().acquire_owned().await?;
        let op = op.clone();
        reqs.push(tokio::spawn(async move {
            let mut spec = RecordingSpec::new(
                RecordingId::new(format!("scale-{k}"))?,
                "http://127.0.0.1:9/class.html",
            );
            spec.stop.max_duration_secs = Some(3600);
            let asked = Instant::now();
            let r = quic::request::<_, ConsoleResponse>(
                &op,
                &OpenStream::Request(ConsoleRequest::StartRecording(spec)),
            )
            .await;
            let took_ms = asked.elapsed().as_secs_f64() * 1000.0;
            drop(permit);
            match r? {
                ConsoleResponse::Started { .. } => anyhow::Ok(took_ms),
                other => anyhow::bail!("start: {other:?}"),
            }
        }));
    }
    let mut start_errors = 0;
    let mut start_ms = Vec::with_capacity(m);
    for r in reqs {
        match r.await? {
            Ok(ms) => start_ms.push(ms),
            Err(_) => start_errors += 1,
        }
    }
    let start_latency = Summary::of(&start_ms);
    let answered_secs = t.elapsed().as_secs_f64();
    let until = Instant::now() + Duration::from_secs(30);
    let all_at = loop {
        if let Some(at) = seen.lock().ok().and_then(|s| s.all_recording_at) {
            break Some(at);
        }
        let console_closed = seen.lock().map(|s| s.console_closed).unwrap_or(true);
        if Instant::now() > until || m == 0 || console_closed {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let recording = seen.lock().map(|s| s.recording.len()).unwrap_or(0);
    let placed_secs = all_at.map(|a| a.duration_since(t).as_secs_f64());
    println!(
        "    {n}: {m} recordings answered in {answered_secs:.2} s, all recording after {}",
        placed_secs.map_or("(not all)".to_string(), |s| format!("{s:.2} s"))
    );
    tokio::time::sleep(opts.settle()).await;
    let mut busy_window = window(opts.scale_window(), pid, &seen, &counters).await?;
    // ... plus one RecordingChanged per recording per telemetry frame.
    busy_window["events_expected_per_s"] = json!(connected as f64 / 5.0 + recording as f64);
    let rss = proc_sample(pid).map(|p| p.rss_bytes).unwrap_or(0);

    console.abort();
    sims.close();
    fleet.shutdown().await;
    Ok(json!({
        "workers": n,
        "connected": connected,
        "connect_failed": failed,
        "connect_first_error": first_error,
        "up_at_console": up,
        "cert_issue_secs": issue_secs,
        "connect_secs": connect_secs,
        "coordinator_cpu_cores_while_connecting": connect_cpu,
        "load_generator_cpu_cores_while_connecting": loadgen_connect_cpu,
        "sim_connections_closed_total": counters.closed.load(Ordering::Relaxed),
        "coordinator_rss_mb_before": idle as f64 / 1048576.0,
        "coordinator_rss_mb_after": rss as f64 / 1048576.0,
        "idle_fleet": idle_window,
        "placement": {
            "recordings": m,
            "start_errors": start_errors,
            "all_answered_secs": answered_secs,
            "all_recording_secs": placed_secs,
            "reached_recording": recording,
            "placed_per_s": placed_secs.map(|s| m as f64 / s),
            "start_request_ms": {
                "n": start_latency.n, "p50": start_latency.p50, "p99": start_latency.p99,
                "max": start_latency.max,
            },
        },
        "with_recordings": busy_window,
    }))
}

/// Every fleet size in turn, stopping early when one does not hold.
pub async fn run(opts: &Opts, agent: &Path, dir: &Path) -> anyhow::Result<Value> {
    let mut out = Vec::new();
    for &n in &opts.scale_sizes() {
        println!("  {n} simulated workers ...");
        let v = one(opts, agent, &dir.join(format!("scale-{n}")), n, None).await?;
        // A handshake or two may time out while thousands connect at once
        // (they would retry); a fleet holds when at least 99.9% connected
        // and no connection died afterwards.
        let held = v["connected"].as_u64().unwrap_or(0) as f64 >= 0.999 * n as f64
            && v["sim_connections_closed_total"].as_u64() == Some(0)
            && v["placement"]["placed_per_s"].is_number()
            && v["with_recordings"]["console_subscription_alive"] == json!(true);
        out.push(v);
        if !held {
            println!("    {n} did not hold: larger fleets skipped");
            break;
        }
    }
    Ok(json!({
        "sim_capacity": SIM_CAPACITY,
        "workers_per_client_socket": PER_ENDPOINT,
        "telemetry_hz": 1,
        "sizes": out,
    }))
}
