//! Benchmark 10, the fault matrix: each fault hits `trials` live
//! recordings (640x360 at 15 fps with sound, the demo page), one after the
//! other, once each, on a fleet of two workers; each is then stopped. Per
//! fault: the recordings lost (not `completed`; must be 0), the slot
//! processes left behind after each ended (must be 0), and the manifests'
//! gaps (p50, max). `make faults` runs it (docs/reliability.md has the
//! figures).

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use recfleet_agent::demo::DemoServer;
use recfleet_protocol::spec::{RecordingSpec, Viewport};
use recfleet_protocol::{
    now_ms, ConsoleRequest, ConsoleResponse, RecordingDetail, RecordingId, RecordingState,
};
use recfleet_testkit::postgres::PgServer;
use recfleet_testkit::procs::{descendants, tagged};
use recfleet_testkit::{FleetOptions, S3Server, TestFleet as Fleet};
use serde_json::{json, Value};

use crate::harness::start_fleet;
use crate::stats::Summary;
use crate::Opts;

const POLL: Duration = Duration::from_millis(100);

/// What is done to the fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// kill -9 of the worker holding the recording (it is started again).
    Worker,
    /// kill -9 of one of the slot's processes, found by command.
    Process(Target),
    /// SIGSTOP of a slot process for 30 s, then SIGCONT.
    Stop(Target),
    /// kill -9 of the worker's guard.
    Guard,
    /// kill -9 of the coordinator with requests in flight; started again.
    CoordinatorKill,
    /// SIGTERM of the coordinator with requests in flight; started again.
    CoordinatorTerm,
    /// `recfleet drain` of the holder (migrate) killed after 0.5 s.
    ConsoleMidDrain,
    /// The object store (the recording's destination) away for 30 s.
    StoreAway,
    /// PostgreSQL (the store of two coordinators) away for 10 s.
    PostgresAway,
}

/// A process of the slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Browser,
    Renderer,
    ChromeDriver,
    Encoder,
    Xvfb,
    PulseAudio,
}

impl Fault {
    fn name(self) -> String {
        match self {
            Fault::Worker => "kill -9 worker".into(),
            Fault::Process(t) => format!("kill -9 {}", t.name()),
            Fault::Stop(t) => format!("SIGSTOP {} 30 s", t.name()),
            Fault::Guard => "kill -9 guard".into(),
            Fault::CoordinatorKill => "kill -9 coordinator (requests in flight)".into(),
            Fault::CoordinatorTerm => "SIGTERM coordinator (requests in flight)".into(),
            Fault::ConsoleMidDrain => "console killed mid-drain".into(),
            Fault::StoreAway => "object store away 30 s".into(),
            Fault::PostgresAway => "PostgreSQL away 10 s (two coordinators)".into(),
        }
    }

    /// Whether the capture itself is interrupted (a new part or placement
    /// must start), or goes on untouched.
    fn interrupts(self) -> bool {
        matches!(self, Fault::Worker | Fault::Process(_) | Fault::Stop(_))
    }
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Browser => "Chromium (browser)",
            Target::Renderer => "Chromium (renderer)",
            Target::ChromeDriver => "ChromeDriver",
            Target::Encoder => "ffmpeg",
            Target::Xvfb => "Xvfb",
            Target::PulseAudio => "PulseAudio",
        }
    }

    /// The slot process of this kind (one recording runs at a time).
    fn find(self) -> Option<i32> {
        let cmdline = |pid: i32| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
                .unwrap_or_default()
        };
        if self == Target::Renderer {
            return self.renderers().first().copied();
        }
        tagged("").into_iter().find_map(|(pid, comm)| {
            let cmdline = cmdline(pid);
            let hit = match self {
                Target::Browser => comm.starts_with("chromium") && !cmdline.contains("--type="),
                Target::Renderer => false,
                Target::ChromeDriver => comm.starts_with("chromedriver"),
                Target::Encoder => comm == "ffmpeg" && cmdline.contains("x11grab"),
                Target::Xvfb => comm == "Xvfb",
                Target::PulseAudio => comm == "pulseaudio",
            };
            hit.then_some(pid)
        })
    }
}

