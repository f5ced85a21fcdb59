//! The cells of a worker row and of a recording row, with their column
//! titles: one row per item in the tables of `recfleet workers` and
//! `recfleet recordings` and in the TUI's views.

use recfleet_protocol::{RecordingInfo, WorkerInfo};

use crate::format;

/// The cells of a worker row.
pub fn worker_cells(w: &WorkerInfo, now: u64) -> Vec<String> {
    vec![
        w.name.to_string(),
        w.state.as_str().to_string(),
        format!("{}/{}", w.used, w.capacity),
        headroom(w),
        ready(w),
        format::cores(w.cpu_millicores),
        format::bytes(w.rss_bytes),
        format::rtt(w.rtt_us),
        w.version.clone(),
        format::age(now, w.connected_at),
        upload_buffer(w),
        format::labels(&w.labels),
    ]
}

/// Chunks waiting on a worker's disk: `-` when none, `FULL` past its limit.
fn upload_buffer(w: &WorkerInfo) -> String {
    match (w.upload_buffer_full, w.upload_buffer_bytes) {
        (true, n) => format!("FULL {}", format::bytes(n)),
        (false, 0) => "-".to_string(),
        (false, n) => format::bytes(n),
    }
}

/// What admission makes of the worker's measured load: the recordings it
/// takes now and the CPU left below the target (`+2 1.35`); `+2` alone when
/// it does not measure (slots only); `+0!` when it takes none for a reason
/// other than its slots (CPU, memory, repeated frames: see `describe`).
fn headroom(w: &WorkerInfo) -> String {
    let a = &w.admission;
    let mark = if a.takes == 0 && !a.limit.is_empty() {
        "!"
    } else {
        ""
    };
    if a.measured {
        format!(
            "+{}{mark} {}",
            a.takes,
            format::cores(a.cpu_headroom_millicores)
        )
    } else {
        format!("+{}{mark}", a.takes)
    }
}

/// Ready slots of the warm pool, of those it keeps (`-`: no pool).
fn ready(w: &WorkerInfo) -> String {
    match w.ready.target {
        0 => "-".to_string(),
        t => format!("{}/{t}", w.ready.ready),
    }
}

/// The column titles of the workers view.
pub const WORKER_COLUMNS: [&str; 12] = [
    "NAME", "STATE", "SLOTS", "HEADROOM", "READY", "CPU", "MEM", "RTT", "VERSION", "UPTIME",
    "UPLOADS", "LABELS",
];

/// The column titles of `recfleet workers -o wide`: the table's, with the
/// address, when it was last heard of and its recordings before the labels.
pub const WORKER_WIDE_COLUMNS: [&str; 15] = [
    "NAME",
    "STATE",
    "SLOTS",
    "HEADROOM",
    "READY",
    "CPU",
    "MEM",
    "RTT",
    "VERSION",
    "UPTIME",
    "UPLOADS",
    "ADDRESS",
    "SEEN",
    "RECORDINGS",
    "LABELS",
];

/// The cells of a worker row of `-o wide`.
pub fn worker_wide_cells(w: &WorkerInfo, now: u64) -> Vec<String> {
    let mut cells = worker_cells(w, now);
    let labels = cells.pop().unwrap_or_default();
    cells.push(w.address.clone());
    cells.push(format!("{} ago", format::age(now, w.last_seen)));
    cells.push(if w.recordings.is_empty() {
        "-".to_string()
    } else {
        w.recordings
            .iter()
            .map(|r| r.as_str())
            .collect::<Vec<_>>()
            .join(",")
    });
    cells.push(labels);
    cells
}

/// Columns of `recfleet coordinators`.
pub const COORDINATOR_COLUMNS: [&str; 6] = ["NAME", "ADDRESS", "ROLE", "TERM", "LEASE", "SEEN"];

/// The cells of a coordinator row: the lease's remaining time for the
/// leader, how long ago each was heard of.
pub fn coordinator_cells(c: &recfleet_protocol::CoordinatorInfo) -> Vec<String> {
    let ms = |v: u64| format!("{:.1}s", v as f64 / 1000.0);
    vec![
        c.name.clone(),
        if c.address.is_empty() {
            "-".into()
        } else {
            c.address.clone()
        },
        c.role.clone(),
        c.term.to_string(),
        c.lease_expires_in_ms
            .map_or("-".into(), |e| format!("{} left", ms(e.max(0) as u64))),
        format!("{} ago", ms(c.seen_ms_ago)),
    ]
}

/// The cells of a recording row.
pub fn recording_cells(r: &RecordingInfo, now: u64) -> Vec<String> {
    let duration = match (r.started_at, r.ended_at) {
        (Some(s), Some(e)) => format::age(e, s),
        (Some(s), None) => format::age(now, s),
        _ => "-".to_string(),
    };
    vec![
        r.id.to_string(),
        r.state.as_str().to_string(),
        health_cell(r),
        worker_cell(r),
        r.started_at.map_or("-".to_string(), format::clock),
        duration,
        format::bytes(r.bytes),
        format::fps_repeated(r.fps_milli, r.repeated_permille),
        r.restarts.to_string(),
        r.segments.to_string(),
        // How far the store is behind; `-` when it keeps up (under 5 s:
        // a chunk closes every 2 s).
        match r.upload_lag_ms {
            0..5_000 => "-".to_string(),
            ms => format::span(ms),
        },
    ]
}

/// A recording's media health for a table: `-` when not measured.
pub fn health_cell(r: &RecordingInfo) -> String {
    match r.health.state {
        recfleet_protocol::HealthState::Unknown => "-".to_string(),
        s => s.as_str().to_string(),
    }
}

/// The column titles of the recordings view.
pub const RECORDING_COLUMNS: [&str; 11] = [
    "ID", "STATE", "HEALTH", "WORKER", "STARTED", "DURATION", "SIZE", "FPS", "RESTARTS", "SEGS",
    "LAG",
];

/// The column titles of `recfleet recordings -o wide`: the table's, then
/// the placement's epoch, the age (since it was requested), when it ended,
/// the page and why it failed.
pub const RECORDING_WIDE_COLUMNS: [&str; 17] = [
    "ID", "STATE", "HEALTH", "WORKER", "STARTED", "DURATION", "SIZE", "FPS", "RESTARTS", "SEGS",
    "LAG", "SOUND", "EPOCH", "AGE", "ENDED", "URL", "REASON",
];

/// The cells of a recording row of `-o wide`.
pub fn recording_wide_cells(r: &RecordingInfo, now: u64) -> Vec<String> {
    let mut cells = recording_cells(r, now);
    cells.push(r.level_db.map_or("-".to_string(), |db| format!("{db} dB")));
    cells.push(r.epoch.to_string());
    cells.push(format::age(now, r.created_at));
    cells.push(r.ended_at.map_or("-".to_string(), format::clock));
    cells.push(r.url.clone());
    cells.push(r.reason.clone().unwrap_or_else(|| "-".to_string()));
    cells
}

/// Where a recording runs: its worker, and its second copy's after a `+`
/// (in brackets while that copy starts).
pub fn worker_cell(r: &RecordingInfo) -> String {
    let first = r.worker.as_ref().map_or("-".to_string(), |w| w.to_string());
    match &r.copy {
        Some(c) if c.capturing => format!("{first}+{}", c.worker),
        Some(c) => format!("{first}+({})", c.worker),
        None => first,
    }
}
