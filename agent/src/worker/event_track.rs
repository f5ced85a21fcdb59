//! One part's event track on the worker: what the page's probe drained is
//! checked, numbered and written as a chunk file (`events/NNNNN.jsonl` in
//! the part's upload directory) that the uploader stores beside the media.
//! Each drain with events is one chunk, so a lost worker loses at most the
//! events of the last second or so (not yet drained) and those not yet
//! uploaded. The page's limits are enforced again here: a page can replace
//! its own script, not the worker's counting.

use std::path::{Path, PathBuf};

use recfleet_protocol::events::{
    check_type, TrackEvent, BURST, DATA_MAX, DROPPED_TYPE, EVENT_CHUNKS_DIR, PART_MAX_EVENTS,
    RATE_PER_SEC, STOP_TYPE,
};
use recfleet_protocol::{now_ms, EventSource};
use serde::Deserialize;

/// What the page's side (assets/events.js) hands over at each probe.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct PageDrain {
    /// `[wall ms, source, type, data as JSON text]`, oldest first.
    #[serde(default)]
    pub events: Vec<(f64, String, String, String)>,
    /// Events the page's limits dropped since the last drain.
    #[serde(default)]
    pub dropped: u64,
    /// Live remote WebRTC media tracks now.
    #[serde(default)]
    pub remote_media: u32,
    /// Open WebRTC peer connections now.
    #[serde(default)]
    pub peers: u32,
    /// The page emitted `recfleet.stop`.
    #[serde(default)]
    pub stop: bool,
}

/// The most events taken from one drain; the page's buffer holds 2,000.
const PER_DRAIN: usize = 2_000;

/// A part's track.
#[derive(Debug)]
pub struct EventTrack {
    segment: String,
    dir: PathBuf,
    next_chunk: u32,
    seq: u64,
    /// The worker's own token bucket over page events (same rate as the
    /// page's), and when it was last filled.
    tokens: f64,
    filled: u64,
    /// Dropped and not yet told on the track.
    dropped: u64,
    pending: Vec<TrackEvent>,
    /// The page asked to stop.
    pub stop_asked: bool,
}

impl EventTrack {
    /// The track of segment `e<epoch>-p<part>`, written under `chunk_dir`.
    pub fn new(chunk_dir: &Path, epoch: u64, part: u32) -> Self {
        EventTrack {
            segment: crate::output::events::segment_name(epoch, part),
            dir: chunk_dir.join(EVENT_CHUNKS_DIR),
            next_chunk: 0,
            seq: 0,
            tokens: f64::from(BURST),
            filled: now_ms(),
            dropped: 0,
            pending: Vec::new(),
            stop_asked: false,
        }
    }

    /// Takes what the page drained.
    pub fn take(&mut self, drain: PageDrain) {
        self.dropped += drain.dropped;
        let now = now_ms();
        let refill = now.saturating_sub(self.filled) as f64 * f64::from(RATE_PER_SEC) / 1000.0;
        self.tokens = (self.tokens + refill).min(f64::from(BURST));
        self.filled = now;
        let over = drain.events.len().saturating_sub(PER_DRAIN) as u64;
        self.dropped += over;
        for (at, source, kind, data) in drain.events.into_iter().take(PER_DRAIN) {
            let source = match source.as_str() {
                "page" => EventSource::Page,
                "watch" => EventSource::Watch,
                "browser" => EventSource::Browser,
                _ => {
                    self.dropped += 1;
                    continue;
                }
            };
            if self.tokens < 1.0 || self.seq >= PART_MAX_EVENTS || !acceptable(source, &kind, &data)
            {
                self.dropped += 1;
                continue;
            }
            self.tokens -= 1.0;
            if kind == STOP_TYPE {
                self.stop_asked = true;
            }
            // The page's clock is this machine's: a time far from now is a
            // page that lies about it, kept at the time it was drained.
            let wall = if at.is_finite() && (at as u64).abs_diff(now) < 60_000 {
                at.round() as u64
            } else {
                now
            };
            self.push(wall, source, kind, data);
        }
    }

    /// An event of the worker's own (a crashed page).
    pub fn worker_event(&mut self, kind: &str, data: serde_json::Value) {
        self.push(
            now_ms(),
            EventSource::Worker,
            kind.to_string(),
            data.to_string(),
        );
    }

    fn push(&mut self, wall_ms: u64, source: EventSource, kind: String, data: String) {
        self.pending.push(TrackEvent {
            media_ms: None,
            wall_ms,
            segment: self.segment.clone(),
            seq: self.seq,
            source,
            kind,
            data,
        });
        self.seq += 1;
    }

