//! The command line. Every value is parsed here, with errors that quote the
//! bad value and say what is expected; commands receive typed values.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use recfleet_protocol::{DrainMode, RecordingId, RecordingState, Viewport, WorkerName, LIST_MAX};

use crate::context::Overrides;

/// recfleet: watch and run the recorder fleet.
///
/// With no command, opens the TUI (press ? for keys). The commands below do
/// the same actions for scripts; each has `--output json`.
#[derive(Debug, Parser)]
#[command(name = "recfleet", version)]
#[command(
    after_help = "Exit codes: 0 ok, 1 other error, 2 invalid input, 3 not found, \
4 refused/forbidden, 5 conflict, 6 no capacity, 7 connection failure, \
8 recording failed (--wait), 9 aborted, 64 bad context.\nDocs: docs/console.md"
)]
pub struct Cli {
    /// Connection settings.
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Output format of commands.
    #[arg(long, short = 'o', global = true, help_heading = "Options", value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// TUI: hide every action (watch only).
    #[arg(long, help_heading = "Options")]
    pub readonly: bool,
    /// What to do; the TUI when absent.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Where the coordinator is and which certificate to show it.
#[derive(Debug, Clone, Args, Default)]
#[command(next_help_heading = "Connection (flags > RECFLEET_* variables > context file)")]
pub struct ConnArgs {
    /// Context file [default: $XDG_CONFIG_HOME/recfleet/context.toml].
    #[arg(
        long,
        global = true,
        hide_env_values = true,
        env = "RECFLEET_CONTEXT",
        value_name = "FILE"
    )]
    pub context: Option<PathBuf>,
    /// Which context of the file, for this command [default: the current
    /// one, see `recfleet context use`].
    #[arg(
        long,
        global = true,
        hide_env_values = true,
        env = "RECFLEET_CONTEXT_NAME",
        value_name = "NAME"
    )]
    pub context_name: Option<String>,
    /// Coordinator address.
    #[arg(
        long,
        global = true,
        hide_env_values = true,
        env = "RECFLEET_COORDINATOR",
        value_name = "HOST:PORT"
    )]
    pub coordinator: Option<String>,
    /// Fleet CA certificate (PEM).
    #[arg(
        long,
        global = true,
        hide_env_values = true,
        env = "RECFLEET_CA",
        value_name = "FILE"
    )]
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM).
    #[arg(
        long,
        global = true,
        hide_env_values = true,
        env = "RECFLEET_CERT",
        value_name = "FILE"
    )]
    pub cert: Option<PathBuf>,
    /// Client private key (PEM).
    #[arg(
        long,
        global = true,
        hide_env_values = true,
        env = "RECFLEET_KEY",
        value_name = "FILE"
    )]
    pub key: Option<PathBuf>,
    /// Name to check in the coordinator certificate [default: localhost].
    #[arg(
        long,
        global = true,
        hide_env_values = true,
        env = "RECFLEET_SERVER_NAME",
        value_name = "NAME"
    )]
    pub server_name: Option<String>,
}

impl ConnArgs {
    /// As context overrides.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            context: self.context.clone(),
            context_name: self.context_name.clone(),
            coordinator: self.coordinator.clone(),
            server_name: self.server_name.clone(),
            ca: self.ca.clone(),
            cert: self.cert.clone(),
            key: self.key.clone(),
        }
    }
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Aligned columns for people.
    Table,
    /// The table with more columns (workers, recordings).
    Wide,
    /// Stable JSON for programs (JSON lines for `watch`).
    Json,
    /// The JSON output's structure as YAML (`---` before each document).
    Yaml,
}

