//! How the segments of one recording join into one file: pure planning, no I/O.
//!
//! The file's timeline is wall-clock time from the first frame of the first
//! segment. Where no worker captured anything, a black slate fills the gap so
//! that a moment in the file is still a moment in the class. Where two workers
//! captured the same moment (a make-before-break move, or a fenced duplicate),
//! only one of them plays it: the earlier segment is cut where the later one
//! starts, because the later one's first frame is a keyframe while a cut into
//! the middle of the later one would need one; an end cut needs none, since the
//! capture encodes no B-frames.

use std::cmp::Reverse;

/// Gaps and overhangs up to about one frame (15 fps: 67 ms) are jitter
/// between the workers' clocks and first frames, not a lost moment; a slate
/// that short would only add a black flash.
pub const FRAME_SLACK_MS: u64 = 70;

/// One captured segment: what the worker reported about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    /// A name for logs and the manifest (e.g. "e3p1").
    pub label: String,
    /// Wall-clock time of its first frame, unix ms.
    pub first_frame_at: u64,
    /// Its media duration, ms.
    pub duration_ms: u64,
}

impl Span {
    fn end(&self) -> u64 {
        self.first_frame_at.saturating_add(self.duration_ms)
    }
}

/// One piece of the output file, in playing order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// A captured segment, played from its start.
    Segment {
        /// Index into the spans given to [`plan`].
        index: usize,
        /// Where its end is cut, media ms from the segment's start; `None`
        /// plays it to its end.
        outpoint_ms: Option<u64>,
    },
    /// Black picture and silence where nothing was captured.
    Slate {
        /// Its length, ms.
        duration_ms: u64,
        /// Wall-clock start of the gap, unix ms.
        from: u64,
        /// Wall-clock end of the gap, unix ms.
        to: u64,
    },
}

/// The pieces that make the file from `spans`, in playing order.
pub fn plan(spans: &[Span]) -> Vec<Piece> {
    let mut order: Vec<usize> = (0..spans.len())
        .filter(|&i| spans[i].duration_ms > 0)
        .collect();
    // At equal starts the longer one comes first, so the shorter is dropped as
    // covered instead of being planned and then cut to nothing.
    order.sort_by_key(|&i| (spans[i].first_frame_at, Reverse(spans[i].duration_ms), i));

    let mut pieces: Vec<Piece> = Vec::new();
    // Wall-clock end of what is planned so far, and the segment that plays it
    // (the last one planned: each planned segment reaches past the one before).
    let mut covered: Option<(u64, usize)> = None;
    for i in order {
        let span = &spans[i];
        let (start, end) = (span.first_frame_at, span.end());
        let Some((covered_end, last)) = covered else {
            pieces.push(segment(i));
            covered = Some((end, i));
            continue;
        };
        if end <= covered_end.saturating_add(FRAME_SLACK_MS) {
            continue; // Everything it shows is already planned.
        }
        if start > covered_end.saturating_add(FRAME_SLACK_MS) {
            pieces.push(Piece::Slate {
                duration_ms: start - covered_end,
                from: covered_end,
                to: start,
            });
        } else if start < covered_end {
            cut_last(&mut pieces, &spans[last], start);
        }
        pieces.push(segment(i));
        covered = Some((end, i));
    }
    pieces
}

fn segment(index: usize) -> Piece {
    Piece::Segment {
        index,
        outpoint_ms: None,
    }
}

/// Ends the last planned segment (`span`) at wall time `at`, or removes it when
/// less than a frame of it would be left.
fn cut_last(pieces: &mut Vec<Piece>, span: &Span, at: u64) {
    let keep = at.saturating_sub(span.first_frame_at);
    if keep <= FRAME_SLACK_MS {
        pieces.pop();
    } else if let Some(Piece::Segment { outpoint_ms, .. }) = pieces.last_mut() {
        *outpoint_ms = Some(keep);
    }
}

