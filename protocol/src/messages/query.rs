//! Questions about one recording that only its worker can answer: its
//! latest picture, its processes' logs, the processes themselves. A console
//! opens a stream with [`super::OpenStream::Query`]; the coordinator opens
//! one to the recording's worker with the same [`WorkerQuery`] as its first
//! frame and relays the worker's [`QueryFrame`]s until either side ends.
//! Bulk data never rides the worker's control stream.

use serde::{Deserialize, Serialize};

use super::UnixMillis;
use crate::health::Health;
use crate::{RecordingId, WireError};

/// The processes whose logs can be asked for.
pub const LOG_PROCESSES: [&str; 7] = [
    "chromium",
    "chromedriver",
    "ffmpeg",
    "page",
    "pulseaudio",
    "worker",
    "xvfb",
];

/// What to ask a recording's worker.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WorkerQuery {
    /// The latest picture (a small JPEG) and sound level.
    Thumbnail {
        /// The recording.
        recording: RecordingId,
    },
    /// Log lines of its processes.
    Logs(LogRequest),
    /// Its processes with pid, CPU and memory.
    Processes {
        /// The recording.
        recording: RecordingId,
    },
}

impl WorkerQuery {
    /// The recording asked about.
    pub fn recording(&self) -> &RecordingId {
        match self {
            WorkerQuery::Thumbnail { recording } | WorkerQuery::Processes { recording } => {
                recording
            }
            WorkerQuery::Logs(r) => &r.recording,
        }
    }
}

/// `recfleet logs`.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogRequest {
    /// The recording.
    pub recording: RecordingId,
    /// One of [`LOG_PROCESSES`] (`chromium` is ChromeDriver's log, which
    /// carries the browser's); None: every process.
    pub process: Option<String>,
    /// Keep the stream open and send lines as they are written.
    pub follow: bool,
    /// Only lines written at or after this wall clock (lines without a time
    /// of their own count from their part's start).
    pub since: Option<UnixMillis>,
    /// Only the last N lines of what is there (then follow).
    pub tail: Option<u32>,
}

/// Frames answering a [`WorkerQuery`], worker -> coordinator -> console.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum QueryFrame {
    /// The answer to `Thumbnail`.
    Thumbnail(Thumbnail),
    /// Some log lines (many per frame, at most [`LOG_LINES_PER_FRAME`]).
    Logs(Vec<LogLine>),
    /// The answer to `Processes`.
    Processes(Vec<ProcessInfo>),
    /// The question could not be answered; the stream ends.
    Error(WireError),
    /// Some events of a recording's track, oldest first (at most
    /// [`EVENTS_PER_FRAME`] per frame).
    Events(Vec<crate::events::TrackEvent>),
    /// A followed log ends: the recording left this worker, or the worker
    /// stops.
    End {
        /// Why.
        reason: String,
    },
}

/// The most log lines in one frame (a frame of long lines stays far below
/// the frame limit: lines are cut at [`LOG_LINE_MAX`] bytes).
pub const LOG_LINES_PER_FRAME: usize = 200;
/// Longest log line sent, bytes; longer ones are cut.
pub const LOG_LINE_MAX: usize = 4096;

/// A recording's latest picture.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Thumbnail {
    /// The recording.
    pub recording: RecordingId,
    /// Wall clock of the file's writing.
    pub taken_at: UnixMillis,
    /// The picture, JPEG (320 pixels wide).
    pub jpeg: Vec<u8>,
    /// Sound level of the last half second, dBFS.
    pub level_db: Option<i16>,
    /// Its health.
    pub health: Health,
}

/// One line of a process's log.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// The process (`ffmpeg`, `page`, ...).
    pub process: String,
    /// The slot's part it belongs to.
    pub part: u32,
    /// When it was written, if known (the line's own time, or when a
    /// followed line was read).
    pub at: Option<UnixMillis>,
    /// The text, without its newline.
    pub text: String,
}

/// One process of a recording's slot.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessInfo {
    /// Its role (`xvfb`, `pulseaudio`, `chromedriver`, `chromium`, `ffmpeg`, ...).
    pub name: String,
    /// Its pid on the worker.
    pub pid: i32,
    /// The command name the kernel shows.
    pub comm: String,
    /// CPU since the last sample, thousandths of a core.
    pub cpu_millicores: u32,
    /// Resident memory, bytes.
    pub rss_bytes: u64,
}

/// `recfleet record events`: a recording's event track so far.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventsRequest {
    /// The recording.
    pub recording: RecordingId,
    /// Only these types (empty: all).
    pub types: Vec<String>,
    /// Only the last N events.
    pub tail: Option<u32>,
}

/// The most events in one frame of an answer.
pub const EVENTS_PER_FRAME: usize = 200;
