//! What one part of a placement is made of, shared by the pipeline that runs
//! it and the modules that start and stop its processes (display, browser,
//! external capture, teardown): its context, why it could not start, its
//! frame count and its live process group. It depends on nothing above it.

use std::path::PathBuf;
use std::sync::Arc;

use recfleet_protocol::now_ms;
use recfleet_protocol::spec::RecordingSpec;
use recfleet_protocol::Epoch;
use tokio::process::ChildStdin;
use tokio::sync::{mpsc, watch};

use super::config::{Binaries, Timeouts};
use super::process::{Exit, SlotProcess};

/// Why a part could not start.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{process}: {message}")]
pub struct StartError {
    /// The process that failed (or "page").
    pub process: &'static str,
    /// What happened.
    pub message: String,
}

impl StartError {
    /// From an I/O error.
    pub fn new(process: &'static str, e: impl std::fmt::Display) -> Self {
        StartError {
            process,
            message: e.to_string(),
        }
    }
    /// From a message.
    pub fn msg(process: &'static str, m: impl Into<String>) -> Self {
        StartError {
            process,
            message: m.into(),
        }
    }
    /// The page did not load.
    pub fn page(m: impl Into<String>) -> Self {
        StartError {
            process: "page",
            message: m.into(),
        }
    }
}

/// Everything a part needs to know.
#[derive(Debug, Clone)]
pub struct PartContext {
    /// What to record.
    pub spec: Arc<RecordingSpec>,
    /// The placement.
    pub epoch: Epoch,
    /// The part number within the placement.
    pub part: u32,
    /// The environment tag of every process of this part.
    pub tag: String,
    /// Runtime directory of the part (sockets, profile, logs); removed after.
    pub dir: PathBuf,
    /// Where the part's chunks are written (each is uploaded and deleted
    /// as it closes; an external capture writes one file here).
    pub chunk_dir: PathBuf,
    /// Bytes of the part stored so far (counted by its uploader).
    pub stored: Arc<std::sync::atomic::AtomicU64>,
    /// Programs.
    pub bins: Arc<Binaries>,
    /// Time limits.
    pub timeouts: Timeouts,
    /// Where the processes report their exits.
    pub exits: mpsc::UnboundedSender<Exit>,
    /// The part's egress proxy, which every request of the page goes
    /// through.
    pub egress: super::egress::EgressGate,
    /// The part's control group (memory, CPU, processes), when per-slot
    /// limits are on.
    pub cgroup: Option<Arc<super::cgroup::SlotCgroup>>,
}

impl PartContext {
    /// The file an external capture writes.
    pub fn capture_file(&self) -> PathBuf {
        self.chunk_dir.join(super::upload::CAPTURE_FILE)
    }