/// Where a gap sits in the output file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GapAt {
    /// Its start in the file, ms from the file's start.
    pub at_ms: u64,
    /// Its length, ms.
    pub duration_ms: u64,
    /// Wall-clock start of the gap, unix ms.
    pub from: u64,
    /// Wall-clock end of the gap, unix ms.
    pub to: u64,
}

/// Where (the played part of) a segment sits in the output file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentAt {
    /// Index into the spans.
    pub index: usize,
    /// Its start in the file, ms from the file's start.
    pub at_ms: u64,
    /// How much of it plays, ms.
    pub duration_ms: u64,
    /// Wall-clock time of its first frame, unix ms.
    pub from: u64,
    /// Wall-clock end of the part that plays, unix ms.
    pub to: u64,
}

/// The file's layout, for the manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Timeline {
    /// The segments that play, in order.
    pub segments: Vec<SegmentAt>,
    /// The gaps filled by slates, in order.
    pub gaps: Vec<GapAt>,
    /// The file's planned length, ms.
    pub duration_ms: u64,
}

/// Positions of the planned `pieces` of `spans` in the output file. Pieces
/// naming no span are skipped (they come from another plan).
pub fn timeline(spans: &[Span], pieces: &[Piece]) -> Timeline {
    let mut out = Timeline::default();
    for piece in pieces {
        let at_ms = out.duration_ms;
        match *piece {
            Piece::Segment { index, outpoint_ms } => {
                let Some(span) = spans.get(index) else {
                    continue;
                };
                let duration_ms = outpoint_ms.map_or(span.duration_ms, |o| o.min(span.duration_ms));
                out.segments.push(SegmentAt {
                    index,
                    at_ms,
                    duration_ms,
                    from: span.first_frame_at,
                    to: span.first_frame_at.saturating_add(duration_ms),
                });
                out.duration_ms = at_ms.saturating_add(duration_ms);
            }
            Piece::Slate {
                duration_ms,
                from,
                to,
            } => {
                out.gaps.push(GapAt {
                    at_ms,
                    duration_ms,
                    from,
                    to,
                });
                out.duration_ms = at_ms.saturating_add(duration_ms);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(label: &str, first_frame_at: u64, duration_ms: u64) -> Span {
        Span {
            label: label.into(),
            first_frame_at,
            duration_ms,
        }
    }

    fn seg(index: usize, outpoint_ms: Option<u64>) -> Piece {
        Piece::Segment { index, outpoint_ms }
    }

    fn slate(from: u64, to: u64) -> Piece {
        Piece::Slate {
            duration_ms: to - from,
            from,
            to,
        }
    }

    #[test]
    fn nothing_plans_nothing() {
        assert_eq!(plan(&[]), vec![]);
        assert_eq!(plan(&[span("a", 1000, 0)]), vec![]);
        assert_eq!(timeline(&[], &[]), Timeline::default());
    }

    #[test]
    fn one_segment_plays_whole() {
        assert_eq!(plan(&[span("a", 1000, 6000)]), vec![seg(0, None)]);
    }

    #[test]
    fn back_to_back_segments_join_without_slate() {
        let spans = [span("a", 1000, 6000), span("b", 7000, 4000)];
        assert_eq!(plan(&spans), vec![seg(0, None), seg(1, None)]);
    }

    #[test]
    fn input_order_does_not_matter() {
        let spans = [span("b", 7000, 4000), span("a", 1000, 6000)];
        assert_eq!(plan(&spans), vec![seg(1, None), seg(0, None)]);
    }

    #[test]
    fn gap_within_a_frame_is_jitter() {
        let spans = [
            span("a", 1000, 6000),
            span("b", 7000 + FRAME_SLACK_MS, 4000),
        ];
        assert_eq!(plan(&spans), vec![seg(0, None), seg(1, None)]);
    }

    #[test]
    fn gap_becomes_slate_of_its_length() {
        let spans = [span("a", 1000, 6000), span("b", 10_000, 4000)];
        assert_eq!(
            plan(&spans),
            vec![seg(0, None), slate(7000, 10_000), seg(1, None)]
        );
    }

    #[test]
    fn overlap_cuts_the_earlier_at_the_later_start() {
        // Make-before-break: b starts 2 s before a stops.
        let spans = [span("a", 1000, 6000), span("b", 5000, 6000)];
        assert_eq!(plan(&spans), vec![seg(0, Some(4000)), seg(1, None)]);
    }

    #[test]
    fn small_overlap_is_still_cut() {
        // Cutting keeps the file's timeline on the wall clock.
        let spans = [span("a", 1000, 6000), span("b", 6990, 6000)];
        assert_eq!(plan(&spans), vec![seg(0, Some(5990)), seg(1, None)]);
    }

    #[test]
    fn covered_duplicate_is_dropped() {
        // A fenced duplicate entirely inside a.
        let spans = [span("a", 1000, 6000), span("dup", 2000, 3000)];
        assert_eq!(plan(&spans), vec![seg(0, None)]);
        // Ending just past a (under a frame) still shows nothing new.
        let spans = [span("a", 1000, 6000), span("dup", 2000, 5050)];
        assert_eq!(plan(&spans), vec![seg(0, None)]);
    }

    #[test]
    fn same_start_keeps_the_longer() {
        let spans = [span("short", 1000, 3000), span("long", 1000, 6000)];
        assert_eq!(plan(&spans), vec![seg(1, None)]);
    }

    #[test]
    fn later_start_a_frame_after_removes_the_earlier() {
        // Cutting a to 50 ms would leave a black-less flash of one frame.
        let spans = [
            span("x", 0, 1000),
            span("a", 2000, 3000),
            span("b", 2050, 6000),
        ];
        assert_eq!(
            plan(&spans),
            vec![seg(0, None), slate(1000, 2000), seg(2, None)]
        );
    }

    #[test]
    fn gap_and_overlaps_together() {
        let spans = [
            span("a", 1_000_000, 6000),
            span("b", 1_009_000, 6000),
            span("dup", 1_010_000, 2000),
            span("c", 1_013_000, 6000),
        ];
        let pieces = plan(&spans);
        assert_eq!(
            pieces,
            vec![
                seg(0, None),
                slate(1_006_000, 1_009_000),
                seg(1, Some(4000)),
                seg(3, None),
            ]
        );
        let t = timeline(&spans, &pieces);
        assert_eq!(t.duration_ms, 19_000, "the file spans the wall time");
        assert_eq!(
            t.gaps,
            vec![GapAt {
                at_ms: 6000,
                duration_ms: 3000,
                from: 1_006_000,
                to: 1_009_000
            }]
        );
        let at: Vec<(usize, u64, u64, u64, u64)> = t
            .segments
            .iter()
            .map(|s| (s.index, s.at_ms, s.duration_ms, s.from, s.to))
            .collect();
        assert_eq!(
            at,
            vec![
                (0, 0, 6000, 1_000_000, 1_006_000),
                (1, 9000, 4000, 1_009_000, 1_013_000),
                (3, 13_000, 6000, 1_013_000, 1_019_000),
            ]
        );
    }

    #[test]
    fn a_segment_overlapping_two_cuts_only_the_last() {
        // c starts inside b, which itself followed a; a is untouched.
        let spans = [
            span("a", 0, 4000),
            span("b", 4000, 4000),
            span("c", 6000, 4000),
        ];
        assert_eq!(
            plan(&spans),
            vec![seg(0, None), seg(1, Some(2000)), seg(2, None)]
        );
    }

    #[test]
    fn timeline_skips_pieces_of_another_plan() {
        let t = timeline(&[span("a", 0, 1000)], &[seg(5, None), seg(0, None)]);
        assert_eq!(t.segments.len(), 1);
        assert_eq!(t.duration_ms, 1000);
    }
}