impl Output {
    /// Whether this is a format for programs (JSON or YAML) rather than
    /// text for people.
    pub fn structured(self) -> bool {
        matches!(self, Output::Json | Output::Yaml)
    }
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start, stop or show a recording.
    #[command(subcommand)]
    Record(RecordCommand),
    /// Drain a worker: it takes no new recordings; its recordings end or move.
    Drain(DrainArgs),
    /// Return a drained worker to service.
    Undrain {
        /// The worker.
        #[arg(value_parser = parse_worker)]
        worker: WorkerName,
        /// End the drain but keep the worker out of placement.
        #[arg(long)]
        keep_ineligible: bool,
    },
    /// Move a recording to another worker, make-before-break.
    Reassign {
        /// The recording.
        #[arg(value_parser = parse_recording)]
        id: RecordingId,
        /// Target worker [default: the scheduler picks].
        #[arg(long, value_parser = parse_worker)]
        to: Option<WorkerName>,
    },
    /// List workers (by name, or --sort-by).
    Workers {
        /// Sort by this column of the table or of `-o wide` (e.g. cpu, mem,
        /// uptime; case-insensitive).
        #[arg(long, value_parser = parse_worker_column, value_name = "COLUMN")]
        sort_by: Option<&'static str>,
    },
    /// List the coordinators: which leads, its term and lease, and when
    /// each was last heard of.
    Coordinators,
    /// List recordings.
    ///
    /// Oldest first (or --sort-by): every page, printed together, or one
    /// page with --limit and the command that prints the next. Recordings
    /// that finished longer than --finished-within ago (1h) are hidden
    /// unless --all.
    Recordings {
        /// Only these states (repeatable).
        #[arg(long = "state", value_parser = parse_state, value_name = "STATE")]
        states: Vec<RecordingState>,
        /// One page of at most N recordings (1 to 1000), with the token of the
        /// next page [default: every page, all printed together].
        #[arg(long, value_parser = parse_limit, value_name = "N", allow_negative_numbers = true)]
        limit: Option<u32>,
        /// Start after the page that printed this token.
        #[arg(long = "continue", value_name = "TOKEN")]
        after: Option<String>,
        /// Sort by this column of the table or of `-o wide` (e.g. size, age,
        /// state; case-insensitive) [default: oldest first].
        #[arg(long, value_parser = parse_recording_column, value_name = "COLUMN")]
        sort_by: Option<&'static str>,
        /// Show finished recordings (completed, failed, cancelled) that
        /// ended this long ago at most.
        #[arg(long, value_parser = parse_duration, value_name = "DURATION", default_value = "1h", conflicts_with = "all")]
        finished_within: Duration,
        /// Show every recording, however long ago it finished.
        #[arg(long, short = 'A')]
        all: bool,
    },
    /// Print events as they happen, one line each (JSON lines with -o json).
    Watch(WatchArgs),
    /// Log lines of a recording's processes, from its worker (the page's
    /// console messages are `--process page`).
    Logs(LogsArgs),
    /// The audit trail: every action and every refused request, who and
    /// when (operator certificates only).
    Audit {
        /// The latest N entries.
        #[arg(long, default_value_t = 50, value_parser = parse_limit, value_name = "N")]
        limit: u32,
    },
    /// Everything about one object: its state, health, processes and its
    /// own event history.
    Describe {
        /// What to describe.
        #[command(subcommand)]
        what: DescribeWhat,
    },
    /// Who the coordinator sees: role and name of this certificate.
    Whoami,
    /// List, show or pick the contexts of the context file.
    #[command(subcommand)]
    Context(ContextCommand),
    /// Print a shell completion script (e.g. `recfleet completion bash >
    /// /etc/bash_completion.d/recfleet`).
    Completion {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), e.g. `recfleet man | man -l -`.
    Man,
}

/// `context ...`: the named contexts of the context file (no connection).
#[derive(Debug, Subcommand)]
pub enum ContextCommand {
    /// List the contexts: name, coordinator, server name, which is current.
    #[command(visible_alias = "ls")]
    List,
    /// Make NAME the current context (writes the file).
    Use {
        /// A context of the file.
        name: String,
    },
    /// Print the name of the current context.
    Current,
}

