//! Media health from the capture itself. The encoder's filter graph
//! (`super::encoder`) analyses a small copy of what it encodes and prints
//! frame metadata into two files of the part's directory: the picture's
//! (`freezedetect`, `blackdetect`) and the sound's (`astats` level every
//! half second, `silencedetect`). This module reads those lines and, with
//! what the page watcher says, decides one [`Health`] per recording.
//! No I/O but reading the two files' new lines ([`MetadataTail`]).

use std::path::PathBuf;

use super::tail::FileTail;

use recfleet_protocol::{Health, HealthPolicy, HealthState};

/// The picture analysis file, in the part's directory (ffmpeg's cwd).
pub const VIDEO_FILE: &str = "video.health";
/// The sound analysis file.
pub const AUDIO_FILE: &str = "audio.health";
/// The latest picture, rewritten every two seconds.
pub const THUMBNAIL_FILE: &str = "thumb.jpg";
/// Below this, sound counts as silence (and the meter shows nothing).
pub const SILENCE_DB: i16 = -50;

/// One fact from the analysis, on the part's media timeline (ms).
#[derive(Debug, Clone, PartialEq)]
pub enum Signal {
    /// The sound's RMS level over the last half second, dBFS (None: -inf).
    Level { at: u64, db: Option<f64> },
    /// Silence began at `at` (told once it lasted the policy's length).
    SilenceStart { at: u64 },
    /// Silence ended.
    SilenceEnd { at: u64 },
    /// The picture stopped changing at `at` (told once it lasted).
    FreezeStart { at: u64 },
    /// The picture moves again.
    FreezeEnd { at: u64 },
    /// The picture turned black at `at` (told at once).
    BlackStart { at: u64 },
    /// The picture is no longer black.
    BlackEnd { at: u64 },
}

/// Parses ffmpeg's `metadata=mode=print` output: a `frame:N pts:P
/// pts_time:T` line, then `key=value` lines for that frame.
#[derive(Debug, Default)]
pub struct MetadataParser {
    at_ms: u64,
}

impl MetadataParser {
    /// Feeds one line; returns the fact it states, if any.
    pub fn line(&mut self, line: &str) -> Option<Signal> {
        let line = line.trim();
        if line.starts_with("frame:") {
            if let Some(t) = line.split("pts_time:").nth(1) {
                if let Ok(secs) = t.trim().parse::<f64>() {
                    self.at_ms = (secs.max(0.0) * 1000.0).round() as u64;
                }
            }
            return None;
        }
        let (key, value) = line.split_once('=')?;
        let secs = || {
            value
                .trim()
                .parse::<f64>()
                .ok()
                .map(|s| (s.max(0.0) * 1000.0).round() as u64)
        };
        let at = self.at_ms;
        match key {
            "lavfi.astats.Overall.RMS_level" => Some(Signal::Level {
                at,
                db: value.trim().parse::<f64>().ok().filter(|d| d.is_finite()),
            }),
            "lavfi.silence_start" => Some(Signal::SilenceStart { at: secs()? }),
            "lavfi.silence_end" => Some(Signal::SilenceEnd { at: secs()? }),
            "lavfi.freezedetect.freeze_start" => Some(Signal::FreezeStart { at: secs()? }),
            "lavfi.freezedetect.freeze_end" => Some(Signal::FreezeEnd { at: secs()? }),
            "lavfi.black_start" => Some(Signal::BlackStart { at: secs()? }),
            "lavfi.black_end" => Some(Signal::BlackEnd { at: secs()? }),
            _ => None,
        }
    }
}

/// What the page watcher says, as far as health goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageHealth {
    /// It answers and is the page asked for.
    Fine,
    /// It has not answered since this wall clock.
    Unanswered { since: u64 },
    /// It is another page than asked, since this wall clock.
    Wrong { since: u64, what: String },
    /// Its renderer is gone.
    Crashed { at: u64, what: String },
}

/// The health of one part, from its analysis and its page. Media times
/// become wall clocks through the part's first frame (`anchor`).
#[derive(Debug)]
pub struct HealthTracker {
    policy: HealthPolicy,
    audio: bool,
    anchor: Option<u64>,
    silent_since: Option<u64>,
    frozen_since: Option<u64>,
    black_since: Option<u64>,
    level: Option<i16>,
    page: PageHealth,
}

/// How long a page may not answer before it counts as unresponsive.
pub const UNRESPONSIVE_MS: u64 = 5_000;

impl HealthTracker {
    /// A tracker for a part recording sound or not.
    pub fn new(policy: HealthPolicy, audio: bool) -> Self {
        HealthTracker {
            policy,
            audio,
            anchor: None,
            silent_since: None,
            frozen_since: None,
            black_since: None,
            level: None,
            page: PageHealth::Fine,
        }
    }

    /// The wall clock of the part's first frame (media time 0).
    pub fn set_anchor(&mut self, first_frame_at: u64) {
        self.anchor.get_or_insert(first_frame_at);
    }