impl Target {
    /// Every renderer of the slot's browser. Chromium's zygote clears the
    /// environment, so they are not tagged, but descend from the tagged
    /// browser; which one draws the page is not in their command line, and
    /// spare ones wait beside it: the fault kills them all.
    fn renderers(self) -> Vec<i32> {
        let Some(browser) = Target::Browser.find() else {
            return Vec::new();
        };
        descendants(browser)
            .into_iter()
            .filter(|p| {
                let c = std::fs::read(format!("/proc/{p}/cmdline"))
                    .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
                    .unwrap_or_default();
                c.contains("--type=renderer") && !c.contains("--extension-process")
            })
            .collect()
    }
}

/// The faults of the stores, run on a fleet of two coordinators on
/// PostgreSQL recording to an S3 server.
fn store_matrix() -> Vec<Fault> {
    vec![Fault::StoreAway, Fault::PostgresAway]
}

/// What a fault may act on besides the fleet.
#[derive(Default)]
struct Stores {
    s3: Option<S3Server>,
    pg: Option<PgServer>,
}

/// Every fault of the matrix on one coordinator (SQLite) and local files,
/// in the order run.
fn matrix() -> Vec<Fault> {
    use Target::*;
    let mut v = vec![Fault::Worker];
    for t in [Browser, Renderer, ChromeDriver, Encoder, Xvfb, PulseAudio] {
        v.push(Fault::Process(t));
    }
    v.extend([
        Fault::Guard,
        Fault::Stop(Encoder),
        Fault::Stop(Browser),
        Fault::CoordinatorKill,
        Fault::CoordinatorTerm,
        Fault::ConsoleMidDrain,
    ]);
    v
}

fn spec(id: &RecordingId, page: &DemoServer) -> RecordingSpec {
    let mut s = RecordingSpec::new(id.clone(), page.url(&format!("title={id}")));
    s.viewport = Viewport {
        width: 640,
        height: 360,
    };
    s.fps = 15;
    s.audio = true;
    s.stop.max_duration_secs = Some(3 * 3600);
    s
}

/// Benchmark 10: the fault matrix; `opts.fault_filter` picks the faults
/// whose names contain one of its words (empty: all).
pub async fn faults(opts: &Opts, agent: &Path, dir: &Path) -> anyhow::Result<Value> {
    let trials = opts.fault_trials();
    let page = DemoServer::start(([127, 0, 0, 1], 0).into()).await?;
    let console = agent.with_file_name("recfleet");
    let mut rows = Vec::new();
    let wanted = |fault: Fault| {
        let name = fault.name().to_lowercase();
        opts.fault_filter.is_empty()
            || opts
                .fault_filter
                .iter()
                .any(|f| name.contains(&f.to_lowercase()))
    };
    let local: Vec<Fault> = matrix().into_iter().filter(|f| wanted(*f)).collect();
    if !local.is_empty() {
        let mut fleet = start_fleet(agent, &dir.join("local"), 2000).await?;
        fleet.add_worker(1, 1)?;
        fleet.add_worker(2, 1)?;
        fleet.wait_workers(2, 30).await?;
        let mut stores = Stores::default();
        run_rows(
            &mut fleet,
            &mut stores,
            &page,
            &console,
            &local,
            trials,
            &mut rows,
        )
        .await?;
        fleet.shutdown().await;
    }
    let remote: Vec<Fault> = store_matrix().into_iter().filter(|f| wanted(*f)).collect();
    if !remote.is_empty() {
        let (mut fleet, mut stores) = store_fleet(agent, &dir.join("stores")).await?;
        run_rows(
            &mut fleet,
            &mut stores,
            &page,
            &console,
            &remote,
            trials,
            &mut rows,
        )
        .await?;
        fleet.shutdown().await;
    }
    Ok(json!({
        "what": "each fault x trials on a live 640x360p15 recording with sound (demo page), two workers of capacity 1; lost = the recording did not complete; orphans = slot processes left 5 s after it ended; gaps from its manifest. The store faults run on two coordinators on PostgreSQL recording to an S3 server (SeaweedFS)",
        "trials": trials,
        "rows": rows,
    }))
}

/// Two coordinators on a PostgreSQL of their own, recording to a bucket of
/// an S3 server of their own, and two workers.
async fn store_fleet(agent: &Path, dir: &Path) -> anyhow::Result<(Fleet, Stores)> {
    let s3 = S3Server::start().await?;
    s3.create_bucket("faults")?;
    let pg = PgServer::start().await?;
    let mut env = s3.env();
    env.push(("RECFLEET_OUTPUT".into(), "s3://faults/recordings".into()));
    let mut fleet = Fleet::start_with(FleetOptions {
        agent: agent.to_path_buf(),
        dir: Some(dir.to_path_buf()),
        idle_timeout_ms: Some(2000),
        log_filter: "info".into(),
        agent_certs: 0,
        store: Some(pg.url()),
        standbys: 1,
        coordinator_env: env,
        ..Default::default()
    })
    .await?;
    fleet.wait_ready().await?;
    let worker_env = s3.env();
    let worker_env: Vec<(&str, &str)> = worker_env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    fleet.add_worker_with(1, 1, &worker_env)?;
    fleet.add_worker_with(2, 1, &worker_env)?;
    fleet.wait_workers(2, 30).await?;
    Ok((
        fleet,
        Stores {
            s3: Some(s3),
            pg: Some(pg),
        },
    ))
}