/// `watch ...`: which events to print (all by default).
#[derive(Debug, Clone, Args, Default)]
pub struct WatchArgs {
    /// Only events about these recordings (repeatable, or a comma list).
    #[arg(long = "recording", value_name = "ID", value_delimiter = ',', value_parser = parse_recording)]
    pub recordings: Vec<RecordingId>,
    /// Only events about these workers (repeatable, or a comma list).
    #[arg(long = "worker", value_name = "NAME", value_delimiter = ',', value_parser = parse_worker)]
    pub workers: Vec<WorkerName>,
    /// Only events of these types, as in the JSON `type` (repeatable, or a
    /// comma list): worker_up, worker_changed, worker_left, worker_lost,
    /// recording_changed, drain_progress, notice.
    #[arg(long = "type", value_name = "TYPE", value_delimiter = ',', value_parser = crate::event_filter::parse_type)]
    pub types: Vec<String>,
}

impl WatchArgs {
    /// As an event filter.
    pub fn filter(&self) -> crate::event_filter::EventFilter {
        crate::event_filter::EventFilter {
            recordings: self.recordings.clone(),
            workers: self.workers.clone(),
            types: self.types.clone(),
        }
    }
}

/// `record ...`
#[derive(Debug, Subcommand)]
pub enum RecordCommand {
    /// Start a recording (idempotent by --id).
    Start(StartArgs),
    /// Stop a recording.
    Stop {
        /// The recording.
        #[arg(value_parser = parse_recording)]
        id: RecordingId,
    },
    /// Show a recording: its state, spec and manifest.
    Show {
        /// The recording.
        #[arg(value_parser = parse_recording)]
        id: RecordingId,
    },
    /// Save a running recording's latest picture (a JPEG, 320 pixels wide,
    /// at most 2 s old).
    Thumbnail {
        /// The recording.
        #[arg(value_parser = parse_recording)]
        id: RecordingId,
        /// The file to write (`-` for stdout).
        #[arg(
            long = "file",
            short = 'f',
            value_name = "FILE.jpg",
            default_value = "thumbnail.jpg"
        )]
        file: PathBuf,
    },
    /// A recording's event track so far: slides, strokes, what the page
    /// emitted, the browser's facts, with each event's time in the video.
    Events {
        /// The recording.
        #[arg(value_parser = parse_recording)]
        id: RecordingId,
        /// Only events of this type (repeatable), e.g. `slide`.
        #[arg(long = "type", short = 't', value_name = "TYPE")]
        types: Vec<String>,
        /// Only the last N.
        #[arg(long, value_name = "N")]
        tail: Option<u32>,
    },
}

