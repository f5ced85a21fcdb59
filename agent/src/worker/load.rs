//! The worker's load for its telemetry: CPU and memory of the worker and
//! its slots, and the idle cost of its ready slots, sampled from /proc once
//! a second on the blocking pool.
//!
//! Why not on the link's task: finding a worker's processes reads every
//! process's environment, and a ready slot's memory walks Chromium's
//! mappings. On two saturated cores that took long enough to hold the
//! link's frames back until the coordinator counted the worker silent
//! (a false loss). The link sends the latest sample, however old.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::engine::Engine;
use super::process;
use super::usage::{PidMeter, UsageMeter};

/// What the last sample measured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Load {
    /// The worker and its slots, thousandths of a core.
    pub cpu_millicores: u32,
    /// Their resident memory, bytes.
    pub rss_bytes: u64,
    /// The ready slots, thousandths of a core.
    pub ready_cpu_millicores: u32,
    /// The ready slots' proportional memory, bytes.
    pub ready_memory_bytes: u64,
}

/// How often the load is sampled.
const PERIOD: Duration = Duration::from_secs(1);

/// The latest sample, kept current by a task that ends when the returned
/// handle is dropped.
#[derive(Debug)]
pub struct LoadWatch {
    latest: Arc<Mutex<Load>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for LoadWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl LoadWatch {
    /// Starts sampling `engine`'s processes.
    pub fn start(engine: Arc<Engine>) -> LoadWatch {
        let latest = Arc::new(Mutex::new(Load::default()));
        let out = latest.clone();
        let task = tokio::spawn(async move {
            let mut meters = (UsageMeter::default(), PidMeter::default());
            loop {
                let e = engine.clone();
                let sampled = tokio::task::spawn_blocking(move || sample(&e, meters)).await;
                match sampled {
                    Ok((load, m)) => {
                        meters = m;
                        *out.lock().unwrap_or_else(|e| e.into_inner()) = load;
                    }
                    Err(_) => return,
                }
                tokio::time::sleep(PERIOD).await;
            }
        });
        LoadWatch { latest, task }
    }

    /// The latest sample.
    pub fn latest(&self) -> Load {
        *self.latest.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn sample(
    engine: &Engine,
    (mut usage, mut ready_usage): (UsageMeter, PidMeter),
) -> (Load, (UsageMeter, PidMeter)) {
    let mut pids = process::tagged_pids(engine.instance_tag());
    pids.push(std::process::id() as i32);
    let (cpu_millicores, rss_bytes) = usage.sample(&pids);
    let waiting: Vec<i32> = engine
        .pool()
        .tags
        .iter()
        .flat_map(|t| process::tagged_pids(t))
        .collect();
    let (ready_cpu_millicores, ready_memory_bytes) =
        ready_usage.sample(&process::with_descendants(&waiting));
    (
        Load {
            cpu_millicores,
            rss_bytes,
            ready_cpu_millicores,
            ready_memory_bytes,
        },
        (usage, ready_usage),
    )
}