async fn run_rows(
    fleet: &mut Fleet,
    stores: &mut Stores,
    page: &DemoServer,
    console: &Path,
    faults: &[Fault],
    trials: usize,
    rows: &mut Vec<Value>,
) -> anyhow::Result<()> {
    for &fault in faults {
        let name = fault.name();
        println!("  {name} x {trials}");
        let id = row_id(fault)?;
        let row = row(fleet, stores, page, console, fault, &id, trials).await;
        let row = match row {
            Ok(r) => r,
            Err(e) => {
                println!("    {name}: the run broke: {e:#}");
                // Its recording must not hold a worker for the next rows.
                let _ = fleet
                    .request(ConsoleRequest::StopRecording { id: id.clone() })
                    .await;
                let _ = fleet
                    .wait_for_polling(&id, 120, POLL, |d| d.info.state.is_terminal())
                    .await;
                let _ = fleet.wait_workers(2, 60).await;
                json!({ "fault": name, "error": format!("{e:#}") })
            }
        };
        rows.push(row);
    }
    Ok(())
}

/// The recording of a fault's row: `f-kill-9-ffmpeg`.
fn row_id(fault: Fault) -> anyhow::Result<RecordingId> {
    let mut slug = String::new();
    for c in fault.name().chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.ends_with('-') {
            slug.push('-');
        }
    }
    Ok(RecordingId::new(format!("f-{}", slug.trim_matches('-')))?)
}

/// One fault's row: `trials` recordings, one after the other, each hit
/// once while it records, then stopped. One recording per trial keeps the
/// trials apart: a slot restarted a fourth time within a minute gives up by
/// design (the restart intensity), which is not what a row measures.
async fn row(
    fleet: &mut Fleet,
    stores: &mut Stores,
    page: &DemoServer,
    console: &Path,
    fault: Fault,
    base: &RecordingId,
    trials: usize,
) -> anyhow::Result<Value> {
    let mut recovered_ms = Vec::new();
    let mut in_flight = (0usize, 0usize);
    let (mut lost, mut gaps, mut restarts, mut segments) = (Vec::new(), Vec::new(), 0u32, 0usize);
    let mut errors: Vec<String> = Vec::new();
    let mut left = Vec::new();
    for trial in 0..trials {
        let id = RecordingId::new(format!("{base}-{trial}"))?;
        let end = trial_once(
            fleet,
            stores,
            page,
            console,
            fault,
            &id,
            &mut recovered_ms,
            &mut in_flight,
        )
        .await;
        // Whatever happened, the recording is stopped and waited for.
        let _ = fleet
            .request(ConsoleRequest::StopRecording { id: id.clone() })
            .await;
        let end = match end {
            Ok(()) => {
                fleet
                    .wait_for_polling(&id, 120, Duration::from_millis(200), |d| {
                        d.info.state.is_terminal()
                    })
                    .await?
            }
            Err(e) => {
                println!("    {trial}: {e:#}");
                let d = fleet
                    .wait_for_polling(&id, 120, Duration::from_millis(200), |d| {
                        d.info.state.is_terminal()
                    })
                    .await?;
                // What the trial saw go wrong; the recording counts as
                // lost only if it did not complete.
                errors.push(format!("{id}: {e:#}"));
                d
            }
        };
        if end.info.state != RecordingState::Completed {
            lost.push(format!("{id}: {} ({:?})", end.info.state, end.info.reason));
        }
        gaps.extend(end.manifest.gaps.iter().map(|g| g.duration_ms as f64));
        restarts += end.info.restarts;
        segments += end.manifest.segments.len();
        fleet.wait_workers(2, 60).await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        left.extend(
            tagged("")
                .into_iter()
                .map(|(p, c)| format!("{c}({p}) after {id}")),
        );
    }
    let g = Summary::of(&gaps);
    let r = Summary::of(&recovered_ms);
    println!(
        "    {}: lost {}, orphans {}, trial errors {}, gaps {} (p50 {:.0} ms, max {:.0} ms){}",
        fault.name(),
        lost.len(),
        left.len(),
        errors.len(),
        gaps.len(),
        g.p50,
        g.max,
        if in_flight != (0, 0) {
            format!(
                ", requests in flight: {} answered, {} failed",
                in_flight.0, in_flight.1
            )
        } else {
            String::new()
        }
    );
    Ok(json!({
        "fault": fault.name(),
        "trials": trials,
        "lost": lost.len(),
        "lost_recordings": lost,
        "trial_errors": errors,
        "orphans": left,
        "gaps_ms": gaps,
        "gap_p50_ms": g.p50,
        "gap_max_ms": g.max,
        "recovered_ms": recovered_ms,
        "recovered_p50_ms": r.p50,
        "recovered_max_ms": r.max,
        "restarts": restarts,
        "segments": segments,
        "requests_in_flight_answered": in_flight.0,
        "requests_in_flight_failed": in_flight.1,
        "requests_in_flight_hung": if matches!(fault, Fault::CoordinatorKill | Fault::CoordinatorTerm) {
            20 * trials - in_flight.0 - in_flight.1
        } else {
            0
        },
    }))
}

