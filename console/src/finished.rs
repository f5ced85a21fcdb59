//! Which finished recordings a listing hides: `recfleet recordings` and the
//! TUI's recordings view show a recording in an end state (completed,
//! failed, cancelled: [`RecordingState::is_terminal`]) only while it ended
//! less than a window ago (1 h unless told), unless asked for all.
//!
//! The end is [`RecordingInfo::ended_at`]. A recording in an end state
//! without one (which the coordinator does not send) is shown: hiding what
//! cannot be dated would hide it for good.

use std::time::Duration;

use recfleet_protocol::{RecordingInfo, RecordingState};

/// The window of `--finished-within` when none is given, and the TUI's.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(3600);

/// Whether `r` is hidden at `now` (Unix ms): it ended more than `window`
/// ago.
pub fn is_hidden(r: &RecordingInfo, now: u64, window: Duration) -> bool {
    let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
    RecordingState::is_terminal(r.state)
        && r.ended_at
            .is_some_and(|ended| now.saturating_sub(ended) > window_ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use recfleet_protocol::RecordingId;

    fn rec(state: RecordingState, ended_at: Option<u64>) -> RecordingInfo {
        RecordingInfo {
            id: RecordingId::new("r1").unwrap(),
            state,
            url: "https://x".into(),
            worker: None,
            epoch: Default::default(),
            created_at: 0,
            started_at: None,
            ended_at,
            bytes: 0,
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
    fn finished_recordings_hide_after_the_window() {
        let now = 10 * 3_600_000;
        let hour = DEFAULT_WINDOW;
        let two_hours_ago = Some(now - 2 * 3_600_000);
        let ten_minutes_ago = Some(now - 600_000);
        for s in [
            RecordingState::Completed,
            RecordingState::Failed,
            RecordingState::Cancelled,
        ] {
            assert!(is_hidden(&rec(s, two_hours_ago), now, hour), "{s}");
            assert!(!is_hidden(&rec(s, ten_minutes_ago), now, hour), "{s}");
            assert!(!is_hidden(&rec(s, None), now, hour), "{s} without an end");
        }
        // Not finished: shown, however old.
        assert!(!is_hidden(
            &rec(RecordingState::Interrupted, two_hours_ago),
            now,
            hour
        ));
        assert!(!is_hidden(
            &rec(RecordingState::Completed, two_hours_ago),
            now,
            Duration::from_secs(3 * 3600)
        ));
    }
}
