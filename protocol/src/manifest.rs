//! The manifest: every segment of a recording, and the gaps and overlaps
//! between them. It is what a user reads to play or join a recording.

use serde::{Deserialize, Serialize};

use crate::ids::{Epoch, RecordingId, WorkerName};
use crate::messages::UnixMillis;
use crate::state::RecordingState;

/// Why a segment file ended.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SegmentEndReason {
    /// An explicit stop request.
    Stopped,
    /// The maximum duration was reached.
    MaxDuration,
    /// The page signalled the end of the class.
    PageEnded,
    /// The room stayed empty past the timeout.
    EmptyRoom,
    /// A process of the slot exited; the group was restarted (one-for-all).
    ChildExited {
        /// Which process (`chromium`, `chromedriver`, `ffmpeg`, `xvfb`, `pulseaudio`, `capture`).
        process: String,
        /// Its exit status or signal, as text.
        status: String,
    },
    /// Capture made no progress for too long (counts as a crash).
    Stalled {
        /// What stalled.
        what: String,
    },
    /// The slot could not start.
    StartFailed {
        /// Why.
        reason: String,
    },
    /// Restarts exceeded the intensity limit; the slot gave up.
    GaveUp {
        /// The last failure and the limit.
        reason: String,
    },
    /// Moved to another worker (make-before-break); this one stopped after
    /// the new one captured its first frame.
    Reassigned,
    /// A newer epoch owns the recording (this worker was fenced).
    Superseded,
    /// The worker was declared lost; the end time is the last frame known.
    WorkerLost,
    /// The worker shut down.
    WorkerShutdown,
    /// The capture looked wrong past the health policy's limit (a frozen or
    /// black picture, a crashed page); the group was restarted.
    Unhealthy {
        /// The health state (`frozen`, `black`, `page_crashed`).
        state: crate::health::HealthState,
        /// What was seen.
        what: String,
    },
}

impl SegmentEndReason {
    /// Whether the slot should be restarted into a new part after this end.
    pub fn is_crash(&self) -> bool {
        matches!(
            self,
            SegmentEndReason::ChildExited { .. }
                | SegmentEndReason::Stalled { .. }
                | SegmentEndReason::Unhealthy { .. }
        )
    }

    /// A one-line description.
    pub fn describe(&self) -> String {
        match self {
            SegmentEndReason::Stopped => "stopped on request".into(),
            SegmentEndReason::MaxDuration => "maximum duration reached".into(),
            SegmentEndReason::PageEnded => "the page signalled the end of the class".into(),
            SegmentEndReason::EmptyRoom => "the room stayed empty".into(),
            SegmentEndReason::ChildExited { process, status } => {
                format!("{process} exited ({status})")
            }
            SegmentEndReason::Stalled { what } => format!("stalled: {what}"),
            SegmentEndReason::StartFailed { reason } => format!("could not start: {reason}"),
            SegmentEndReason::GaveUp { reason } => format!("gave up: {reason}"),
            SegmentEndReason::Reassigned => "moved to another worker".into(),
            SegmentEndReason::Superseded => "superseded by a newer placement".into(),
            SegmentEndReason::WorkerLost => "worker lost".into(),
            SegmentEndReason::WorkerShutdown => "worker shut down".into(),
            SegmentEndReason::Unhealthy { state, what } => format!("{state}: {what}"),
        }
    }
}

/// One segment file.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestSegment {
    /// The worker that wrote it.
    pub worker: WorkerName,
    /// The placement.
    pub epoch: Epoch,
    /// The file part within the placement.
    pub part: u32,
    /// File path relative to the output root (or the manifest's directory).
    pub file: String,
    /// Wall clock of the start of the part.
    pub started_at: UnixMillis,
    /// Wall clock of its end (None while running).
    pub ended_at: Option<UnixMillis>,
    /// First captured frame.
    pub first_frame_at: Option<UnixMillis>,
    /// Last captured frame.
    pub last_frame_at: Option<UnixMillis>,
    /// Size in bytes.
    pub bytes: u64,
    /// SHA-256 of the file, hex (empty while running).
    pub sha256: String,
    /// Why it ended (None while running).
    pub end_reason: Option<SegmentEndReason>,
    /// False when its epoch was superseded: the file is kept, but another
    /// segment is "the" recording for that time.
    pub current: bool,
    /// Its init object and chunks as stored in the destination, in order.
    #[serde(default)]
    pub chunks: Vec<Chunk>,
}

