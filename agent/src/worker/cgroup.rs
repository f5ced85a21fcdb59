//! Per-slot resource limits: each part's processes (display, sound,
//! ChromeDriver, Chromium and everything it forks, the encoder) go into a
//! control group of their own with a memory, CPU and process-count limit,
//! so one runaway page cannot starve the other recordings of its worker.
//! A page that reaches its memory limit is killed by the kernel inside its
//! own group; the part then ends with "out of memory" as its reason and the
//! slot restarts.
//!
//! cgroup v2 where the unified hierarchy has the controllers (the worker
//! moves itself into a leaf `agent` group first: v2 allows processes only
//! in leaves); otherwise the v1 `memory`, `cpu` and `pids` hierarchies.
//! Where neither can be written (not root, a read-only cgroupfs in a
//! container), limits are off and the worker says so once at start.

use std::path::{Path, PathBuf};

/// The limits of one slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    /// Memory of all its processes together, bytes.
    pub memory_max: Option<u64>,
    /// CPU, in thousandths of a core (1500: one and a half cores).
    pub cpu_max_millicores: Option<u32>,
    /// Processes and threads.
    pub pids_max: Option<u32>,
}

impl Limits {
    /// Whether any limit is set.
    pub fn any(&self) -> bool {
        self.memory_max.is_some() || self.cpu_max_millicores.is_some() || self.pids_max.is_some()
    }
}

/// CFS period for the CPU limit.
const CPU_PERIOD_US: u64 = 100_000;

/// Where slot groups are made.
#[derive(Debug, Clone)]
pub enum Hierarchy {
    /// cgroup v2: slot groups under this directory.
    V2(PathBuf),
    /// cgroup v1: a directory per controller.
    V1 {
        /// Under the memory controller.
        memory: PathBuf,
        /// Under the cpu controller.
        cpu: PathBuf,
        /// Under the pids controller.
        pids: PathBuf,
    },
}

impl Hierarchy {
    /// Finds a writable hierarchy and makes `recfleet-<instance>` in it;
    /// the error says why limits are off.
    pub fn detect(instance: &str, limits: &Limits) -> Result<Hierarchy, String> {
        let own = std::fs::read_to_string("/proc/self/cgroup")
            .map_err(|e| format!("cannot read /proc/self/cgroup: {e}"))?;
        let root = Path::new("/sys/fs/cgroup");
        let controllers =
            std::fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
        let has = |c: &str| controllers.split_whitespace().any(|x| x == c);
        if has("memory") && has("cpu") && has("pids") {
            return v2(root, &own, instance, limits.cpu_max_millicores.is_some());
        }
        let path_of = |controller: &str| -> Option<PathBuf> {
            let line = own.lines().find(|l| {
                l.split(':')
                    .nth(1)
                    .is_some_and(|cs| cs.split(',').any(|c| c == controller))
            })?;
            let rel = line.splitn(3, ':').nth(2)?.trim_start_matches('/');
            Some(root.join(controller).join(rel))
        };
        let (Some(memory), Some(cpu), Some(pids)) =
            (path_of("memory"), path_of("cpu"), path_of("pids"))
        else {
            return Err(
                "no cgroup v2 controllers and no v1 memory, cpu and pids hierarchies".into(),
            );
        };
        let mine = format!("recfleet-{instance}");
        for parent in [&memory, &cpu, &pids] {
            sweep_stale(parent);
        }
        let dirs = [memory.join(&mine), cpu.join(&mine), pids.join(&mine)];
        for d in &dirs {
            std::fs::create_dir_all(d)
                .map_err(|e| format!("cannot create {}: {e}", d.display()))?;
        }
        let [memory, cpu, pids] = dirs;
        Ok(Hierarchy::V1 { memory, cpu, pids })
    }

    /// Makes the group of one part with `limits`.
    pub fn slot(&self, name: &str, limits: &Limits) -> std::io::Result<SlotCgroup> {
        let group = match self {
            Hierarchy::V2(dir) => {
                let d = dir.join(name);
                std::fs::create_dir_all(&d)?;
                if let Some(m) = limits.memory_max {
                    std::fs::write(d.join("memory.max"), m.to_string())?;
                    // No swap: a slot over its memory is killed, not slowed
                    // to a crawl.
                    let _ = std::fs::write(d.join("memory.swap.max"), "0");
                }
                if let Some(c) = limits.cpu_max_millicores {
                    let quota = u64::from(c) * CPU_PERIOD_US / 1000;
                    std::fs::write(d.join("cpu.max"), format!("{quota} {CPU_PERIOD_US}"))?;
                }
                if let Some(p) = limits.pids_max {
                    std::fs::write(d.join("pids.max"), p.to_string())?;
                }
                SlotCgroup {
                    dirs: vec![d.clone()],
                    memory: d,
                    v2: true,
                }
            }
            Hierarchy::V1 { memory, cpu, pids } => {
                let (m, c, p) = (memory.join(name), cpu.join(name), pids.join(name));
                // The cpu group only with a CPU limit: a group of its own
                // changes how the scheduler shares the machine between the
                // slots and the worker (seen: a worker starved for 2 s
                // while two slots started), which is not asked for then.
                let cpu = limits.cpu_max_millicores.is_some();
                for d in [&m, &p] {
                    std::fs::create_dir_all(d)?;
                }
                if cpu {
                    std::fs::create_dir_all(&c)?;
                }
                if let Some(bytes) = limits.memory_max {
                    std::fs::write(m.join("memory.limit_in_bytes"), bytes.to_string())?;
                    let _ =
                        std::fs::write(m.join("memory.memsw.limit_in_bytes"), bytes.to_string());
                }
                if let Some(mc) = limits.cpu_max_millicores {
                    let quota = u64::from(mc) * CPU_PERIOD_US / 1000;
                    std::fs::write(c.join("cpu.cfs_period_us"), CPU_PERIOD_US.to_string())?;
                    std::fs::write(c.join("cpu.cfs_quota_us"), quota.to_string())?;
                }
                if let Some(n) = limits.pids_max {
                    std::fs::write(p.join("pids.max"), n.to_string())?;
                }
                SlotCgroup {
                    dirs: if cpu {
                        vec![m.clone(), c, p]
                    } else {
                        vec![m.clone(), p]
                    },
                    memory: m,
                    v2: false,
                }
            }
        };
        Ok(group)
    }

