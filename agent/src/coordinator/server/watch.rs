//! A worker session's judgements on its own clock, apart from I/O: when the
//! worker was last heard, and how many frames in a row did not decode.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// Undecodable frames in a row after which a control stream is given up.
pub const MAX_UNDECODABLE_IN_A_ROW: u32 = 16;

/// When a worker's last frame arrived, on the session's monotonic clock.
/// The reader stamps it as each frame is read off the stream (before the
/// session handles it), so a session that is busy never mistakes frames
/// waiting in its queue for silence.
#[derive(Debug)]
pub struct Liveness {
    base: Instant,
    /// Microseconds from `base` to the last frame.
    last_us: AtomicU64,
}

impl Liveness {
    /// Starts the clock: `now` counts as hearing from the worker.
    pub fn new(now: Instant) -> Self {
        Liveness {
            base: now,
            last_us: AtomicU64::new(0),
        }
    }

    /// A frame (of any kind) arrived at `now`.
    pub fn heard(&self, now: Instant) {
        let us = now.saturating_duration_since(self.base).as_micros();
        self.last_us
            .fetch_max(u64::try_from(us).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// When the worker will have been silent for `silence`.
    pub fn deadline(&self, silence: Duration) -> Instant {
        self.base + Duration::from_micros(self.last_us.load(Ordering::Relaxed)) + silence
    }

    /// Whether the worker has been silent for `silence` at `now`.
    pub fn silent(&self, now: Instant, silence: Duration) -> bool {
        now >= self.deadline(silence)
    }
}

/// Counts undecodable frames in a row on one stream.
#[derive(Debug, Default)]
pub struct UndecodableRun {
    run: u32,
}

impl UndecodableRun {
    /// A frame decoded: the run is over.
    pub fn decoded(&mut self) {
        self.run = 0;
    }

    /// A frame did not decode; true when the run has reached
    /// [`MAX_UNDECODABLE_IN_A_ROW`] and the stream should be given up.
    pub fn undecodable(&mut self) -> bool {
        self.run = self.run.saturating_add(1);
        self.run >= MAX_UNDECODABLE_IN_A_ROW
    }

    /// Undecodable frames in a row so far.
    pub fn len(&self) -> u32 {
        self.run
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_counts_from_the_last_frame_of_any_kind() {
        let t0 = Instant::now();
        let s = Duration::from_secs(3);
        let live = Liveness::new(t0);
        assert_eq!(live.deadline(s), t0 + s);
        assert!(!live.silent(t0 + Duration::from_millis(2999), s));
        assert!(live.silent(t0 + s, s));
        live.heard(t0 + Duration::from_secs(2));
        assert!(!live.silent(t0 + Duration::from_millis(4999), s));
        assert!(live.silent(t0 + Duration::from_secs(5), s));
        // A stamp from a reader that read earlier but stored later never
        // moves the clock back.
        live.heard(t0 + Duration::from_secs(1));
        assert_eq!(live.deadline(s), t0 + Duration::from_secs(5));
    }

    #[test]
    fn sixteen_undecodable_frames_in_a_row_give_up_the_stream() {
        let mut run = UndecodableRun::default();
        for _ in 0..15 {
            assert!(!run.undecodable());
        }
        run.decoded();
        assert_eq!(run.len(), 0);
        for _ in 0..(MAX_UNDECODABLE_IN_A_ROW - 1) {
            assert!(!run.undecodable());
        }
        assert!(run.undecodable());
        assert_eq!(run.len(), MAX_UNDECODABLE_IN_A_ROW);
    }
}
