//! Events and effects in words, shared by `recfleet watch`, drain progress
//! and the TUI's event log.

use recfleet_protocol::{DrainMode, Event, EventKind, RecordingInfo, WorkerInfo};

use crate::format;

/// Every event kind's name, as [`kind_name`] gives it.
pub const KIND_NAMES: [&str; 8] = [
    "worker_up",
    "worker_changed",
    "worker_left",
    "worker_lost",
    "recording_changed",
    "drain_progress",
    "notice",
    "health_changed",
];

/// The snake_case name of an event kind (as in JSON output).
pub fn kind_name(kind: &EventKind) -> &'static str {
    match kind {
        EventKind::WorkerUp(_) => "worker_up",
        EventKind::WorkerChanged(_) => "worker_changed",
        EventKind::WorkerLeft { .. } => "worker_left",
        EventKind::WorkerLost { .. } => "worker_lost",
        EventKind::RecordingChanged(_) => "recording_changed",
        EventKind::DrainProgress { .. } => "drain_progress",
        EventKind::Notice { .. } => "notice",
        EventKind::HealthChanged { .. } => "health_changed",
    }
}

fn worker_summary(w: &WorkerInfo) -> String {
    format!(
        "worker {} {} ({}/{} used, {})",
        w.name,
        w.state.as_str(),
        w.used,
        w.capacity,
        w.address
    )
}

fn recording_summary(r: &RecordingInfo) -> String {
    let mut s = format!("recording {} {}", r.id, r.state);
    if let Some(w) = &r.worker {
        s.push_str(&format!(" on {w} (epoch {})", r.epoch));
    }
    if let Some(reason) = &r.reason {
        s.push_str(&format!(": {reason}"));
    }
    s
}

/// What happened, in one line without the time.
pub fn event_text(kind: &EventKind) -> String {
    match kind {
        EventKind::WorkerUp(w) => format!("{} connected", worker_summary(w)),
        EventKind::WorkerChanged(w) => worker_summary(w),
        EventKind::WorkerLeft { name } => format!("worker {name} left"),
        EventKind::WorkerLost { name } => {
            format!("worker {name} lost: its recordings are placed again")
        }
        EventKind::RecordingChanged(r) => recording_summary(r),
        EventKind::DrainProgress {
            worker,
            remaining,
            message,
            complete,
        } => {
            let left = if *complete {
                "complete".to_string()
            } else if remaining.is_empty() {
                "nothing left".to_string()
            } else {
                let ids: Vec<&str> = remaining.iter().map(|r| r.as_str()).collect();
                format!("{} remaining ({})", remaining.len(), ids.join(", "))
            };
            format!("drain {worker}: {left}: {message}")
        }
        EventKind::Notice {
            recording,
            worker,
            message,
        } => {
            let mut about = Vec::new();
            if let Some(w) = worker {
                about.push(format!("worker {w}"));
            }
            if let Some(r) = recording {
                about.push(format!("recording {r}"));
            }
            if about.is_empty() {
                format!("notice: {message}")
            } else {
                format!("notice ({}): {message}", about.join(", "))
            }
        }
        EventKind::HealthChanged {
            recording,
            worker,
            health,
        } => {
            let mut s = format!("recording {recording} on {worker} is {}", health.state);
            if !health.detail.is_empty() {
                s.push_str(&format!(": {}", health.detail));
            }
            s
        }
    }
}

/// `14:03:27 #42 recording_changed  recording r1 recording on w1 (epoch 1)`
pub fn event_line(e: &Event) -> String {
    format!(
        "{} #{} {:<17} {}{}",
        format::clock(e.at),
        e.seq,
        kind_name(&e.kind),
        event_text(&e.kind),
        by(e)
    )
}

/// ` (by operator/alice)` for an event a person caused, else nothing.
pub fn by(e: &Event) -> String {
    e.by.as_ref()
        .map_or(String::new(), |who| format!(" (by {who})"))
}

/// The effect of a drain, for confirmations.
pub fn drain_effect(
    mode: DrainMode,
    deadline_secs: Option<u32>,
    force: bool,
    recordings: Option<usize>,
) -> String {
    let what = match recordings {
        Some(0) => "it runs no recordings".to_string(),
        Some(1) => "its 1 recording".to_string(),
        Some(n) => format!("its {n} recordings"),
        None => "its recordings".to_string(),
    };
    let deadline = deadline_secs
        .map(|s| format!("after {}", format::span(u64::from(s) * 1000)))
        .unwrap_or_else(|| "after the coordinator's default deadline".to_string());
    let (moves, runs) = if recordings == Some(1) {
        ("moves", "runs to its end")
    } else {
        ("move", "run to their end")
    };
    let fate = match (force, mode, recordings) {
        (_, _, Some(0)) => String::new(),
        (true, _, _) | (_, DrainMode::Migrate, _) => {
            format!("; {what} {moves} to other workers now (make-before-break)")
        }
        (false, DrainMode::Wait, _) => {
            format!("; {what} {runs}, and what remains {deadline} is migrated")
        }
    };
    let base = if matches!(recordings, Some(0)) {
        format!("The worker takes no new recordings; {what}")
    } else {
        "The worker takes no new recordings".to_string()
    };
    format!("{base}{fate}.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drain_effects_name_what_happens() {
        assert_eq!(
            drain_effect(DrainMode::Wait, Some(600), false, Some(2)),
            "The worker takes no new recordings; its 2 recordings run to their end, and what remains after 10m00s is migrated."
        );
        assert_eq!(
            drain_effect(DrainMode::Migrate, None, false, Some(1)),
            "The worker takes no new recordings; its 1 recording moves to other workers now (make-before-break)."
        );
        assert_eq!(
            drain_effect(DrainMode::Wait, None, true, Some(0)),
            "The worker takes no new recordings; it runs no recordings."
        );
    }
}