/// `record start ...`
#[derive(Debug, Args)]
pub struct StartArgs {
    /// The class page (http or https).
    pub url: String,
    /// Recording id, the idempotency key [default: generated].
    #[arg(long, value_parser = parse_recording)]
    pub id: Option<RecordingId>,
    /// Stop after this long (e.g. 90m, 1h30m).
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub max_duration: Option<Duration>,
    /// Placement label a worker must carry (repeatable).
    #[arg(long = "label", value_parser = parse_label, value_name = "KEY=VALUE")]
    pub labels: Vec<(String, String)>,
    /// Frames per second, 1 to 60.
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u8).range(1..=60))]
    pub fps: u8,
    /// Window and picture size.
    #[arg(long, default_value = "1280x720", value_parser = parse_size, value_name = "WxH")]
    pub size: Viewport,
    /// Do not capture sound.
    #[arg(long)]
    pub no_audio: bool,
    /// Copies recorded at once: 2 records on two workers (on two hosts
    /// when there are), so that a worker's death costs no moment of the
    /// recording; it takes twice the capacity.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=2))]
    pub redundancy: u8,
    /// Where the recording goes: file:///DIR or s3://BUCKET/PREFIX
    /// [default: the coordinator's --output]. (Not `--output`: that is the
    /// console's output format, `-o json`.)
    #[arg(long, visible_alias = "to", value_name = "URL")]
    pub destination: Option<String>,
    /// Wait until the recording ends; print its final state and manifest.
    #[arg(long)]
    pub wait: bool,
    /// Stop once the room is empty (no live remote WebRTC media) for this
    /// long (e.g. 5m).
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub empty_room_after: Option<Duration>,
    /// Record this element's text each time it changes (a CSS selector,
    /// repeatable, at most 8), e.g. `--watch-text '#slide-number'`.
    #[arg(
        long = "watch-text",
        value_name = "SELECTOR",
        help_heading = "Event track"
    )]
    pub watch_text: Vec<String>,
    /// Make chapters.vtt from the events of this type, e.g. `slide`.
    #[arg(long, value_name = "TYPE", help_heading = "Event track")]
    pub chapters: Option<String>,
    /// Silent after this long below -50 dBFS
    /// [default: the coordinator's, 10s].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION", help_heading = "Media health")]
    pub silent_after: Option<Duration>,
    /// Frozen after this long without a changed picture [default: the
    /// coordinator's, 10s].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION", help_heading = "Media health")]
    pub frozen_after: Option<Duration>,
    /// Black after this long of black picture [default: the coordinator's, 5s].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION", help_heading = "Media health")]
    pub black_after: Option<Duration>,
    /// Restart the slot after this long frozen, or `never` [default: the
    /// coordinator's, 30s].
    #[arg(long, value_parser = parse_restart_after, value_name = "DURATION|never", help_heading = "Media health")]
    pub restart_frozen_after: Option<u32>,
    /// Restart the slot after this long black, or `never` [default: the
    /// coordinator's, never].
    #[arg(long, value_parser = parse_restart_after, value_name = "DURATION|never", help_heading = "Media health")]
    pub restart_black_after: Option<u32>,
    /// Do not restart the slot when the page crashes (record the crashed
    /// page and report it).
    #[arg(long, help_heading = "Media health")]
    pub no_restart_on_crash: bool,
}

/// Parses `never` (0: the wire's "never") or a duration in whole seconds.
pub fn parse_restart_after(s: &str) -> Result<u32, String> {
    if s.trim().eq_ignore_ascii_case("never") {
        return Ok(0);
    }
    parse_duration(s).map(duration_secs)
}

/// `logs ...`
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The recording.
    #[arg(value_parser = parse_recording)]
    pub id: RecordingId,
    /// Only this process's log.
    #[arg(long, short = 'p', value_parser = parse_process, value_name = "PROCESS")]
    pub process: Option<String>,
    /// Keep printing lines as they are written, until the recording leaves
    /// its worker (or Ctrl-C).
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Only lines written in this last while (e.g. 10m).
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub since: Option<Duration>,
    /// Only the last N lines of what is there.
    #[arg(long, value_name = "N")]
    pub tail: Option<u32>,
}

/// `describe ...`
#[derive(Debug, Subcommand)]
pub enum DescribeWhat {
    /// A recording: state, health, placement, processes, events.
    Recording {
        /// The recording.
        #[arg(value_parser = parse_recording)]
        id: RecordingId,
    },
    /// A worker: state, load, its recordings, events.
    Worker {
        /// The worker.
        #[arg(value_parser = parse_worker)]
        name: WorkerName,
    },
}

/// Parses a process name for `logs --process`.
pub fn parse_process(s: &str) -> Result<String, String> {
    let p = s.trim().to_ascii_lowercase();
    let known = recfleet_protocol::LOG_PROCESSES;
    if known.contains(&p.as_str()) {
        Ok(p)
    } else {
        Err(format!(
            "\"{s}\" is not a process: expected one of {}",
            known.join(", ")
        ))
    }
}