    fn wall(&self, media_ms: u64) -> u64 {
        self.anchor.unwrap_or(0) + media_ms
    }

    /// Takes one fact of the analysis.
    pub fn signal(&mut self, s: Signal) {
        match s {
            Signal::Level { db, .. } => {
                self.level = db.map(|d| d.round().clamp(-120.0, 0.0) as i16);
            }
            Signal::SilenceStart { at } => self.silent_since = Some(self.wall(at)),
            Signal::SilenceEnd { .. } => self.silent_since = None,
            Signal::FreezeStart { at } => {
                self.frozen_since = Some(self.wall(at));
            }
            Signal::FreezeEnd { .. } => {
                self.frozen_since = None;
            }
            Signal::BlackStart { at } => {
                self.black_since = Some(self.wall(at));
            }
            Signal::BlackEnd { .. } => {
                self.black_since = None;
            }
        }
    }

    /// Takes what the page watcher says. A crash told again keeps the
    /// time of the first telling.
    pub fn page(&mut self, page: PageHealth) {
        if let (PageHealth::Crashed { .. }, PageHealth::Crashed { .. }) = (&self.page, &page) {
            return;
        }
        self.page = page;
    }

    /// The sound level of the last half second, dBFS.
    pub fn level(&self) -> Option<i16> {
        self.level
    }

    /// The health at wall clock `now`: the worst state that holds.
    pub fn health(&self, now: u64) -> Health {
        let lasted = |since: Option<u64>, secs: u32| {
            since.filter(|s| now.saturating_sub(*s) >= u64::from(secs) * 1000)
        };
        match &self.page {
            PageHealth::Crashed { at, what } => {
                return Health::new(HealthState::PageCrashed, *at, what.clone())
            }
            PageHealth::Unanswered { since } if now.saturating_sub(*since) >= UNRESPONSIVE_MS => {
                return Health::new(
                    HealthState::Unresponsive,
                    *since,
                    format!("the page has not answered for {} s", (now - since) / 1000),
                )
            }
            PageHealth::Wrong { since, what } => {
                return Health::new(HealthState::WrongPage, *since, what.clone())
            }
            _ => {}
        }
        if let Some(since) = lasted(self.black_since, self.policy.black_secs) {
            return Health::new(
                HealthState::Black,
                since,
                format!("black picture for {} s", now.saturating_sub(since) / 1000),
            );
        }
        // The analysis says "frozen" once the freeze lasted frozen_secs.
        if let Some(since) = self.frozen_since {
            return Health::new(
                HealthState::Frozen,
                since,
                format!(
                    "the picture has not changed for {} s",
                    now.saturating_sub(since) / 1000
                ),
            );
        }
        if let (true, Some(since)) = (self.audio, self.silent_since) {
            return Health::new(
                HealthState::Silent,
                since,
                format!(
                    "no sound above {SILENCE_DB} dBFS for {} s",
                    now.saturating_sub(since) / 1000
                ),
            );
        }
        match self.anchor {
            // No frame yet: nothing to judge.
            None => Health::default(),
            Some(first) => Health::new(HealthState::Ok, first, ""),
        }
    }

    /// Whether the policy restarts the slot for `health`, and why.
    pub fn restart_for(&self, health: &Health, now: u64) -> Option<String> {
        let held = now.saturating_sub(health.since) / 1000;
        let past = |limit: Option<u32>| limit.is_some_and(|l| held >= u64::from(l));
        match health.state {
            HealthState::PageCrashed if self.policy.restart_crashed => Some(health.detail.clone()),
            HealthState::Frozen if past(self.policy.restart_frozen_secs) => Some(format!(
                "the picture did not change for {held} s (the policy restarts after {} s)",
                self.policy.restart_frozen_secs.unwrap_or(0)
            )),
            HealthState::Black if past(self.policy.restart_black_secs) => Some(format!(
                "the picture was black for {held} s (the policy restarts after {} s)",
                self.policy.restart_black_secs.unwrap_or(0)
            )),
            _ => None,
        }
    }
}

/// The facts a metadata file gives, read as it grows.
#[derive(Debug)]
pub struct MetadataTail {
    file: FileTail,
    parser: MetadataParser,
}

/// The most read from one file per call: a burst after a stall is taken in
/// several ticks, never all at once.
const READ_MAX: u64 = 256 * 1024;

impl MetadataTail {
    /// Tails `path` from its start (it may not exist yet).
    pub fn new(path: PathBuf) -> Self {
        MetadataTail {
            file: FileTail::new(path),
            parser: MetadataParser::default(),
        }
    }