    /// Writes what is pending (and the count of dropped events) as the next
    /// chunk. Written aside and renamed, so the uploader only ever sees
    /// whole chunks.
    pub fn flush(&mut self) -> std::io::Result<()> {
        if self.dropped > 0 {
            let count = std::mem::take(&mut self.dropped);
            self.push(
                now_ms(),
                EventSource::Worker,
                DROPPED_TYPE.into(),
                serde_json::json!({ "count": count }).to_string(),
            );
        }
        if self.pending.is_empty() {
            return Ok(());
        }
        std::fs::create_dir_all(&self.dir)?;
        let text = crate::output::events::to_jsonl(&self.pending);
        let name = format!("{:05}.jsonl", self.next_chunk);
        let tmp = self.dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, self.dir.join(&name))?;
        self.next_chunk += 1;
        self.pending.clear();
        Ok(())
    }
}

/// A page event is kept when its type is a type, the page's source may use
/// it, and its data is JSON of at most [`DATA_MAX`] bytes.
fn acceptable(source: EventSource, kind: &str, data: &str) -> bool {
    let reserved = match source {
        EventSource::Page => {
            kind.starts_with("browser.") || (kind.starts_with("recfleet.") && kind != STOP_TYPE)
        }
        EventSource::Watch => kind != "watch",
        EventSource::Browser => !kind.starts_with("browser."),
        EventSource::Worker => true,
    };
    !reserved
        && check_type(kind).is_ok()
        && data.len() <= DATA_MAX
        && serde_json::from_str::<serde::de::IgnoredAny>(data).is_ok()
}

/// The chunk number of a chunk file's name (`00012.jsonl`), None for
/// anything else (a chunk being written).
pub fn chunk_number(name: &str) -> Option<u32> {
    let n = name.strip_suffix(".jsonl")?;
    (n.len() == 5 && n.bytes().all(|b| b.is_ascii_digit()))
        .then(|| n.parse().ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(events: Vec<(&str, &str, &str)>, dropped: u64) -> PageDrain {
        let now = now_ms() as f64;
        PageDrain {
            events: events
                .into_iter()
                .map(|(s, k, d)| (now, s.to_string(), k.to_string(), d.to_string()))
                .collect(),
            dropped,
            ..PageDrain::default()
        }
    }

    #[test]
    fn page_events_are_numbered_and_written_as_whole_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let mut track = EventTrack::new(dir.path(), 2, 1);
        track.take(drain(
            vec![
                ("page", "slide", r#"{"n":1}"#),
                ("browser", "browser.title", r#"{"title":"x"}"#),
            ],
            0,
        ));
        track.flush().unwrap();
        track.flush().unwrap(); // nothing pending: no empty chunk
        track.take(drain(vec![("page", "recfleet.stop", "null")], 0));
        assert!(track.stop_asked);
        track.flush().unwrap();
        let names: Vec<String> = std::fs::read_dir(dir.path().join("events"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        assert_eq!(names, ["00000.jsonl", "00001.jsonl"]);
        let first = crate::output::events::parse_lines(
            &std::fs::read_to_string(dir.path().join("events/00000.jsonl")).unwrap(),
        );
        assert_eq!(first.len(), 2);
        assert_eq!((first[0].seq, first[0].segment.as_str()), (0, "e2-p1"));
        assert_eq!(first[1].source, EventSource::Browser);
        assert_eq!(chunk_number("00001.jsonl"), Some(1));
        assert_eq!(chunk_number(".00002.jsonl.tmp"), None);
    }

    #[test]
    fn what_breaks_the_rules_is_counted_as_dropped_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut track = EventTrack::new(dir.path(), 1, 0);
        let big = format!("\"{}\"", "x".repeat(DATA_MAX));
        track.take(drain(
            vec![
                ("page", "browser.navigation", "{}"), // reserved
                ("page", "bad type", "{}"),
                ("page", "slide", "{not json"),
                ("page", "slide", &big),
                ("page", "slide", "2"),
                ("nobody", "slide", "3"),
            ],
            7,
        ));
        // Far more than the rate allows at once.
        let flood: Vec<(&str, &str, &str)> = (0..5000).map(|_| ("page", "tick", "1")).collect();
        track.take(drain(flood, 0));
        track.flush().unwrap();
        let kept = crate::output::events::parse_lines(
            &std::fs::read_to_string(dir.path().join("events/00000.jsonl")).unwrap(),
        );
        let summary = crate::output::events::summarize(&kept);
        assert_eq!(summary.counts["slide"], 1);
        // The bucket holds BURST (one went to "slide"), refilled at the
        // rate for the microseconds between the two drains.
        let ticks = summary.counts["tick"];
        assert!(
            (u64::from(BURST) - 1..=u64::from(BURST) + 1).contains(&ticks),
            "{ticks}"
        );
        // 7 from the page, 5 refused, and of the flood what was not kept.
        assert_eq!(summary.dropped, 7 + 5 + 5000 - ticks);
    }
}