/// `drain ...`
#[derive(Debug, Args)]
pub struct DrainArgs {
    /// The worker.
    #[arg(value_parser = parse_worker)]
    pub worker: WorkerName,
    /// Wait for its recordings to end, or migrate them now.
    #[arg(long, value_enum, default_value_t = ModeArg::Wait)]
    pub mode: ModeArg,
    /// After this long, what remains is migrated (e.g. 10m).
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub deadline: Option<Duration>,
    /// Migrate now, whatever the mode.
    #[arg(long)]
    pub force: bool,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Return once the drain is accepted; do not follow its progress.
    #[arg(long)]
    pub detach: bool,
}

/// `--mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    /// Let recordings end on their own.
    Wait,
    /// Move recordings to other workers.
    Migrate,
}

impl From<ModeArg> for DrainMode {
    fn from(m: ModeArg) -> Self {
        match m {
            ModeArg::Wait => DrainMode::Wait,
            ModeArg::Migrate => DrainMode::Migrate,
        }
    }
}

/// Parses a `workers --sort-by` column.
pub fn parse_worker_column(s: &str) -> Result<&'static str, String> {
    crate::sort::parse_column(s, crate::sort::WORKER_SORT_COLUMNS)
}

/// Parses a `recordings --sort-by` column.
pub fn parse_recording_column(s: &str) -> Result<&'static str, String> {
    crate::sort::parse_column(s, crate::sort::RECORDING_SORT_COLUMNS)
}

/// Parses a worker name.
pub fn parse_worker(s: &str) -> Result<WorkerName, String> {
    WorkerName::new(s).map_err(|e| e.to_string())
}

/// A recording id for when none is given (`record start` without `--id`,
/// the TUI's start dialog): `rec-<unix ms>-<4 hex>`.
pub fn generated_id() -> String {
    format!(
        "rec-{}-{:04x}",
        recfleet_protocol::now_ms(),
        fastrand::u16(..)
    )
}

/// Parses a recording id.
pub fn parse_recording(s: &str) -> Result<RecordingId, String> {
    RecordingId::new(s).map_err(|e| e.to_string())
}

/// Parses a duration such as `90s`, `10m` or `1h30m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s)
        .map_err(|e| format!("\"{s}\" is not a duration ({e}): expected e.g. 90s, 10m, 1h30m"))?;
    if d.is_zero() {
        return Err(format!("\"{s}\" is zero: expected a positive duration"));
    }
    Ok(d)
}

/// Seconds of a duration, for the wire (rounded up, at most `u32::MAX`).
pub fn duration_secs(d: Duration) -> u32 {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    u32::try_from(secs).unwrap_or(u32::MAX)
}

/// Parses `KEY=VALUE`.
pub fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!(
            "\"{s}\" is not a label: expected KEY=VALUE such as region=eu"
        )),
    }
}

/// Parses a page size for `recordings --limit`: 1 to [`LIST_MAX`].
pub fn parse_limit(s: &str) -> Result<u32, String> {
    match s.trim().parse::<u32>() {
        Ok(n) if (1..=LIST_MAX).contains(&n) => Ok(n),
        _ => Err(format!(
            "\"{s}\" is not a page size: expected a number from 1 to {LIST_MAX}"
        )),
    }
}

/// Parses `WIDTHxHEIGHT`.
pub fn parse_size(s: &str) -> Result<Viewport, String> {
    s.parse::<Viewport>()
}

/// Parses a recording state name.
pub fn parse_state(s: &str) -> Result<RecordingState, String> {
    RecordingState::ALL
        .into_iter()
        .find(|st| st.as_str() == s.to_ascii_lowercase())
        .ok_or_else(|| {
            let all: Vec<&str> = RecordingState::ALL.iter().map(|s| s.as_str()).collect();
            format!("\"{s}\" is not a state: expected one of {}", all.join(", "))
        })
}