    /// Bytes of the part so far: stored, plus what waits in its directory.
    pub fn bytes(&self) -> u64 {
        let local: u64 = std::fs::read_dir(&self.chunk_dir)
            .map(|d| {
                d.flatten()
                    .filter_map(|e| e.metadata().ok())
                    .filter(|m| m.is_file())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0);
        self.stored.load(std::sync::atomic::Ordering::Relaxed) + local
    }

    /// Starts one of the part's processes (tagged, in its own process
    /// group, logging to `<log>.log`) and puts it in the part's control
    /// group at once: none of them forks before it is moved (Chromium is
    /// started by ChromeDriver later), so all they start is limited too.
    pub fn spawn(
        &self,
        name: &'static str,
        cmd: tokio::process::Command,
        log: &str,
        pipe_stdin: bool,
        pipe_stdout: bool,
    ) -> std::io::Result<super::process::Spawned> {
        let spawned = super::process::spawn(
            name,
            cmd,
            &self.tag,
            &self.log(log),
            pipe_stdin,
            pipe_stdout,
            self.exits.clone(),
        )?;
        if let Some(group) = &self.cgroup {
            if let Err(e) = group.add(spawned.process.pid) {
                tracing::warn!(process = name, error = %e, "not limited: cannot join the slot's control group");
            }
        }
        Ok(spawned)
    }

    /// The log file of one process of the part.
    pub fn log(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.log"))
    }

    /// Appends lines to one of the part's own logs (`worker`, `page`),
    /// each stamped with the wall clock: `recfleet logs --since` reads it.
    pub fn append_log(&self, name: &str, lines: &[String]) {
        use std::io::Write;
        if lines.is_empty() {
            return;
        }
        let stamp = humantime::format_rfc3339_millis(std::time::SystemTime::now());
        let mut text = String::new();
        for l in lines {
            text.push_str(&format!("{stamp} {l}\n"));
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log(name));
        if let Ok(mut f) = file {
            let _ = f.write_all(text.as_bytes());
        }
    }
}

/// What the page watcher saw.
#[derive(Debug, Clone, PartialEq)]
pub enum PageStatus {
    /// The page answered.
    Alive {
        /// The end-of-class signal is set.
        ended: bool,
        /// The page's participant count, if it exposes one.
        participants: Option<i64>,
        /// Where the page is now, and whether it is Chromium's error page
        /// (the page asked for, or another).
        location: PageLocation,
        /// Console messages since the last answer (`level: text`).
        console: Vec<String>,
        /// The event track since the last answer.
        track: super::event_track::PageDrain,
    },
    /// The page did not answer this time (slow, busy).
    NoAnswer(String),
    /// The browser is gone (killed, crashed, session lost).
    BrowserGone(String),
    /// The page's renderer crashed ("Aw, Snap!"); the browser is there.
    Crashed(String),
}

/// Where the page is, as the page watcher last saw it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PageLocation {
    /// `location.href`.
    pub href: String,
    /// Chromium shows its network error page.
    pub error_page: bool,
}

impl PageLocation {
    /// Why this is not the page asked for (`asked`), if it is not: another
    /// site (scheme, host and port), or an error page. Paths may change: a
    /// class page routes within its own site.
    pub fn problem(&self, asked: &str) -> Option<String> {
        if self.error_page {
            return Some(format!("the browser shows an error page for {}", self.href));
        }
        let origin = |u: &str| url::Url::parse(u).ok().map(|u| u.origin());
        match (origin(asked), origin(&self.href)) {
            (Some(a), Some(now)) if a != now => Some(format!(
                "the page went to another site: {} (asked for {})",
                self.href, asked
            )),
            _ => None,
        }
    }
}

/// The live state of a running part, read by the monitor loop.
pub(super) struct Running {
    pub(super) procs: Vec<SlotProcess>,
    pub(super) encoder_stdin: Option<ChildStdin>,
    pub(super) capture_pid: Option<i32>,
    pub(super) page: Option<(
        mpsc::Receiver<PageStatus>,
        tokio::task::JoinHandle<thirtyfour::WebDriver>,
    )>,
    pub(super) progress: watch::Receiver<Frames>,
}

/// Frame counting shared between the progress reader and the monitor.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Frames {
    pub(super) frames: u64,
    /// Frames encoded per second over the last window (see `rate.rs`).
    pub(super) fps_milli: u32,
    /// Frames of that window that repeat the previous picture, per mille.
    pub(super) repeated_permille: u16,
    pub(super) media_ms: u64,
    pub(super) first_at: Option<u64>,
    pub(super) last_at: Option<u64>,
}

/// Frame times are anchored on the first frame's wall clock (`anchor`,
/// from the encoder's log; else "now minus the media time encoded so far",
/// which carries the encoder's delay of about a second); the last frame is
/// "first plus media time".
pub(super) fn count_frames(
    f: &mut Frames,
    frames: u64,
    rate: super::rate::Rate,
    media_ms: u64,
    anchor: Option<u64>,
) {
    if frames > f.frames {
        let first = *f
            .first_at
            .get_or_insert_with(|| anchor.unwrap_or_else(|| now_ms().saturating_sub(media_ms)));
        f.last_at = Some(first + media_ms);
    }
    f.frames = frames.max(f.frames);
    f.fps_milli = rate.fps_milli;
    f.repeated_permille = rate.repeated_permille;
    f.media_ms = media_ms;
}