/// One stored object of a segment.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk {
    /// Chunk number in the segment; None for the init object.
    pub seq: Option<u32>,
    /// Key relative to the recording's directory.
    pub key: String,
    /// Size in the store, bytes.
    pub bytes: u64,
    /// SHA-256, hex.
    pub sha256: String,
    /// Media time of its start in the segment, ms.
    pub media_start_ms: u64,
    /// Its duration, ms.
    pub duration_ms: u64,
}

/// The stitched outputs of a finished recording.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Outputs {
    /// Where the recording's objects are: `<destination>/<dir>`.
    pub location: String,
    /// `recording.mp4`, once made.
    pub recording: Option<StoredFile>,
    /// `index.m3u8` (HLS VOD over every segment), once made.
    pub playlist: Option<StoredFile>,
    /// Gaps as they lie in recording.mp4 (filled with a slate).
    pub gaps_in_file: Vec<FileGap>,
    /// Why the stitched file could not be made, if it could not.
    pub error: Option<String>,
    /// The event track: `events.jsonl`, the chapters, counts per type.
    /// (Boxed: it is larger than the rest together.)
    #[serde(default)]
    pub events: Option<Box<EventsOutput>>,
}

/// A stored whole file.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredFile {
    /// Its full URL (`s3://...` or `file:///...`).
    pub url: String,
    /// Key relative to the recording's directory.
    pub key: String,
    /// Size, bytes.
    pub bytes: u64,
    /// SHA-256, hex.
    pub sha256: String,
    /// Media duration, ms (0 for a playlist).
    pub duration_ms: u64,
}

/// A gap's place in recording.mp4.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileGap {
    /// Position in the file, ms from its start.
    pub at_ms: u64,
    /// Length of the slate, ms.
    pub duration_ms: u64,
    /// Wall clock of the gap's start.
    pub from: UnixMillis,
    /// Wall clock of its end.
    pub to: UnixMillis,
}

/// Time with no capture between two segments.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gap {
    /// Last frame before the gap.
    pub from: UnixMillis,
    /// First frame after it.
    pub to: UnixMillis,
    /// `to - from`, ms.
    pub duration_ms: u64,
}

/// Time captured twice (make-before-break moves, fenced workers).
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Overlap {
    /// Start of the doubly captured time.
    pub from: UnixMillis,
    /// Its end.
    pub to: UnixMillis,
    /// `to - from`, ms.
    pub duration_ms: u64,
}

/// The manifest of one recording.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The recording.
    pub recording: RecordingId,
    /// The page.
    pub url: String,
    /// Its state when the manifest was written.
    pub state: RecordingState,
    /// Why it ended, if it did.
    pub reason: Option<String>,
    /// Every segment, in start order.
    pub segments: Vec<ManifestSegment>,
    /// Every gap between captured frames.
    pub gaps: Vec<Gap>,
    /// Every overlap.
    pub overlaps: Vec<Overlap>,
    /// Time covered by at least one segment, ms.
    pub total_captured_ms: u64,
    /// The stitched outputs (final once the recording is completed).
    #[serde(default)]
    pub outputs: Option<Outputs>,
}

impl Manifest {
    /// Builds a manifest, computing gaps, overlaps and captured time from
    /// the segments' first and last frames.
    pub fn build(
        recording: RecordingId,
        url: String,
        state: RecordingState,
        reason: Option<String>,
        mut segments: Vec<ManifestSegment>,
    ) -> Manifest {
        segments.sort_by_key(|s| (s.started_at, s.epoch, s.part));
        let spans: Vec<(u64, u64)> = segments
            .iter()
            .filter_map(|s| Some((s.first_frame_at?, s.last_frame_at?)))
            .filter(|(a, b)| b >= a)
            .collect();
        let timeline = Timeline::of(spans);
        Manifest {
            recording,
            url,
            state,
            reason,
            segments,
            gaps: timeline.gaps,
            overlaps: timeline.overlaps,
            total_captured_ms: timeline.covered_ms,
            outputs: None,
        }
    }
}

