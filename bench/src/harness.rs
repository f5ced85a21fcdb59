//! The benchmarks' fleet (recfleet-testkit's launcher with the release
//! `recfleet-agent`, quiet logs, ready before it is returned) and what the
//! report says about the machine.

use std::path::Path;

use recfleet_testkit::{FleetOptions, TestFleet};

/// A CA and a coordinator in `dir` (`idle_timeout_ms` decides failover
/// detection), answering requests.
pub async fn start_fleet(
    agent: &Path,
    dir: &Path,
    idle_timeout_ms: u64,
) -> anyhow::Result<TestFleet> {
    start_fleet_on(agent, dir, idle_timeout_ms, None, 0).await
}

/// Like [`start_fleet`], on the PostgreSQL store `store` (`None`: SQLite)
/// with `standbys` more coordinators.
pub async fn start_fleet_on(
    agent: &Path,
    dir: &Path,
    idle_timeout_ms: u64,
    store: Option<String>,
    standbys: u32,
) -> anyhow::Result<TestFleet> {
    let mut fleet = TestFleet::start_with(FleetOptions {
        agent: agent.to_path_buf(),
        dir: Some(dir.to_path_buf()),
        idle_timeout_ms: Some(idle_timeout_ms),
        log_filter: "info".into(),
        agent_certs: 0,
        store,
        standbys,
        ..Default::default()
    })
    .await?;
    fleet.wait_ready().await?;
    Ok(fleet)
}

/// The 1-minute load average and what else is busy (for the report).
pub fn machine_load() -> (f64, Vec<String>) {
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    let mut busy = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if pid == std::process::id() {
                continue;
            }
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            let comm = comm.trim();
            if [
                "cargo",
                "rustc",
                "cargo-nextest",
                "chromium",
                "chrome",
                "ffmpeg",
                "recfleet-agent",
            ]
            .iter()
            .any(|c| comm.starts_with(c))
            {
                busy.push(format!("{comm}({pid})"));
            }
        }
    }
    (load, busy)
}