    /// Removes `recfleet-<instance>` (the worker stops).
    pub fn remove(&self) {
        let dirs = match self {
            Hierarchy::V2(d) => vec![d.clone()],
            Hierarchy::V1 { memory, cpu, pids } => vec![memory.clone(), cpu.clone(), pids.clone()],
        };
        for d in dirs {
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// Removes the groups of workers that are gone (`recfleet-<pid>-<ms>`
/// whose pid is not alive): a worker killed with kill -9 leaves its empty
/// groups behind, and each costs the kernel memory until removed. A group
/// with a process left is not removable and stays.
fn sweep_stale(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("recfleet-")
            .and_then(|rest| rest.split('-').next())
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        if crate::worker::process::is_alive(pid) {
            continue;
        }
        if let Ok(slots) = std::fs::read_dir(e.path()) {
            for s in slots.flatten().filter(|s| s.path().is_dir()) {
                let _ = std::fs::remove_dir(s.path());
            }
        }
        let _ = std::fs::remove_dir(e.path());
    }
}

fn v2(root: &Path, own: &str, instance: &str, cpu: bool) -> Result<Hierarchy, String> {
    // The cpu controller only with a CPU limit (see the v1 case in
    // `Hierarchy::slot`).
    let controllers = if cpu {
        "+memory +cpu +pids"
    } else {
        "+memory +pids"
    };
    let rel = own
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .ok_or("no cgroup v2 line in /proc/self/cgroup")?
        .trim_start_matches('/');
    let base = root.join(rel);
    // v2 keeps processes only in leaves: the worker moves into `agent`,
    // then its group hands the controllers down to `slots-<instance>`.
    let agent = base.join("agent");
    std::fs::create_dir_all(&agent)
        .and_then(|()| std::fs::write(agent.join("cgroup.procs"), std::process::id().to_string()))
        .map_err(|e| format!("cannot move the worker into {}: {e}", agent.display()))?;
    std::fs::write(base.join("cgroup.subtree_control"), controllers)
        .map_err(|e| format!("cannot delegate controllers in {}: {e}", base.display()))?;
    sweep_stale(&base);
    let slots = base.join(format!("recfleet-{instance}"));
    std::fs::create_dir_all(&slots)
        .and_then(|()| std::fs::write(slots.join("cgroup.subtree_control"), controllers))
        .map_err(|e| format!("cannot prepare {}: {e}", slots.display()))?;
    Ok(Hierarchy::V2(slots))
}

/// The group of one part; removed on drop (its processes are gone by then).
#[derive(Debug)]
pub struct SlotCgroup {
    dirs: Vec<PathBuf>,
    memory: PathBuf,
    v2: bool,
}

impl SlotCgroup {
    /// Puts a process (and what it forks from now on) in the group.
    pub fn add(&self, pid: i32) -> std::io::Result<()> {
        for d in &self.dirs {
            std::fs::write(d.join("cgroup.procs"), pid.to_string())?;
        }
        Ok(())
    }

    /// How many times the kernel killed a process of the group for memory.
    pub fn oom_kills(&self) -> u64 {
        let file = if self.v2 {
            "memory.events"
        } else {
            "memory.oom_control"
        };
        std::fs::read_to_string(self.memory.join(file))
            .map(|s| oom_kill_count(&s))
            .unwrap_or(0)
    }
}

/// `oom_kill N` of memory.events (v2) or memory.oom_control (v1).
fn oom_kill_count(text: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

impl Drop for SlotCgroup {
    fn drop(&mut self) {
        for d in &self.dirs {
            // Fails while a process is left (the guard's sweep then the
            // next start of the worker tidy up); never blocks.
            let _ = std::fs::remove_dir(d);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oom_kills_are_read_from_either_version() {
        let v2 = "low 0\nhigh 0\nmax 12\noom 2\noom_kill 2\noom_group_kill 0\n";
        assert_eq!(oom_kill_count(v2), 2);
        let v1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
        assert_eq!(oom_kill_count(v1), 3);
        assert_eq!(oom_kill_count(""), 0);
    }
}
