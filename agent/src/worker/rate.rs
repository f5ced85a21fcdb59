//! The frame rate a recording really gets: frames encoded per second over
//! the last few seconds (ffmpeg's own `fps=` is an average since the start,
//! which showed 16-33 for 15 fps recordings), and the share of those frames
//! that repeat the previous picture because the grab came late (ffmpeg
//! duplicates frames to keep the output's constant rate).

use std::collections::VecDeque;

/// How far back the rate looks.
pub const WINDOW_MS: u64 = 5_000;

/// Samples kept at most (ffmpeg reports four times a second).
const MAX_SAMPLES: usize = 64;

/// A share of repeated frames from which a recording is flagged, per mille.
pub const REPEATING_PERMILLE: u16 = 50;

/// One reading of the encoder's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sample {
    at_ms: u64,
    frames: u64,
    dups: u64,
}

/// The rate over a sliding window.
#[derive(Debug, Default)]
pub struct FrameRate {
    samples: VecDeque<Sample>,
}

/// What the window says.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rate {
    /// Frames encoded per second, thousandths.
    pub fps_milli: u32,
    /// Frames that repeated the previous picture, per mille of those
    /// encoded.
    pub repeated_permille: u16,
}

impl FrameRate {
    /// Adds a reading taken at `at_ms` (monotonic ms) of the encoder's
    /// frame and duplicate counters; returns the rate over the window.
    pub fn push(&mut self, at_ms: u64, frames: u64, dups: u64) -> Rate {
        // A counter that went back is a new encoder: start over.
        if self
            .samples
            .back()
            .is_some_and(|s| frames < s.frames || dups < s.dups || at_ms < s.at_ms)
        {
            self.samples.clear();
        }
        self.samples.push_back(Sample {
            at_ms,
            frames,
            dups,
        });
        while self.samples.len() > MAX_SAMPLES
            || self
                .samples
                .front()
                .is_some_and(|s| at_ms - s.at_ms > WINDOW_MS)
        {
            self.samples.pop_front();
        }
        self.rate()
    }

    fn rate(&self) -> Rate {
        let (Some(first), Some(last)) = (self.samples.front(), self.samples.back()) else {
            return Rate::default();
        };
        let ms = last.at_ms - first.at_ms;
        if ms == 0 {
            return Rate::default();
        }
        let frames = last.frames - first.frames;
        let dups = (last.dups - first.dups).min(frames);
        Rate {
            fps_milli: (frames * 1_000_000 / ms).min(u64::from(u32::MAX)) as u32,
            repeated_permille: (dups * 1000).checked_div(frames).unwrap_or(0) as u16,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_is_over_the_last_window_not_since_the_start() {
        let mut r = FrameRate::default();
        // 30 fps for 10 s, then 15 fps for 10 s.
        let mut frames = 0;
        let mut last = Rate::default();
        for tick in 0..=80u64 {
            let at = tick * 250;
            last = r.push(at, frames, 0);
            frames += if at < 10_000 { 30 / 4 } else { 15 / 4 };
        }
        // 3 frames a quarter second at the end: 12 fps exactly.
        assert_eq!(last.fps_milli, 12_000);
        assert_eq!(last.repeated_permille, 0);
    }

    #[test]
    fn repeated_frames_are_a_share_of_the_window() {
        let mut r = FrameRate::default();
        let mut last = Rate::default();
        for tick in 0..=20u64 {
            // 4 frames a quarter second, one of them a duplicate.
            last = r.push(tick * 250, tick * 4, tick);
        }
        assert_eq!(last.fps_milli, 16_000);
        assert_eq!(last.repeated_permille, 250);
        assert!(last.repeated_permille >= REPEATING_PERMILLE);
    }

    #[test]
    fn a_new_encoder_starts_over_and_one_sample_says_nothing() {
        let mut r = FrameRate::default();
        r.push(0, 0, 0);
        r.push(1000, 15, 0);
        assert_eq!(r.push(1000, 15, 0).fps_milli, 15_000);
        assert_eq!(r.push(1250, 2, 0), Rate::default());
        assert_eq!(r.push(1500, 6, 0).fps_milli, 16_000);
    }
}