/// Coverage of a set of captured spans.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Timeline {
    /// Holes between spans.
    pub gaps: Vec<Gap>,
    /// Time covered by more than one span.
    pub overlaps: Vec<Overlap>,
    /// Length of the union of the spans, ms.
    pub covered_ms: u64,
}

impl Timeline {
    /// Computes gaps, overlaps and covered time of `(first, last)` spans.
    pub fn of(mut spans: Vec<(u64, u64)>) -> Timeline {
        spans.sort_unstable();
        let mut t = Timeline::default();
        let mut cover: Option<(u64, u64)> = None;
        for (start, end) in spans {
            match cover {
                None => cover = Some((start, end)),
                Some((cs, ce)) => {
                    if start > ce {
                        t.gaps.push(Gap {
                            from: ce,
                            to: start,
                            duration_ms: start - ce,
                        });
                        t.covered_ms += ce - cs;
                        cover = Some((start, end));
                    } else {
                        let overlap_end = end.min(ce);
                        if overlap_end > start {
                            t.overlaps.push(Overlap {
                                from: start,
                                to: overlap_end,
                                duration_ms: overlap_end - start,
                            });
                        }
                        cover = Some((cs, ce.max(end)));
                    }
                }
            }
        }
        if let Some((cs, ce)) = cover {
            t.covered_ms += ce - cs;
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_span_has_no_gap() {
        let t = Timeline::of(vec![(100, 600)]);
        assert_eq!(t.covered_ms, 500);
        assert!(t.gaps.is_empty() && t.overlaps.is_empty());
    }

    #[test]
    fn failover_leaves_a_gap_and_reassign_an_overlap() {
        // Failover: the old worker's last frame at 1000, the new first at 4000.
        let t = Timeline::of(vec![(0, 1000), (4000, 9000)]);
        assert_eq!(
            t.gaps,
            vec![Gap {
                from: 1000,
                to: 4000,
                duration_ms: 3000
            }]
        );
        assert_eq!(t.covered_ms, 6000);
        // Make-before-break: the new segment starts before the old one ends.
        let t = Timeline::of(vec![(0, 5000), (4200, 9000)]);
        assert!(t.gaps.is_empty());
        assert_eq!(
            t.overlaps,
            vec![Overlap {
                from: 4200,
                to: 5000,
                duration_ms: 800
            }]
        );
        assert_eq!(t.covered_ms, 9000);
    }

    #[test]
    fn a_span_inside_another_is_all_overlap() {
        let t = Timeline::of(vec![(0, 10_000), (2000, 3000), (12_000, 13_000)]);
        assert_eq!(t.overlaps.len(), 1);
        assert_eq!(t.overlaps[0].duration_ms, 1000);
        assert_eq!(t.gaps.len(), 1);
        assert_eq!(t.covered_ms, 11_000);
    }
}

/// What the event track of a finalized recording holds (manifest
/// `outputs.events`).
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct EventsOutput {
    /// `events.jsonl`.
    pub file: Option<StoredFile>,
    /// `chapters.vtt`, when the recording asked for chapters.
    pub chapters: Option<StoredFile>,
    /// Events kept, per type.
    pub counts: std::collections::BTreeMap<String, u64>,
    /// Events in the file.
    pub total: u64,
    /// Events dropped by the limits (rate, size), as the workers counted.
    pub dropped: u64,
    /// Chunks left out of `events.jsonl` because the track was larger than
    /// a coordinator reads at once ([`crate::events::JOIN_MAX_BYTES`]); they stay in the
    /// store under `events/`.
    #[serde(default)]
    pub unread_chunks: u64,
}