/// One trial: a recording started, hit once while it records, and seen to
/// capture again (or never to stop).
#[allow(clippy::too_many_arguments)]
async fn trial_once(
    fleet: &mut Fleet,
    stores: &mut Stores,
    page: &DemoServer,
    console: &Path,
    fault: Fault,
    id: &RecordingId,
    recovered_ms: &mut Vec<f64>,
    in_flight: &mut (usize, usize),
) -> anyhow::Result<()> {
    let id = id.clone();
    match fleet
        .request(ConsoleRequest::StartRecording(spec(&id, page)))
        .await?
    {
        ConsoleResponse::Started { .. } => {}
        other => anyhow::bail!("start: {other:?}"),
    }
    wait_capturing(fleet, &id, 0).await?;
    {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let at = now_ms();
        match fault {
            Fault::Worker => {
                let holder = holder(fleet, &id).await?;
                fleet.kill_worker(&holder).await?;
                fleet.add_worker_named(&holder, 1)?;
            }
            Fault::Process(t) => signal(t, Signal::SIGKILL)?,
            Fault::Stop(t) => {
                signal(t, Signal::SIGSTOP)?;
                let pid = t.find();
                tokio::time::sleep(Duration::from_secs(30)).await;
                // The slot has most likely been restarted around it; the
                // stopped process, if any is left, goes on.
                if let Some(pid) = pid {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGCONT);
                }
            }
            Fault::Guard => {
                let pid = guard_pid().context("no guard process")?;
                kill(Pid::from_raw(pid), Signal::SIGKILL)?;
            }
            Fault::CoordinatorKill | Fault::CoordinatorTerm => {
                let flight = requests_in_flight(fleet, &id).await?;
                if fault == Fault::CoordinatorKill {
                    fleet.kill_coordinator().await;
                } else {
                    fleet.stop_coordinator(30).await?;
                }
                let (answered, failed) = flight.await.unwrap_or((0, 0));
                in_flight.0 += answered;
                in_flight.1 += failed;
                fleet.start_coordinator()?;
                fleet.wait_ready().await?;
            }
            Fault::StoreAway => {
                let s3 = stores.s3.as_mut().context("no S3 server")?;
                s3.stop().await;
                tokio::time::sleep(Duration::from_secs(30)).await;
                s3.resume().await?;
            }
            Fault::PostgresAway => {
                let pg = stores.pg.as_mut().context("no PostgreSQL")?;
                pg.kill().await;
                tokio::time::sleep(Duration::from_secs(10)).await;
                pg.resume().await?;
                fleet.wait_ready().await?;
            }
            Fault::ConsoleMidDrain => {
                let holder = holder(fleet, &id).await?;
                let mut child = console_cmd(fleet, console)
                    .args(["drain", &holder, "--mode", "migrate", "-y"])
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .context("the console")?;
                tokio::time::sleep(Duration::from_millis(500)).await;
                let _ = child.kill();
                let _ = child.wait();
                // The drain goes on without its console: the recording
                // moves; then the worker takes work again.
                fleet
                    .wait_for_polling(&id, 60, POLL, |d| {
                        d.info.worker.as_ref().is_some_and(|w| w.as_str() != holder)
                            && d.info.state == RecordingState::Recording
                    })
                    .await?;
                let _ = console_cmd(fleet, console)
                    .args(["undrain", &holder])
                    .output();
            }
        }
        if fault.interrupts() {
            let d = wait_capturing(fleet, &id, at).await?;
            let first = d
                .manifest
                .segments
                .iter()
                .filter_map(|s| s.first_frame_at)
                .filter(|f| *f > at)
                .min()
                .unwrap_or(at);
            let ms = first.saturating_sub(at);
            println!("    {id}: capturing again {ms} ms after the fault");
            recovered_ms.push(ms as f64);
        } else {
            // The capture never stopped; the coordinator's view of it may
            // take a moment to come back (a worker reconnecting after the
            // coordinator's restart reports its running segment).
            let d = fleet
                .wait_for_polling(&id, 60, POLL, |d| d.info.state == RecordingState::Recording)
                .await?;
            anyhow::ensure!(
                d.info.restarts == 0 && d.manifest.gaps.is_empty(),
                "{id} was interrupted by {}: {:?}",
                fault.name(),
                d.info
            );
            println!("    {id}: still recording");
        }
    }
    Ok(())
}

