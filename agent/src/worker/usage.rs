//! CPU and memory of the worker and its slot processes, from /proc.

/// Clock ticks per second of /proc's CPU times (USER_HZ, 100 on Linux).
pub const TICKS_PER_SEC: u64 = 100;

/// CPU ticks (user + system) and resident bytes of one process.
pub fn sample(pid: i32) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = after.split_whitespace().collect();
    // After the command: state(0) ppid(1) ... utime(11) stime(12) ... rss(21) pages.
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    let rss_pages = f.get(21)?.parse::<u64>().ok()?;
    Some((ticks, rss_pages * 4096))
}

/// Proportional set size of one process, bytes: its resident memory with
/// each shared page divided among the processes that share it. Chromium's
/// processes share most of their pages; summing their RSS counts those
/// pages once per process (an idle browser's "1 GiB").
pub fn pss(pid: i32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    let line = text.lines().find(|l| l.starts_with("Pss:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Memory available on the machine for new work (MemAvailable), bytes.
pub fn memory_available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// CPU ticks and resident bytes of processes, by pid (see [`sample`]).
pub type Stats = std::collections::HashMap<i32, (u64, u64)>;

/// Reads [`sample`] of each of `pids` once.
pub fn stats(pids: &[i32]) -> Stats {
    pids.iter()
        .filter_map(|pid| sample(*pid).map(|s| (*pid, s)))
        .collect()
}

/// CPU of a set of processes that changes between samples (slots and
/// ready slots come and go): only processes seen in both samples count, so
/// that a slot's start-up CPU is not taken for its idle cost.
#[derive(Debug, Default)]
pub struct PidMeter {
    last: Option<(std::time::Instant, std::collections::HashMap<i32, u64>)>,
}

impl PidMeter {
    /// Takes `pids` out of `stats` (CPU ticks and resident bytes per pid,
    /// read once for several meters): thousandths of a core since the last
    /// call.
    pub fn sample_from(&mut self, stats: &Stats, pids: &[i32]) -> u32 {
        self.take(
            pids.iter()
                .filter_map(|pid| stats.get(pid).map(|(t, _)| (*pid, *t)))
                .collect(),
        )
    }

    fn take(&mut self, ticks: std::collections::HashMap<i32, u64>) -> u32 {
        let now = std::time::Instant::now();
        let cpu = match &self.last {
            Some((at, before)) => {
                let used: u64 = ticks
                    .iter()
                    .filter_map(|(pid, t)| before.get(pid).map(|b| t.saturating_sub(*b)))
                    .sum();
                let secs = now.duration_since(*at).as_secs_f64().max(0.001);
                ((used as f64 / TICKS_PER_SEC as f64) / secs * 1000.0) as u32
            }
            None => 0,
        };
        self.last = Some((now, ticks));
        cpu
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_this_process() {
        let me = std::process::id() as i32;
        let (_, rss) = sample(me).unwrap();
        assert!(rss > 1_000_000, "rss {rss}");
        let mut m = PidMeter::default();
        assert_eq!(
            m.sample_from(&stats(&[me]), &[me]),
            0,
            "nothing to compare with yet"
        );
        let until = std::time::Instant::now() + std::time::Duration::from_millis(300);
        let mut x = 0u64;
        while std::time::Instant::now() < until {
            x = x.wrapping_add(1);
        }
        // A pid that does not exist counts for nothing.
        let cpu = m.sample_from(&stats(&[me, -1]), &[me, -1]);
        assert!(x > 0 && cpu > 300, "busy loop measured as {cpu} millicores");
    }
}
