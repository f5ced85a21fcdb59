//! Processes: where the built binaries are, what a process costs (CPU and
//! resident memory from /proc), and looking for processes a test must not
//! leave behind.

use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Path of a workspace binary next to the running test's target directory
/// (`target/<profile>/deps/<test>` -> `target/<profile>/<name>`).
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    dir.join(name)
}

/// CPU time (user + system, own threads only) and resident memory of a process.
#[derive(Debug, Clone, Copy)]
pub struct ProcSample {
    /// When.
    pub at: Instant,
    /// CPU seconds so far.
    pub cpu_secs: f64,
    /// Resident bytes now (VmRSS).
    pub rss_bytes: u64,
}

/// Reads /proc/<pid>/stat and status; `None` once the process is gone.
pub fn proc_sample(pid: u32) -> Option<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit(')').next()?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After "pid (comm)": state is field 3, utime 14, stime 15 (1-based).
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(ProcSample {
        at: Instant::now(),
        // USER_HZ is 100 on Linux.
        cpu_secs: ticks as f64 / 100.0,
        rss_bytes: rss_kb * 1024,
    })
}

/// The machine's CPU time so far, from the first line of /proc/stat.
#[derive(Debug, Clone, Copy)]
pub struct MachineSample {
    /// Ticks spent on anything but idle and I/O wait, all CPUs.
    pub busy: u64,
    /// All ticks, all CPUs.
    pub total: u64,
    /// CPUs counted.
    pub cpus: usize,
}

/// Samples the whole machine: what a recording costs "everything
/// included" (Chromium's processes, the display, the sound server, the
/// encoder, the worker) on a machine that runs nothing else.
pub fn machine_sample() -> Option<MachineSample> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let mut lines = stat.lines();
    let first = lines.next()?;
    let f: Vec<u64> = first
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...
    let total: u64 = f.iter().take(8).sum();
    let idle = f.get(3)? + f.get(4).copied().unwrap_or(0);
    let cpus = lines.filter(|l| l.starts_with("cpu")).count().max(1);
    Some(MachineSample {
        busy: total.saturating_sub(idle),
        total,
        cpus,
    })
}

/// The machine's busy CPU between two samples, in cores.
pub fn machine_cores_between(a: &MachineSample, b: &MachineSample) -> f64 {
    let total = b.total.saturating_sub(a.total);
    if total == 0 {
        return 0.0;
    }
    b.busy.saturating_sub(a.busy) as f64 / total as f64 * b.cpus as f64
}

/// CPU of a process between two samples, in cores (1.0 = one core busy).
pub fn cores_between(a: &ProcSample, b: &ProcSample) -> f64 {
    let wall = b.at.duration_since(a.at).as_secs_f64();
    if wall <= 0.0 {
        return 0.0;
    }
    (b.cpu_secs - a.cpu_secs) / wall
}

/// Processes whose environment carries the slot tag with this prefix.
pub fn tagged(prefix: &str) -> Vec<(i32, String)> {
    tagged_with_tags(prefix)
        .into_iter()
        .map(|(pid, comm, _)| (pid, comm))
        .collect()
}

/// Processes whose environment carries the slot tag with this prefix,
/// with their command name and whole tag.
pub fn tagged_with_tags(prefix: &str) -> Vec<(i32, String, String)> {
    let needle = format!("RECFLEET_SLOT_TAG={prefix}");
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
            let tag = env
                .split(|b| *b == 0)
                .find(|v| v.starts_with(needle.as_bytes()))?;
            let tag = String::from_utf8_lossy(&tag["RECFLEET_SLOT_TAG=".len()..]).into_owned();
            Some((pid, tag))
        })
        .filter(|(pid, _)| !is_zombie(*pid))
        .map(|(pid, tag)| (pid, comm(pid), tag))
        .collect()
}

/// Processes descending from `pid` (not itself), by parent pid.
pub fn descendants(pid: i32) -> Vec<i32> {
    let parents: Vec<(i32, i32)> = std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
                .filter_map(|p| {
                    let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
                    let ppid = stat
                        .rsplit(')')
                        .next()?
                        .split_whitespace()
                        .nth(1)?
                        .parse()
                        .ok()?;
                    Some((p, ppid))
                })
                .collect()
        })
        .unwrap_or_default();
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        let parent = out[i];
        out.extend(
            parents
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    out.remove(0);
    out
}

/// The command name of a process.
pub fn comm(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit(')')
                .next()
                .map(|r| r.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

/// Waits up to `secs` for no process tagged `prefix` to remain; returns
/// what is left.
pub fn wait_none_tagged(prefix: &str, secs: u64) -> Vec<(i32, String)> {
    let until = Instant::now() + Duration::from_secs(secs);
    loop {
        let left = tagged(prefix);
        if left.is_empty() || Instant::now() > until {
            return left;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
