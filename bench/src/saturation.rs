//! Benchmark 11, false losses under CPU saturation: two workers record two
//! 640x360 pages each while busy loops (twice as many as the machine has
//! cores) take every core, for a fixed time. A worker that is alive but
//! judged lost is a false loss: its recordings are placed again
//! (a duplicate capture and a gap) for nothing. Counted from the
//! coordinator's log (workers lost) and the workers' logs (sessions the
//! coordinator closed for silence), and the recordings' placements.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use recfleet_agent::demo::DemoServer;
use recfleet_protocol::spec::{RecordingSpec, Viewport};
use recfleet_protocol::{ConsoleRequest, RecordingId, RecordingState};
use serde_json::{json, Value};

use crate::harness::start_fleet;
use crate::Opts;

/// Busy loops, killed when dropped.
struct Hogs(Vec<Child>);

impl Hogs {
    fn start(n: usize) -> anyhow::Result<Hogs> {
        let mut v = Vec::new();
        for _ in 0..n {
            v.push(
                Command::new("sh")
                    .args(["-c", "while :; do :; done"])
                    .stdout(Stdio::null())
                    .spawn()?,
            );
        }
        Ok(Hogs(v))
    }
}

impl Drop for Hogs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn count(path: &Path, needle: &str) -> usize {
    std::fs::read_to_string(path)
        .map(|t| t.lines().filter(|l| l.contains(needle)).count())
        .unwrap_or(0)
}

/// Runs it: `secs` of saturation.
pub async fn run(opts: &Opts, agent: &Path, dir: &Path) -> anyhow::Result<Value> {
    let secs = opts.pick(15, 120);
    let page = DemoServer::start(([127, 0, 0, 1], 0).into()).await?;
    // The defaults of both roles: keep-alive 500 ms, idle timeout 2 s.
    let mut fleet = start_fleet(agent, dir, 2000).await?;
    for n in 1..=2 {
        fleet.add_worker_with(n, 2, &[("RECFLEET_READY_SLOTS", "1")])?;
    }
    fleet.wait_workers(2, 30).await?;
    let mut ids = Vec::new();
    for i in 0..4 {
        let id = RecordingId::new(format!("busy-{i}"))?;
        let mut s = RecordingSpec::new(id.clone(), page.url(&format!("title={id}")));
        s.viewport = Viewport {
            width: 640,
            height: 360,
        };
        s.stop.max_duration_secs = Some(1800);
        fleet.request(ConsoleRequest::StartRecording(s)).await?;
        fleet
            .wait_for_polling(&id, 90, Duration::from_millis(200), |d| {
                d.info.state == RecordingState::Recording
            })
            .await?;
        ids.push(id);
    }
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let lost_before = count(&fleet.log_path("coordinator"), "worker lost");
    let hogs = Hogs::start(cores * 2)?;
    println!(
        "    {} busy loops for {secs} s beside 4 recordings",
        cores * 2
    );
    let load = {
        tokio::time::sleep(Duration::from_secs(secs)).await;
        std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|l| l.split_whitespace().next()?.parse::<f64>().ok())
    };
    drop(hogs);
    let lost = count(&fleet.log_path("coordinator"), "worker lost") - lost_before;
    let silent: usize = ["w1", "w2"]
        .iter()
        .map(|w| count(&fleet.log_path(w), "silent past the limit"))
        .sum();
    let mut replaced = 0;
    let mut completed = 0;
    for id in &ids {
        fleet
            .request(ConsoleRequest::StopRecording { id: id.clone() })
            .await?;
        let d = fleet
            .wait_for_polling(id, 90, Duration::from_millis(200), |d| {
                d.info.state.is_terminal()
            })
            .await?;
        if d.info.epoch.0 > 1 {
            replaced += 1;
        }
        if d.info.state == RecordingState::Completed {
            completed += 1;
        }
    }
    fleet.shutdown().await;
    println!(
        "    workers lost {lost}, sessions closed for silence {silent}, recordings placed again {replaced}, completed {completed}/4"
    );
    Ok(json!({
        "what": "4 recordings at 640x360p15 on 2 workers (capacity 2, one ready slot each) while 2 busy loops per core run; a worker judged lost while alive is a false loss",
        "secs": secs,
        "busy_loops": cores * 2,
        "loadavg_1m_at_end": load,
        "false_losses": lost,
        "sessions_closed_for_silence": silent,
        "recordings_placed_again": replaced,
        "completed": completed,
    }))
}
