//! OS processes of a slot: spawned each in its own process group, tagged in
//! their environment, killed as a tree, and always reaped.
//!
//! Why a tag: Chromium's helpers (zygote, renderers, GPU, crashpad) are not
//! our children and do not all stay in the process group we give the browser
//! (ChromeDriver launches Chromium in a session of its own). They do inherit
//! the environment, so `RECFLEET_SLOT_TAG` finds every process of a slot,
//! whatever its parent or group. The guard process (see `guard.rs`) uses the
//! same tag to clean up when the worker itself is killed.

use std::collections::HashSet;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use nix::sys::signal::{kill, killpg, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::Pid;
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::mpsc;

/// The environment variable that marks every process of a slot.
pub const TAG_VAR: &str = "RECFLEET_SLOT_TAG";

/// Pids this worker spawned itself; tokio reaps those. Anything else that
/// becomes our zombie (orphans re-parented to us as subreaper) is reaped by
/// [`reap_orphans`].
fn spawned() -> &'static Mutex<HashSet<i32>> {
    static SPAWNED: OnceLock<Mutex<HashSet<i32>>> = OnceLock::new();
    SPAWNED.get_or_init(|| Mutex::new(HashSet::new()))
}

fn lock_spawned() -> std::sync::MutexGuard<'static, HashSet<i32>> {
    // A poisoned set is still a valid set of pids.
    spawned().lock().unwrap_or_else(|e| e.into_inner())
}

/// How a process of the slot ended.
#[derive(Debug, Clone)]
pub struct Exit {
    /// Which process (`xvfb`, `pulseaudio`, `chromedriver`, `ffmpeg`, `capture`).
    pub name: &'static str,
    /// Its status, as text ("exit code 1", "signal 9 (SIGKILL)").
    pub status: String,
}

/// A running process of a slot. It is waited for by a task of its own, which
/// reports the exit on the slot's channel.
#[derive(Debug, Clone)]
pub struct SlotProcess {
    /// Which process.
    pub name: &'static str,
    /// Its pid, which is also its process group id.
    pub pid: i32,
}

/// What a spawn hands back besides the process: the pipes the caller asked for.
#[derive(Debug)]
pub struct Spawned {
    /// The process.
    pub process: SlotProcess,
    /// Its stdin, if piped.
    pub stdin: Option<ChildStdin>,
    /// Its stdout, if piped.
    pub stdout: Option<ChildStdout>,
}

/// Spawns `cmd` as a process of the slot tagged `tag`: in a new process group,
/// with stderr appended to `log`, and a task that reports its exit on `exits`.
pub fn spawn(
    name: &'static str,
    mut cmd: Command,
    tag: &str,
    log: &Path,
    pipe_stdin: bool,
    pipe_stdout: bool,
    exits: mpsc::UnboundedSender<Exit>,
) -> std::io::Result<Spawned> {
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    cmd.env(TAG_VAR, tag)
        .process_group(0)
        .stdin(if pipe_stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(if pipe_stdout {
            Stdio::piped()
        } else {
            Stdio::from(log_file.try_clone()?)
        })
        .stderr(Stdio::from(log_file))
        // A backstop only: teardown kills the group and the tag first.
        .kill_on_drop(true);
    let mut child: Child = cmd
        .spawn()
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot start {name}: {e}")))?;
    let pid = child.id().map(|p| p as i32).unwrap_or(0);
    lock_spawned().insert(pid);
    let stdin = child.stdin.take();
    let stdout = child.stdout.take();
    tokio::spawn(async move {
        let status = child.wait().await;
        lock_spawned().remove(&pid);
        let status = match status {
            Ok(s) => describe_status(s),
            Err(e) => format!("wait failed: {e}"),
        };
        let _ = exits.send(Exit { name, status });
    });
    Ok(Spawned {
        process: SlotProcess { name, pid },
        stdin,
        stdout,
    })
}

/// "exit code 1" or "signal 9 (SIGKILL)".
pub fn describe_status(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    if let Some(code) = status.code() {
        format!("exit code {code}")
    } else if let Some(sig) = status.signal() {
        match Signal::try_from(sig) {
            Ok(s) => format!("signal {sig} ({})", s.as_str()),
            Err(_) => format!("signal {sig}"),
        }
    } else {
        "unknown status".into()
    }
}

impl SlotProcess {
    /// Sends `signal` to the process's whole group.
    pub fn signal_group(&self, signal: Signal) {
        if self.pid > 0 {
            let _ = killpg(Pid::from_raw(self.pid), signal);
        }
    }
}

/// Pids of processes whose environment holds `TAG_VAR=<value>` with `value`
/// equal to `tag` or starting with `tag` followed by `/`.
pub fn tagged_pids(tag: &str) -> Vec<i32> {
    tagged_under(tag).into_iter().map(|(pid, _)| pid).collect()
}

/// Processes whose tag is `prefix` or under it, with their tags: one pass
/// over /proc for all of a worker's slots.
pub fn tagged_under(prefix: &str) -> Vec<(i32, String)> {
    let var = format!("{TAG_VAR}=");
    let me = std::process::id() as i32;
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| *pid != me)
        .filter_map(|pid| {
            let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
            let tag = env
                .split(|b| *b == 0)
                .find_map(|v| v.strip_prefix(var.as_bytes()))?;
            let tag = String::from_utf8_lossy(tag).into_owned();
            tag_is_under(&tag, prefix).then_some((pid, tag))
        })
        .collect()
}