    /// The facts written since the last call.
    pub fn poll(&mut self) -> Vec<Signal> {
        let lines = self.file.lines(READ_MAX);
        lines.iter().filter_map(|l| self.parser.line(l)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> HealthPolicy {
        HealthPolicy {
            silent_secs: 3,
            frozen_secs: 3,
            black_secs: 2,
            restart_crashed: true,
            restart_frozen_secs: Some(30),
            restart_black_secs: None,
        }
    }

    #[test]
    fn parses_what_ffmpeg_prints() {
        let text = "frame:0    pts:0       pts_time:0\nlavfi.black_start=0\n\
                    frame:4    pts:4       pts_time:2\nlavfi.freezedetect.freeze_start=0\n\
                    frame:3    pts:72000   pts_time:1.5\nlavfi.astats.Overall.RMS_level=-inf\nlavfi.silence_start=0.25\n\
                    frame:9    pts:216000  pts_time:4.5\nlavfi.astats.Overall.RMS_level=-21.734\n";
        let mut p = MetadataParser::default();
        let got: Vec<Signal> = text.lines().filter_map(|l| p.line(l)).collect();
        assert_eq!(
            got,
            vec![
                Signal::BlackStart { at: 0 },
                Signal::FreezeStart { at: 0 },
                Signal::Level { at: 1500, db: None },
                Signal::SilenceStart { at: 250 },
                Signal::Level {
                    at: 4500,
                    db: Some(-21.734)
                },
            ]
        );
    }

    #[test]
    fn the_worst_state_wins_and_dates_from_its_cause() {
        let mut t = HealthTracker::new(policy(), true);
        assert_eq!(t.health(1_000).state, HealthState::Unknown);
        t.set_anchor(10_000);
        t.signal(Signal::Level {
            at: 500,
            db: Some(-20.0),
        });
        assert_eq!(t.health(11_000).state, HealthState::Ok);
        assert_eq!(t.level(), Some(-20));
        t.signal(Signal::SilenceStart { at: 1_000 });
        let h = t.health(14_500);
        assert_eq!((h.state, h.since), (HealthState::Silent, 11_000));
        t.signal(Signal::FreezeStart { at: 2_000 });
        assert_eq!(t.health(15_000).state, HealthState::Frozen);
        // Black counts only once it lasted black_secs.
        t.signal(Signal::BlackStart { at: 4_000 });
        assert_eq!(t.health(15_000).state, HealthState::Frozen);
        assert_eq!(t.health(16_000).state, HealthState::Black);
        t.page(PageHealth::Unanswered { since: 15_000 });
        assert_eq!(t.health(16_000).state, HealthState::Black);
        assert_eq!(t.health(20_000).state, HealthState::Unresponsive);
        t.page(PageHealth::Crashed {
            at: 20_500,
            what: "tab crashed".into(),
        });
        assert_eq!(t.health(21_000).state, HealthState::PageCrashed);
        t.page(PageHealth::Crashed {
            at: 21_500,
            what: "tab crashed".into(),
        });
        assert_eq!(t.health(22_000).since, 20_500, "since the first crash");
        t.page(PageHealth::Fine);
        t.signal(Signal::BlackEnd { at: 11_000 });
        t.signal(Signal::FreezeEnd { at: 11_000 });
        t.signal(Signal::SilenceEnd { at: 11_000 });
        assert_eq!(t.health(22_000).state, HealthState::Ok);
    }

    #[test]
    fn silence_is_not_a_state_of_a_recording_without_sound() {
        let mut t = HealthTracker::new(policy(), false);
        t.set_anchor(0);
        t.signal(Signal::SilenceStart { at: 0 });
        assert_eq!(t.health(60_000).state, HealthState::Ok);
    }

    #[test]
    fn the_policy_decides_what_restarts() {
        let mut t = HealthTracker::new(policy(), true);
        t.set_anchor(0);
        t.signal(Signal::SilenceStart { at: 0 });
        let silent = t.health(600_000);
        assert_eq!(silent.state, HealthState::Silent);
        assert_eq!(t.restart_for(&silent, 600_000), None);
        t.signal(Signal::FreezeStart { at: 1_000 });
        let frozen = t.health(20_000);
        assert_eq!(t.restart_for(&frozen, 20_000), None);
        assert!(t.restart_for(&frozen, 31_000).is_some());
        t.page(PageHealth::Crashed {
            at: 40_000,
            what: "gone".into(),
        });
        let crashed = t.health(40_000);
        assert_eq!(t.restart_for(&crashed, 40_000).as_deref(), Some("gone"));
    }

    #[test]
    fn the_tail_reads_whole_lines_as_they_arrive() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(AUDIO_FILE);
        let mut tail = MetadataTail::new(path.clone());
        assert!(tail.poll().is_empty());
        std::fs::write(
            &path,
            "frame:1 pts:1 pts_time:0.5\nlavfi.astats.Overall.RMS_le",
        )
        .unwrap();
        assert!(tail.poll().is_empty());
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        std::io::Write::write_all(&mut f, b"vel=-30.5\n").unwrap();
        assert_eq!(
            tail.poll(),
            vec![Signal::Level {
                at: 500,
                db: Some(-30.5)
            }]
        );
    }
}
