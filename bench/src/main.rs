//! `recfleet-bench`: the control plane against quinn, BEAM distribution and
//! HTTP/1.1, fleet scale, start latency, failover and density, in one run on
//! this machine. Prints a table and writes JSON (docs/benchmarks.md).

#![forbid(unsafe_code)]

mod analysis;
mod browser;
mod events;
mod faults;
mod ha;
mod harness;
mod output;
mod rtt;
mod saturation;
mod scale;
mod stats;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use serde_json::{json, Value};

/// recfleet benchmarks.
#[derive(Debug, Parser)]
#[command(name = "recfleet-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    opts: Opts,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Internal: a peer server for the round-trip comparison.
    #[command(hide = true)]
    Serve {
        /// `quic` (echo with recfleet's TLS and framing) or `http`.
        kind: String,
        /// Certificate directory (ca.pem, coordinator.pem, coordinator-key.pem).
        #[arg(long)]
        tls: PathBuf,
    },
}

/// Which benchmarks, how long.
#[derive(Debug, Clone, clap::Args)]
pub struct Opts {
    /// A few seconds per benchmark (checks that everything runs; the
    /// figures are not meaningful).
    #[arg(long)]
    pub quick: bool,
    /// Only these benchmarks (comma-separated): rtt, scale, start, failover,
    /// density, output, ha, health, events, saturation; `faults` (the fault
    /// matrix, about an hour) only when named.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "rtt,scale,start,failover,density,output,ha,health,saturation"
    )]
    pub only: Vec<String>,
    /// Fleet sizes of the scale benchmark, stopping after the first that does
    /// not hold (default 100,1000,2500,5000,10000; quick 20,200).
    #[arg(long, value_delimiter = ',')]
    pub sizes: Option<Vec<usize>>,
    /// Where the JSON goes.
    #[arg(long, default_value = "target/bench/results.json")]
    pub out: PathBuf,
    /// The recfleet-agent binary (default: next to this one).
    #[arg(long)]
    pub agent: Option<PathBuf>,
    /// Keep the working directory (logs, recordings, certificates).
    #[arg(long)]
    pub keep: bool,
    /// Trials per fault of the fault matrix (`--only faults`; default 20,
    /// quick 1).
    #[arg(long)]
    pub trials: Option<usize>,
    /// Only the faults whose name contains one of these words
    /// (comma-separated, e.g. `ffmpeg,guard`).
    #[arg(long = "faults", value_delimiter = ',')]
    pub fault_filter: Vec<String>,
}

