//! Sorting workers and recordings by a column, named as in the table
//! header (`--sort-by`, and the TUI's sort keys). Columns sort by the value
//! behind the cell, not its text: SIZE by bytes, STARTED by time, STATE in
//! lifecycle order. Ages (UPTIME, AGE, SEEN) sort youngest first, as the
//! cells read; ties go by name or id.

use std::cmp::Ordering;

use recfleet_protocol::{RecordingInfo, WorkerInfo, WorkerState};

use crate::cells::{RECORDING_WIDE_COLUMNS, WORKER_WIDE_COLUMNS};

/// Every column workers can be sorted by (table and wide).
pub const WORKER_SORT_COLUMNS: &[&str] = &WORKER_WIDE_COLUMNS;

/// Every column recordings can be sorted by (table and wide).
pub const RECORDING_SORT_COLUMNS: &[&str] = &RECORDING_WIDE_COLUMNS;

/// The column of `valid` that `input` names (case-insensitive), or an
/// error that quotes it and lists the valid ones.
pub fn parse_column(input: &str, valid: &[&'static str]) -> Result<&'static str, String> {
    let wanted = input.trim().to_ascii_uppercase();
    valid.iter().copied().find(|c| *c == wanted).ok_or_else(|| {
        format!(
            "\"{input}\" is not a column: expected one of {}",
            valid.join(", ")
        )
    })
}

/// A worker state's place in the STATE order.
pub fn worker_state_rank(s: WorkerState) -> u8 {
    match s {
        WorkerState::Ready => 0,
        WorkerState::Draining => 1,
        WorkerState::Ineligible => 2,
        WorkerState::Lost => 3,
        WorkerState::Gone => 4,
    }
}

/// Compares two workers by `column` (an unknown column: by name).
pub fn compare_workers(column: &str, a: &WorkerInfo, b: &WorkerInfo) -> Ordering {
    let by = match column {
        "STATE" => worker_state_rank(a.state).cmp(&worker_state_rank(b.state)),
        "SLOTS" => (a.used, a.capacity).cmp(&(b.used, b.capacity)),
        "HEADROOM" => (a.admission.takes, a.admission.cpu_headroom_millicores)
            .cmp(&(b.admission.takes, b.admission.cpu_headroom_millicores)),
        "READY" => (a.ready.ready, a.ready.target).cmp(&(b.ready.ready, b.ready.target)),
        "CPU" => a.cpu_millicores.cmp(&b.cpu_millicores),
        "MEM" => a.rss_bytes.cmp(&b.rss_bytes),
        "RTT" => a.rtt_us.cmp(&b.rtt_us),
        "VERSION" => a.version.cmp(&b.version),
        // Youngest (latest connected) first.
        "UPTIME" => b.connected_at.cmp(&a.connected_at),
        "UPLOADS" => (a.upload_buffer_full, a.upload_buffer_bytes)
            .cmp(&(b.upload_buffer_full, b.upload_buffer_bytes)),
        "ADDRESS" => a.address.cmp(&b.address),
        "SEEN" => b.last_seen.cmp(&a.last_seen),
        "RECORDINGS" => a.recordings.len().cmp(&b.recordings.len()),
        "LABELS" => a.labels.iter().cmp(b.labels.iter()),
        _ => Ordering::Equal,
    };
    by.then_with(|| a.name.cmp(&b.name))
}

/// How long a recording has run at `now` (0 if it has not started).
fn duration(r: &RecordingInfo, now: u64) -> u64 {
    match r.started_at {
        Some(s) => r.ended_at.unwrap_or(now).saturating_sub(s),
        None => 0,
    }
}

/// Compares two recordings by `column` at `now` (an unknown column: by id).
pub fn compare_recordings(
    column: &str,
    a: &RecordingInfo,
    b: &RecordingInfo,
    now: u64,
) -> Ordering {
    let by = match column {
        "STATE" => a.state.cmp(&b.state),
        // Worst first when reversed: the states are ordered by severity.
        "HEALTH" => a.health.state.cmp(&b.health.state),
        "SOUND" => a.level_db.cmp(&b.level_db),
        "WORKER" => a.worker.cmp(&b.worker),
        "STARTED" => a.started_at.cmp(&b.started_at),
        "DURATION" => duration(a, now).cmp(&duration(b, now)),
        "SIZE" => a.bytes.cmp(&b.bytes),
        "FPS" => a.fps_milli.cmp(&b.fps_milli),
        "RESTARTS" => a.restarts.cmp(&b.restarts),
        "SEGS" => a.segments.cmp(&b.segments),
        "LAG" => a.upload_lag_ms.cmp(&b.upload_lag_ms),
        "EPOCH" => a.epoch.cmp(&b.epoch),
        // Youngest (latest requested) first.
        "AGE" => b.created_at.cmp(&a.created_at),
        "ENDED" => a.ended_at.cmp(&b.ended_at),
        "URL" => a.url.cmp(&b.url),
        "REASON" => a.reason.cmp(&b.reason),
        _ => Ordering::Equal,
    };
    by.then_with(|| a.id.cmp(&b.id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use recfleet_protocol::{RecordingId, RecordingState};

    fn rec(id: &str, bytes: u64, created_at: u64) -> RecordingInfo {
        RecordingInfo {
            id: RecordingId::new(id).unwrap(),
            state: RecordingState::Recording,
            url: format!("https://x/{id}"),
            worker: None,
            epoch: Default::default(),
            created_at,
            started_at: None,
            ended_at: None,
            bytes,
            fps_milli: 0,
            repeated_permille: 0,
            restarts: 0,
            segments: 0,
            reason: None,
            upload_lag_ms: 0,
            health: Default::default(),
            level_db: None,
            copy: None,
        }
    }

    #[test]
    fn columns_parse_case_insensitively_and_errors_list_them() {
        assert_eq!(parse_column("size", RECORDING_SORT_COLUMNS), Ok("SIZE"));
        assert_eq!(parse_column("Uptime", WORKER_SORT_COLUMNS), Ok("UPTIME"));
        let err = parse_column("colour", WORKER_SORT_COLUMNS).unwrap_err();
        assert!(
            err.starts_with("\"colour\" is not a column: expected one of NAME, STATE, SLOTS"),
            "{err}"
        );
    }

    #[test]
    fn size_sorts_by_bytes_and_age_youngest_first() {
        let mut rs = [rec("a", 2048, 10), rec("b", 900, 30), rec("c", 1 << 30, 20)];
        rs.sort_by(|x, y| compare_recordings("SIZE", x, y, 100));
        let ids: Vec<&str> = rs.iter().map(|r| r.id.as_str()).collect();
        // Not "1.0 GiB" < "2.0 KiB" < "900 B" as text would.
        assert_eq!(ids, ["b", "a", "c"]);
        rs.sort_by(|x, y| compare_recordings("AGE", x, y, 100));
        let ids: Vec<&str> = rs.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["b", "c", "a"]);
    }
}
