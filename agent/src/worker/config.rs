//! Settings of the recording engine.

use super::upload::UploadConfig;
use std::path::PathBuf;
use std::time::Duration;

/// The programs a slot runs. Defaults are Debian's paths; each may be
/// overridden (tests, other distributions).
#[derive(Debug, Clone)]
pub struct Binaries {
    /// Xvfb.
    pub xvfb: PathBuf,
    /// PulseAudio.
    pub pulseaudio: PathBuf,
    /// ChromeDriver.
    pub chromedriver: PathBuf,
    /// Chromium.
    pub chromium: PathBuf,
    /// ffmpeg.
    pub ffmpeg: PathBuf,
    /// More Chromium flags (the worker's `chromium_args`).
    pub chromium_args: Vec<String>,
}

impl Default for Binaries {
    fn default() -> Self {
        Binaries {
            xvfb: "Xvfb".into(),
            pulseaudio: "pulseaudio".into(),
            chromedriver: "chromedriver".into(),
            chromium: "/usr/bin/chromium".into(),
            ffmpeg: "ffmpeg".into(),
            chromium_args: Vec::new(),
        }
    }
}

impl Binaries {
    /// Names of programs that cannot be found, for a clear error at start-up
    /// rather than a failed recording later.
    pub fn missing(&self) -> Vec<String> {
        [
            &self.xvfb,
            &self.pulseaudio,
            &self.chromedriver,
            &self.chromium,
            &self.ffmpeg,
        ]
        .into_iter()
        .filter(|p| find_program(p).is_none())
        .map(|p| p.display().to_string())
        .collect()
    }
}

impl Binaries {
    /// The same programs with bare names resolved through `PATH`, so that
    /// an external capture command gets usable paths in its environment.
    pub fn resolved(&self) -> Binaries {
        let r = |p: &PathBuf| find_program(p).unwrap_or_else(|| p.clone());
        Binaries {
            xvfb: r(&self.xvfb),
            pulseaudio: r(&self.pulseaudio),
            chromedriver: r(&self.chromedriver),
            chromium: r(&self.chromium),
            ffmpeg: r(&self.ffmpeg),
            chromium_args: self.chromium_args.clone(),
        }
    }
}

fn find_program(p: &std::path::Path) -> Option<PathBuf> {
    if p.components().count() > 1 {
        return p.is_file().then(|| p.to_path_buf());
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(p))
            .find(|c| c.is_file())
    })
}

/// Time limits of a slot.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Bringing a part up (display, sink, browser, encoder, page).
    pub start: Duration,
    /// Loading the page.
    pub page_load: Duration,
    /// No progress (encoder frames, file growth, page answers) for this long
    /// counts as a crash.
    pub stall: Duration,
    /// How often the page is asked about itself.
    pub page_check: Duration,
    /// How long the page has to answer one check.
    pub page_answer: Duration,
    /// Between SIGTERM and SIGKILL when a part is taken down.
    pub grace: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            start: Duration::from_secs(30),
            page_load: Duration::from_secs(20),
            stall: Duration::from_secs(10),
            page_check: Duration::from_secs(1),
            page_answer: Duration::from_secs(3),
            grace: Duration::from_secs(5),
        }
    }
}

/// The engine's settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The upload buffer: chunks wait under
    /// `<out_root>/<spec.output_dir()>/segments/` until they are stored.
    pub out_root: PathBuf,
    /// Uploads of chunks to the recording's destination.
    pub upload: UploadConfig,
    /// Short-lived per-slot files (sockets, profiles, logs). Kept short: a
    /// unix socket path has at most 107 bytes.
    pub runtime_root: PathBuf,
    /// Programs.
    pub bins: Binaries,
    /// Time limits.
    pub timeouts: Timeouts,
    /// Restart intensity: at most this many restarts ...
    pub max_restarts: u32,
    /// ... within this period, then the slot gives up.
    pub restart_period: Duration,
    /// Keep each part's process logs (in the output directory) after it ends.
    pub keep_logs: bool,
    /// Which program runs the guard (`recfleet-agent guard`).
    pub guard_program: GuardProgram,
    /// The worker's name, for the logs of its slots.
    pub worker_name: String,
    /// Where pages may go until a coordinator says otherwise (a worker
    /// gets its coordinator's policy in the welcome).
    pub egress: recfleet_protocol::egress::UrlPolicy,
    /// Each slot's memory, CPU and process limits (control groups).
    pub slot_limits: super::cgroup::Limits,
    /// Ready slots kept warm (see `pool.rs`): display, sound, ChromeDriver
    /// and a blank Chromium session, started before a recording asks.
    pub ready_slots: usize,
}

/// Where the guard comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuardProgram {
    /// This executable is recfleet-agent: run `<self> guard`.
    CurrentExe,
    /// Run `<path> guard` (tests, whose executable is the test binary).
    Path(PathBuf),
    /// No guard: slots may outlive a killed process (unit tests only).
    None,
}

/// A slot's memory by default, MiB: a 1080p class page with its
/// encoder uses well under 1 GiB; this stops only a runaway.
pub const DEFAULT_SLOT_MEMORY_MIB: u64 = 2048;
/// A slot's processes and threads by default (Chromium runs a few hundred
/// threads).
pub const DEFAULT_SLOT_PIDS: u32 = 4096;

impl EngineConfig {
    /// Defaults with the given output directory.
    pub fn new(out_root: PathBuf) -> Self {
        EngineConfig {
            upload: UploadConfig {
                buffer_limit_bytes: 2 << 30,
                retry_window: Duration::from_secs(3600),
                default_destination: format!("file://{}", out_root.display()),
            },
            out_root,
            runtime_root: std::env::temp_dir().join(format!("recfleet-{}", std::process::id())),
            bins: Binaries::default(),
            timeouts: Timeouts::default(),
            max_restarts: 3,
            restart_period: Duration::from_secs(60),
            keep_logs: true,
            guard_program: GuardProgram::CurrentExe,
            worker_name: "local".into(),
            egress: recfleet_protocol::egress::UrlPolicy::default(),
            slot_limits: super::cgroup::Limits {
                memory_max: Some(DEFAULT_SLOT_MEMORY_MIB << 20),
                cpu_max_millicores: None,
                pids_max: Some(DEFAULT_SLOT_PIDS),
            },
            // A one-shot `record` has no use for one; the worker daemon's
            // setting keeps one by default.
            ready_slots: 0,
        }
    }
}