impl Opts {
    pub(crate) fn pick<T>(&self, quick: T, full: T) -> T {
        if self.quick {
            quick
        } else {
            full
        }
    }
    fn rtt_samples(&self) -> usize {
        self.pick(300, 5000)
    }
    fn rtt_warmup(&self) -> usize {
        self.pick(50, 500)
    }
    fn rtt_duration(&self) -> Duration {
        self.pick(Duration::from_millis(500), Duration::from_secs(3))
    }
    fn scale_sizes(&self) -> Vec<usize> {
        self.sizes
            .clone()
            .unwrap_or_else(|| self.pick(vec![20, 200], vec![100, 1000, 2500, 5000, 10000]))
    }
    fn scale_window(&self) -> f64 {
        self.pick(1.0, 10.0)
    }
    fn settle(&self) -> Duration {
        self.pick(Duration::from_millis(500), Duration::from_secs(2))
    }
    fn placements(&self) -> usize {
        self.pick(20, 300)
    }
    fn connect_cap(&self) -> Duration {
        self.pick(Duration::from_secs(30), Duration::from_secs(240))
    }
    fn start_trials(&self) -> usize {
        self.pick(1, 10)
    }
    fn failover_trials(&self) -> usize {
        self.pick(1, 20)
    }
    fn redundancy_trials(&self) -> usize {
        self.pick(1, 5)
    }
    fn density_max(&self) -> usize {
        self.pick(1, 4)
    }
    fn density_secs(&self) -> Duration {
        self.pick(Duration::from_secs(4), Duration::from_secs(20))
    }
    /// Length of the recording the output benchmark finalizes, minutes.
    fn output_minutes(&self) -> u64 {
        self.pick(1, 10)
    }
    fn fault_trials(&self) -> usize {
        self.trials.unwrap_or(self.pick(1, 20))
    }
    fn wants(&self, what: &str) -> bool {
        self.only.iter().any(|o| o == what)
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Some(Command::Serve { kind, tls }) => rtt::serve(&kind, &tls).await,
            None => bench(cli.opts).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kb: u64 = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    json!({
        "nproc": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu_model": model,
        "mem_gib": mem_kb as f64 / 1048576.0,
        "kernel": kernel.trim(),
    })
}

async fn bench(opts: Opts) -> anyhow::Result<()> {
    let agent = match &opts.agent {
        Some(a) => a.clone(),
        None => std::env::current_exe()?
            .parent()
            .map(|d| d.join("recfleet-agent"))
            .unwrap_or_default(),
    };
    anyhow::ensure!(
        agent.is_file(),
        "{} not found: build it (cargo build --release -p recfleet-agent) or pass --agent",
        agent.display()
    );
    let work = tempfile::Builder::new()
        .prefix("recfleet-bench-")
        .tempdir()?;
    let (load, busy) = harness::machine_load();
    println!(
        "recfleet-bench{}: agent {}, load {load:.2}, other busy processes: {}",
        if opts.quick { " --quick" } else { "" },
        agent.display(),
        if busy.is_empty() {
            "none".to_string()
        } else {
            busy.join(" ")
        }
    );
    let started = Instant::now();
    let mut results = serde_json::Map::new();
    let date = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    results.insert("date".into(), json!(date));
    results.insert("quick".into(), json!(opts.quick));
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    results.insert(
        "source".into(),
        json!({
            "commit": git(&["rev-parse", "--short", "HEAD"]),
            "uncommitted_files": git(&["status", "--porcelain", "--untracked-files=no"])
                .map(|s| s.lines().count()),
        }),
    );
    results.insert("machine".into(), machine());
    results.insert(
        "load_at_start".into(),
        json!({ "loadavg_1m": load, "busy_processes": busy }),
    );
    let benches = [
        ("rtt", "1. control round trip"),
        ("scale", "2. fleet scale"),
        ("start", "3. start latency (Chromium)"),
        ("failover", "4. failover after kill -9"),
        ("density", "5. density of one worker"),
        ("output", "6. recording output (upload, recording.mp4)"),
        (
            "ha",
            "7. coordinators on PostgreSQL (store, leader failover)",
        ),
        ("health", "8. media health (the encoder's analysis)"),
        ("events", "9. event track (a page flooding events)"),
        ("faults", "10. fault matrix"),
        ("saturation", "11. false losses under CPU saturation"),
    ];
    let mut failed = Vec::new();
    for (key, title) in benches {
        if !opts.wants(key) {
            continue;
        }
        println!("{title} ...");
        let t = Instant::now();
        let dir = work.path().join(key);
        std::fs::create_dir_all(&dir)?;
        let r = match key {
            "rtt" => rtt::run(&opts, &agent, &dir).await,
            "scale" => scale::run(&opts, &agent, &dir).await,
            "start" => browser::start_latency(&opts, &agent, &dir).await,
            "failover" => browser::failover(&opts, &agent, &dir).await,
            "output" => output::run(&opts, &dir).await,
            "ha" => ha::run(&opts, &agent, &dir).await,
            "health" => analysis::run(&opts, &dir).await,
            "events" => events::run(&opts, &agent, &dir).await,
            "faults" => faults::faults(&opts, &agent, &dir).await,
            "saturation" => saturation::run(&opts, &agent, &dir).await,
            _ => browser::density(&opts, &agent, &dir).await,
        };
        let mut v = match r {
            Ok(v) => v,
            Err(e) => {
                println!("  FAILED: {e:#}");
                failed.push(key);
                json!({ "error": format!("{e:#}") })
            }
        };
        v["elapsed_secs"] = json!(t.elapsed().as_secs_f64());
        results.insert(key.into(), v);
    }
    results.insert("total_secs".into(), json!(started.elapsed().as_secs_f64()));
    let results = Value::Object(results);
    print!("{}", table(&results));
    if let Some(parent) = opts.out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&opts.out, serde_json::to_string_pretty(&results)?)?;
    println!("JSON: {}", opts.out.display());
    if opts.keep {
        println!("kept: {}", work.keep().display());
    }
    anyhow::ensure!(failed.is_empty(), "failed: {}", failed.join(", "));
    Ok(())
}

fn num(v: &Value, digits: usize) -> String {
    match v.as_f64() {
        Some(x) if x.is_finite() => format!("{x:.digits$}"),
        _ => "-".into(),
    }
}