/// Whether `tag` is `slot` or a tag under it.
pub fn tag_is_under(tag: &str, slot: &str) -> bool {
    tag == slot || tag.strip_prefix(slot).is_some_and(|r| r.starts_with('/'))
}

/// A snapshot of who is whose parent, to find the descendants of several
/// groups with one pass over /proc.
#[derive(Debug, Default)]
pub struct ProcessTree {
    parents: Vec<(i32, i32)>,
}

impl ProcessTree {
    /// Reads every process's parent now.
    pub fn read() -> ProcessTree {
        ProcessTree {
            parents: parent_pairs(),
        }
    }

    /// `pids` and every process descending from them.
    pub fn with_descendants(&self, pids: &[i32]) -> Vec<i32> {
        let mut out: Vec<i32> = pids.to_vec();
        let mut i = 0;
        while i < out.len() {
            let parent = out[i];
            for (pid, ppid) in &self.parents {
                if *ppid == parent && !out.contains(pid) {
                    out.push(*pid);
                }
            }
            i += 1;
        }
        out
    }
}

/// `pids` and every process descending from them (Chromium's renderers
/// rewrite their environment with their title, so the tag alone misses
/// them; their parent does not).
pub fn with_descendants(pids: &[i32]) -> Vec<i32> {
    ProcessTree::read().with_descendants(pids)
}

/// (pid, parent pid) of every process.
fn parent_pairs() -> Vec<(i32, i32)> {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
                .filter_map(|pid| {
                    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
                    let ppid = stat
                        .rsplit(')')
                        .next()?
                        .split_whitespace()
                        .nth(1)?
                        .parse()
                        .ok()?;
                    Some((pid, ppid))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// SIGKILLs every process tagged `tag` (see [`tagged_pids`]), a few rounds so
/// that processes forked meanwhile are caught too. Returns how many were hit.
pub fn kill_tagged(tag: &str) -> usize {
    let mut total = 0;
    for _ in 0..3 {
        let pids = tagged_pids(tag);
        if pids.is_empty() {
            break;
        }
        for pid in &pids {
            let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
        }
        total += pids.len();
        std::thread::sleep(Duration::from_millis(20));
    }
    total
}

/// Makes this process the reaper of its descendants' orphans, so that
/// Chromium helpers whose parent died are re-parented to us (and reaped
/// here) rather than to init.
pub fn become_subreaper() {
    if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
        tracing::warn!(error = %e, "cannot become child subreaper; orphans go to init");
    }
}

/// Reaps zombies that are our children but not spawned by us (orphans of a
/// slot re-parented to us). Returns how many were reaped.
pub fn reap_orphans() -> usize {
    let me = std::process::id() as i32;
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut reaped = 0;
    for pid in dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok()) {
        let Some((ppid, state)) = ppid_and_state(pid) else {
            continue;
        };
        if ppid != me || state != 'Z' || lock_spawned().contains(&pid) {
            continue;
        }
        if waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)).is_ok() {
            reaped += 1;
        }
    }
    reaped
}

/// Runs [`reap_orphans`] every half second for the life of the process.
pub fn spawn_orphan_reaper() {
    tokio::spawn(async {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tick.tick().await;
            let n = tokio::task::spawn_blocking(reap_orphans).await.unwrap_or(0);
            if n > 0 {
                tracing::debug!(reaped = n, "reaped orphaned slot processes");
            }
        }
    });
}

/// Parent pid and state letter from `/proc/PID/stat`. The command name is in
/// parentheses and may itself contain spaces and parentheses, so parse after
/// the last `)`.
pub fn ppid_and_state(pid: i32) -> Option<(i32, char)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&stat)
}

fn parse_stat(stat: &str) -> Option<(i32, char)> {
    let after = &stat[stat.rfind(')')? + 1..];
    let mut fields = after.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((ppid, state))
}

/// Whether a process is stopped (SIGSTOP, a debugger): it acts on no
/// signal but SIGKILL until it is continued, so waiting for it to finish
/// gently is waiting for nothing.
pub fn is_stopped(pid: i32) -> bool {
    matches!(ppid_and_state(pid), Some((_, 'T' | 't')))
}

/// Whether a process exists (and is not a zombie).
pub fn is_alive(pid: i32) -> bool {
    matches!(ppid_and_state(pid), Some((_, s)) if s != 'Z')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_odd_names_parse() {
        assert_eq!(
            parse_stat("1234 (chromium (x) y) S 77 1234 1234 0 -1"),
            Some((77, 'S'))
        );
        assert_eq!(parse_stat("garbage"), None);
    }

    #[tokio::test]
    async fn a_tagged_tree_is_found_and_killed() {
        let tag = format!("test-{}", std::process::id());
        let (tx, mut rx) = mpsc::unbounded_channel();
        let dir = tempfile::tempdir().unwrap();
        // A shell that forks a grandchild into another process group: the
        // tag must find both.
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg("setsid sleep 60 & sleep 60");
        let s = spawn(
            "sh",
            cmd,
            &format!("{tag}/a"),
            &dir.path().join("log"),
            false,
            false,
            tx,
        )
        .unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let pids = tagged_pids(&tag);
        assert!(pids.len() >= 3, "found {pids:?}");
        assert!(pids.contains(&s.process.pid));
        assert!(tagged_pids(&format!("{tag}/b")).is_empty());
        kill_tagged(&tag);
        let exit = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(exit.status, "signal 9 (SIGKILL)");
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(tagged_pids(&tag).iter().all(|p| !is_alive(*p)));
    }
}