/// Waits until the recording captures, in a part begun after `after`
/// (wall ms; 0: any).
async fn wait_capturing(
    fleet: &mut Fleet,
    id: &RecordingId,
    after: u64,
) -> anyhow::Result<RecordingDetail> {
    fleet
        .wait_for_polling(id, 120, POLL, |d| {
            d.info.state == RecordingState::Recording
                && d.manifest
                    .segments
                    .iter()
                    .any(|s| s.first_frame_at.is_some_and(|f| f > after))
        })
        .await
}

async fn holder(fleet: &mut Fleet, id: &RecordingId) -> anyhow::Result<String> {
    let d = fleet.show(id).await?;
    Ok(d.info.worker.context("not placed")?.to_string())
}

fn signal(t: Target, sig: Signal) -> anyhow::Result<()> {
    let pids = match t {
        Target::Renderer => t.renderers(),
        _ => t.find().into_iter().collect(),
    };
    anyhow::ensure!(!pids.is_empty(), "no {} process of the slot", t.name());
    for pid in pids {
        kill(Pid::from_raw(pid), sig)?;
    }
    Ok(())
}

/// The guard of a worker: `recfleet-agent guard --tag ...`.
fn guard_pid() -> Option<i32> {
    let dir = std::fs::read_dir("/proc").ok()?;
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .find(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|b| {
                    let args: Vec<&[u8]> = b.split(|c| *c == 0).collect();
                    args.iter().any(|a| *a == b"guard") && args.iter().any(|a| *a == b"--tag")
                })
                .unwrap_or(false)
        })
}

/// Twenty `ShowRecording` requests on a connection of their own, sent
/// while the coordinator goes away: each must be answered or fail with an
/// error within 10 s, never hang. Returns (answered, failed).
async fn requests_in_flight(
    fleet: &Fleet,
    id: &RecordingId,
) -> anyhow::Result<tokio::task::JoinHandle<(usize, usize)>> {
    let conn = fleet.connect_operator().await?;
    let id = id.clone();
    Ok(tokio::spawn(async move {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..20 {
            let conn = conn.clone();
            let id = id.clone();
            tasks.spawn(async move {
                let req =
                    recfleet_protocol::OpenStream::Request(ConsoleRequest::ShowRecording { id });
                tokio::time::timeout(
                    Duration::from_secs(10),
                    recfleet_protocol::quic::request::<_, ConsoleResponse>(&conn, &req),
                )
                .await
            });
        }
        let (mut answered, mut failed) = (0, 0);
        while let Some(r) = tasks.join_next().await {
            match r {
                Ok(Ok(Ok(_))) => answered += 1,
                Ok(Ok(Err(_))) => failed += 1,
                // A hang past 10 s, or a task that panicked: counted as
                // neither, and the row says so.
                _ => {}
            }
        }
        (answered, failed)
    }))
}

fn console_cmd(fleet: &Fleet, console: &Path) -> std::process::Command {
    let tls = fleet.tls();
    let mut c = std::process::Command::new(console);
    c.args(["--coordinator", &fleet.addr.to_string()])
        .arg("--ca")
        .arg(tls.join("ca.pem"))
        .arg("--cert")
        .arg(tls.join("operator.pem"))
        .arg("--key")
        .arg(tls.join("operator-key.pem"));
    c
}