/// The human-readable table of a run.
fn table(r: &Value) -> String {
    let mut out = String::new();
    let mut line = |s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    line(String::new());
    if let Some(sys) = r["rtt"]["systems"].as_object() {
        line(format!(
            "1. Control round trip, {} B payload ({} sequential samples; msgs/s with {} in flight)",
            r["rtt"]["payload_bytes"],
            r["rtt"]["sequential_samples"],
            r["rtt"]["throughput_concurrency"]
        ));
        line(format!(
            "  {:<34} {:>9} {:>9} {:>10} {:>16} {:>16}",
            "system", "p50 us", "p99 us", "msgs/s", "2-hop/peer p50", "1-hop/peer p50"
        ));
        let base2 = r["rtt"]["systems"]["recfleet_ping_worker_2hop"]["p50_us"].as_f64();
        let base1 = r["rtt"]["systems"]["recfleet_ping_coordinator_1hop"]["p50_us"].as_f64();
        for (name, v) in sys {
            if v.get("skipped").is_some() {
                line(format!("  {name:<34} skipped: {}", v["skipped"]));
                continue;
            }
            let p50 = v["p50_us"].as_f64();
            let ratio = |b: Option<f64>| match (b, p50) {
                (Some(b), Some(p)) if p > 0.0 => format!("{:.2}x", b / p),
                _ => "-".into(),
            };
            line(format!(
                "  {name:<34} {:>9} {:>9} {:>10} {:>16} {:>16}",
                num(&v["p50_us"], 1),
                num(&v["p99_us"], 1),
                num(&v["msgs_per_s"], 0),
                ratio(base2),
                ratio(base1)
            ));
        }
    }
    if let Some(sizes) = r["scale"]["sizes"].as_array() {
        line("2. Fleet scale (simulated workers, telemetry 1 Hz, one console subscribed)".into());
        line(format!(
            "  {:>6} {:>7} {:>7} | {:>6} {:>7} {:>8} {:>8} {:>13} | {:>7} | {:>6} {:>8} {:>13} {:>5}",
            "N", "conn", "conn s", "cpu", "rss MB", "telem/s", "events/s", "lat p50/p99ms",
            "placed/s", "cpu", "events/s", "lat p50/p99ms", "dropped"
        ));
        for v in sizes {
            let i = &v["idle_fleet"];
            let b = &v["with_recordings"];
            line(format!(
                "  {:>6} {:>7} {:>7} | {:>6} {:>7} {:>8} {:>8} {:>13} | {:>7} | {:>6} {:>8} {:>13} {:>5}",
                v["workers"].to_string(),
                v["connected"].to_string(),
                num(&v["connect_secs"], 1),
                num(&i["coordinator_cpu_cores"], 2),
                num(&i["coordinator_rss_mb"], 0),
                num(&i["telemetry_sent_per_s"], 0),
                num(&i["events_at_console_per_s"], 0),
                format!("{}/{}", num(&i["event_latency_ms"]["p50"], 1), num(&i["event_latency_ms"]["p99"], 1)),
                num(&v["placement"]["placed_per_s"], 0),
                num(&b["coordinator_cpu_cores"], 2),
                num(&b["events_at_console_per_s"], 0),
                format!("{}/{}", num(&b["event_latency_ms"]["p50"], 1), num(&b["event_latency_ms"]["p99"], 1)),
                v["sim_connections_closed_total"].as_u64().unwrap_or(0),
            ));
        }
        line(format!(
            "  (left: fleet idle; placed/s: {} recordings; right: with them recording; dropped: worker connections that died)",
            sizes
                .first()
                .map(|v| v["placement"]["recordings"].to_string())
                .unwrap_or_default()
        ));
    }
    let s = &r["start"];
    if s.get("n").is_some() {
        line(format!(
            "3. Start latency (request -> first frame, cold, n={}): p50 {} ms, p95 {} ms, max {} ms",
            s["n"], num(&s["p50_ms"], 0), num(&s["p95_ms"], 0), num(&s["max_ms"], 0)
        ));
    }
    let w = &s["warm"];
    if w.get("n").is_some() {
        line(format!(
            "3. Start latency (warm: a ready slot, n={}): p50 {} ms, p95 {} ms, max {} ms; a ready slot waits at {} cores, {} MB",
            w["n"], num(&w["p50_ms"], 0), num(&w["p95_ms"], 0), num(&w["max_ms"], 0),
            num(&json!(w["idle_millicores"].as_f64().unwrap_or(0.0) / 1000.0), 3),
            num(&json!(w["idle_pss_bytes"].as_f64().unwrap_or(0.0) / 1e6), 0)
        ));
    }
    let sat = &r["saturation"];
    if sat.get("false_losses").is_some() {
        line(format!(
            "11. CPU saturation ({} busy loops, {} s, load {}): {} workers falsely lost, {} sessions closed for silence, {} recordings placed again, {}/4 completed",
            sat["busy_loops"], sat["secs"], num(&sat["loadavg_1m_at_end"], 1),
            sat["false_losses"], sat["sessions_closed_for_silence"],
            sat["recordings_placed_again"], sat["completed"]
        ));
    }
    let f = &r["failover"];
    if f.get("n").is_some() {
        line(format!(
            "4. Failover (kill -9 -> first frame elsewhere, n={}): p50 {} ms, p95 {} ms, max {} ms; manifest gap p50 {} ms, max {} ms",
            f["n"], num(&f["p50_ms"], 0), num(&f["p95_ms"], 0), num(&f["max_ms"], 0), num(&f["gap_p50_ms"], 0), num(&f["gap_max_ms"], 0)
        ));
        let t = &f["redundancy2"];
        line(format!(
            "4. Failover with redundancy 2 (kill -9 of the first copy's worker, n={}): gap {} ms in the manifest; interrupted {} time(s); two copies again after p50 {} ms, max {} ms",
            t["trials"], t["gap_total_ms"], t["interrupted"], num(&t["two_copies_again_p50_ms"], 0), num(&t["two_copies_again_max_ms"], 0)
        ));
    }
    if let Some(by) = r["density"]["by_fps"].as_object() {
        for (k, v) in by {
            let last_held = v["steps"]
                .as_array()
                .and_then(|s| s.iter().rev().find(|x| x["held"] == json!(true)));
            line(format!(
                "5. Density {k}: {} concurrent without drops; CPU per recording, everything included: {} cores; the worker process at that load: {} cores, {} MB RSS",
                v["max_concurrent_without_drops"],
                last_held.map(|x| num(&x["cpu_cores_per_recording"], 3)).unwrap_or("-".into()),
                last_held.map(|x| num(&x["worker_process_cpu_cores"], 4)).unwrap_or("-".into()),
                last_held.map(|x| num(&x["worker_process_rss_mb"], 1)).unwrap_or("-".into()),
            ));
        }
    }
    let o = &r["output"];
    if o.get("upload").is_some() {
        line(format!(
            "6. Output: uploading to S3 while recording, per recording ({} at once): {} cores, {} MB RSS",
            o["upload"]["recordings"],
            num(&o["upload"]["cores_per_recording"], 4),
            num(&o["upload"]["rss_mb_per_recording"], 1),
        ));
        for dest in ["s3", "file"] {
            let f = &o["finalize"][dest];
            line(format!(
                "   end -> recording.mp4 of a {} min recording ({}): {} s ({} s per recorded hour)",
                o["media"]["minutes"],
                dest,
                num(&f["secs"], 1),
                num(&f["secs_per_recorded_hour"], 0),
            ));
        }
    }
    let h = &r["health"];
    if h.get("ratio").is_some() {
        line(format!(
            "8. Media health: ffmpeg at 720p15 with sound, {} s of media, median of {}: encoder alone {} cores, with analysis and thumbnail {} cores ({}x)",
            h["media_secs"],
            h["rounds"],
            num(&h["encoder_cores_median"], 3),
            num(&h["with_analysis_cores_median"], 3),
            num(&h["ratio"], 2),
        ));
    }
    let e = &r["events"];
    if e.get("worker_ratio").is_some() {
        line(format!(
            "9. Event track: two 720p15 recordings on one worker for {} s; beside a calm page, one emitting 10,000 events/s: worker {} -> {} cores ({}x), slots {} -> {} cores ({}x); the calm page's fps {} -> {}; the flood kept {} and dropped {}",
            e["secs"],
            num(&e["calm"]["worker_cores"], 3),
            num(&e["flood"]["worker_cores"], 3),
            num(&e["worker_ratio"], 2),
            num(&e["calm"]["slot_cores"], 2),
            num(&e["flood"]["slot_cores"], 2),
            num(&e["slots_ratio"], 2),
            num(&e["calm"]["fps"][0], 1),
            num(&e["flood"]["fps"][0], 1),
            e["flood"]["tracks"][1]["kept"],
            e["flood"]["tracks"][1]["dropped"],
        ));
    }
    if let Some(rows) = r["faults"]["rows"].as_array() {
        line(format!(
            "10. Fault matrix, {} trials each: fault, lost recordings, orphan processes, gaps p50 / max ms, capturing again p50 / max ms",
            r["faults"]["trials"]
        ));
        for row in rows {
            if let Some(e) = row.get("error") {
                line(format!(
                    "  {:<44} broke: {e}",
                    row["fault"].as_str().unwrap_or("")
                ));
                continue;
            }
            line(format!(
                "  {:<44} lost {} orphans {} gaps {} {} / {} recovered {} / {}",
                row["fault"].as_str().unwrap_or(""),
                row["lost"],
                row["orphans"].as_array().map_or(0, Vec::len),
                row["gaps_ms"].as_array().map_or(0, Vec::len),
                num(&row["gap_p50_ms"], 0),
                num(&row["gap_max_ms"], 0),
                num(&row["recovered_p50_ms"], 0),
                num(&row["recovered_max_ms"], 0),
            ));
        }
    }
    for k in [
        "rtt",
        "scale",
        "start",
        "failover",
        "density",
        "output",
        "health",
        "events",
        "faults",
        "saturation",
    ] {
        if let Some(e) = r[k].get("error") {
            line(format!("{k}: FAILED: {e}"));
        }
    }
    line(format!("total {} s", num(&r["total_secs"], 0)));
    out
}
