//! The worker's load for its telemetry: CPU and memory of the worker and
//! its slots, and the idle cost of its ready slots, sampled from /proc once
//! a second on the blocking pool.
//!
//! Why not on the link's task: finding a worker's processes reads every
//! process's environment, and a ready slot's memory walks Chromium's
//! mappings. On two saturated cores that took long enough to hold the
//! link's frames back until the coordinator counted the worker silent
//! (a false loss). The link sends the latest sample, however old.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use recfleet_protocol::{Epoch, MachineCapacity, RecordingId};

use super::engine::Engine;
use super::process::{self, ProcessTree};
use super::usage::{self, PidMeter};

/// What one recording's slot costs now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SlotCost {
    /// Its processes, thousandths of a core.
    pub cpu_millicores: u32,
    /// Their proportional memory, bytes.
    pub memory_bytes: u64,
}

/// What the last sample measured.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Load {
    /// The worker and its slots, thousandths of a core.
    pub cpu_millicores: u32,
    /// Their resident memory, bytes.
    pub rss_bytes: u64,
    /// The ready slots, thousandths of a core.
    pub ready_cpu_millicores: u32,
    /// The ready slots' proportional memory, bytes.
    pub ready_memory_bytes: u64,
    /// Each running recording's slot.
    pub slots: HashMap<(RecordingId, Epoch), SlotCost>,
    /// What the machine offers.
    pub capacity: MachineCapacity,
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

/// The meters kept between samples.
#[derive(Debug, Default)]
struct Meters {
    all: PidMeter,
    ready: PidMeter,
    slots: HashMap<(RecordingId, Epoch), PidMeter>,
    /// The last memory of each slot, refreshed every [`MEMORY_EVERY`]th
    /// sample.
    memory: HashMap<(RecordingId, Epoch), u64>,
    ready_memory: u64,
    samples: u64,
}

/// Memory (of slots and ready slots) is read every this many samples:
/// reading a browser's proportional memory walks all its mappings, and
/// every second that cost the worker a tenth of a core.
const MEMORY_EVERY: u64 = 5;

impl LoadWatch {
    /// Starts sampling `engine`'s processes; the worker may use
    /// `cpu_capacity_millicores` of CPU (0: its CPUs, within its cgroup's
    /// quota).
    pub fn start(engine: Arc<Engine>, cpu_capacity_millicores: u32) -> LoadWatch {
        let latest = Arc::new(Mutex::new(Load::default()));
        let out = latest.clone();
        let cpu_capacity = match cpu_capacity_millicores {
            0 => std::thread::available_parallelism().map_or(1000, |n| n.get() as u32 * 1000),
            c => c,
        };
        let task = tokio::spawn(async move {
            let mut meters = Meters::default();
            loop {
                let e = engine.clone();
                let sampled =
                    tokio::task::spawn_blocking(move || sample(&e, meters, cpu_capacity)).await;
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
        self.latest
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

fn sample(engine: &Engine, mut meters: Meters, cpu_capacity: u32) -> (Load, Meters) {
    let tree = ProcessTree::read();
    let tagged = process::tagged_under(engine.instance_tag());
    let mut all: Vec<i32> = tagged.iter().map(|(pid, _)| *pid).collect();
    all = tree.with_descendants(&all);
    all.push(std::process::id() as i32);
    // Processes come and go (Chromium's renderers, parts that end): only
    // those seen in both samples count, so a process's lifetime CPU is
    // never taken for a second's.
    // Each process's /proc/PID/stat is read once for every meter: the
    // slots' and the ready slots' processes are among `all`.
    let stats = usage::stats(&all);
    let cpu_millicores = meters.all.sample_from(&stats, &all);
    let rss_bytes = stats.values().map(|(_, rss)| rss).sum();
    let waiting: Vec<i32> = engine
        .pool()
        .tags
        .iter()
        .flat_map(|t| {
            tagged
                .iter()
                .filter(move |(_, tag)| process::tag_is_under(tag, t))
                .map(|(pid, _)| *pid)
        })
        .collect();
    meters.samples += 1;
    let with_memory = meters.samples % MEMORY_EVERY == 1;
    let waiting = tree.with_descendants(&waiting);
    let ready_cpu_millicores = meters.ready.sample_from(&stats, &waiting);
    let ready_memory_bytes = if with_memory {
        meters.ready_memory = waiting.iter().filter_map(|p| usage::pss(*p)).sum();
        meters.ready_memory
    } else {
        meters.ready_memory
    };
    let mut slots = HashMap::new();
    let mut slot_meters = HashMap::new();
    let mut slot_memory = HashMap::new();
    for (id, epoch, tag) in engine.slot_tags() {
        let pids: Vec<i32> = tagged
            .iter()
            .filter(|(_, t)| process::tag_is_under(t, &tag))
            .map(|(pid, _)| *pid)
            .collect();
        let pids = tree.with_descendants(&pids);
        let key = (id, epoch);
        let mut meter = meters.slots.remove(&key).unwrap_or_default();
        let cpu = meter.sample_from(&stats, &pids);
        let memory = if with_memory {
            pids.iter().filter_map(|p| usage::pss(*p)).sum()
        } else {
            meters.memory.get(&key).copied().unwrap_or(0)
        };
        slots.insert(
            key.clone(),
            SlotCost {
                cpu_millicores: cpu,
                memory_bytes: memory,
            },
        );
        slot_memory.insert(key.clone(), memory);
        slot_meters.insert(key, meter);
    }
    // Recordings gone since take their meters with them.
    meters.slots = slot_meters;
    meters.memory = slot_memory;
    (
        Load {
            cpu_millicores,
            rss_bytes,
            ready_cpu_millicores,
            ready_memory_bytes,
            slots,
            capacity: MachineCapacity {
                cpu_millicores: cpu_capacity,
                memory_available_bytes: usage::memory_available().unwrap_or(0),
            },
        },
        meters,
    )
}
