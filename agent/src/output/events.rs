//! The event track of a recording, read back from its destination: the
//! workers' chunks joined in order, each event placed on the recording's
//! timeline (the timeline of `recording.mp4`), the chapters file made from
//! one event type. Placing and the chapters are pure; only [`read_chunks`]
//! and [`read_joined`] touch the store.

use std::collections::BTreeMap;

use recfleet_protocol::events::{TrackEvent, DROPPED_TYPE, EVENTS_KEY, EVENT_CHUNKS_DIR};
use recfleet_protocol::{EventsOutput, Manifest};

use super::destination::{Destination, DestinationError};
use super::stitch::{plan, timeline, Span, Timeline};

/// The key of a worker's event chunk, relative to the recording's directory.
pub fn chunk_key(segment: &str, n: u32) -> String {
    format!("{EVENT_CHUNKS_DIR}/{segment}/{n:05}.jsonl")
}

/// A segment's name on the track and in keys: `e<E>-p<P>`.
pub fn segment_name(epoch: u64, part: u32) -> String {
    format!("e{epoch}-p{part}")
}

/// (epoch, part, chunk number) of a chunk key, None for anything else.
fn parse_chunk_key(key: &str) -> Option<(u64, u32, u32)> {
    let rest = key.strip_prefix(EVENT_CHUNKS_DIR)?.strip_prefix('/')?;
    let (seg, name) = rest.split_once('/')?;
    let (e, p) = seg.strip_prefix('e')?.split_once("-p")?;
    let n = name.strip_suffix(".jsonl")?;
    Some((e.parse().ok()?, p.parse().ok()?, n.parse().ok()?))
}

/// The events of one chunk; lines that are not events are skipped (a chunk
/// is the worker's, but a store is not to be trusted blindly).
pub fn parse_lines(text: &str) -> Vec<TrackEvent> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The workers' chunks in the store, in (epoch, part, number) order, with
/// their sizes.
async fn chunk_keys(dest: &Destination, dir: &str) -> Result<Vec<(String, u64)>, DestinationError> {
    let mut keys: Vec<((u64, u32, u32), String, u64)> = dest
        .list(dir, EVENT_CHUNKS_DIR)
        .await?
        .into_iter()
        .filter_map(|(key, size)| Some((parse_chunk_key(&key)?, key, size)))
        .collect();
    keys.sort();
    Ok(keys.into_iter().map(|(_, key, size)| (key, size)).collect())
}

/// Every event the workers stored, segment by segment in (epoch, part)
/// order, each segment's chunks in order; at most `max_bytes` of chunks
/// are read, and the number of chunks left unread is returned beside.
pub async fn read_chunks(
    dest: &Destination,
    dir: &str,
    max_bytes: u64,
) -> Result<(Vec<TrackEvent>, u64), DestinationError> {
    let mut out = Vec::new();
    let (mut read, mut unread) = (0u64, 0u64);
    for (key, size) in chunk_keys(dest, dir).await? {
        if read.saturating_add(size) > max_bytes {
            unread += 1;
            continue;
        }
        read += size;
        let bytes = dest.get(dir, &key).await?;
        out.extend(parse_lines(&String::from_utf8_lossy(&bytes)));
    }
    Ok((out, unread))
}

/// The last events the workers stored, at least `n` of them when there
/// are (whole chunks, read from the newest back): what a live view needs,
/// without reading a long recording's every chunk.
pub async fn read_last_chunks(
    dest: &Destination,
    dir: &str,
    n: usize,
) -> Result<Vec<TrackEvent>, DestinationError> {
    let mut out: Vec<TrackEvent> = Vec::new();
    for (key, _) in chunk_keys(dest, dir).await?.into_iter().rev() {
        if out.len() >= n {
            break;
        }
        let bytes = dest.get(dir, &key).await?;
        let mut older = parse_lines(&String::from_utf8_lossy(&bytes));
        older.append(&mut out);
        out = older;
    }
    Ok(out)
}

/// The size of the joined `events.jsonl`, if it is there.
pub async fn joined_size(dest: &Destination, dir: &str) -> Result<Option<u64>, DestinationError> {
    Ok(dest
        .list(dir, EVENTS_KEY)
        .await?
        .into_iter()
        .find(|(key, _)| key == EVENTS_KEY)
        .map(|(_, size)| size))
}

/// The joined `events.jsonl` of a finalized recording.
pub async fn read_joined(
    dest: &Destination,
    dir: &str,
) -> Result<Vec<TrackEvent>, DestinationError> {
    let bytes = dest.get(dir, EVENTS_KEY).await?;
    Ok(parse_lines(&String::from_utf8_lossy(&bytes)))
}

/// The recording's timeline from its manifest as it stands: the segments
/// with a first frame, a running one reaching to `now`. Finalizing uses the
/// stored media's lengths instead ([`place`] takes either).
pub fn live_timeline(manifest: &Manifest, now: u64) -> (Vec<Span>, Timeline) {
    let spans: Vec<Span> = manifest
        .segments
        .iter()
        .filter_map(|s| {
            let first = s.first_frame_at?;
            let last = s.last_frame_at.unwrap_or(now).max(first);
            Some(Span {
                label: segment_name(s.epoch.0, s.part),
                first_frame_at: first,
                duration_ms: last - first,
            })
        })
        .collect();
    let tl = timeline(&spans, &plan(&spans));
    (spans, tl)
}

/// Keeps the events that belong on the track and gives each its position
/// on the timeline, in time order.
///
/// Where a segment plays in the file, its page speaks for that time: an
/// event another page emitted then (the old page of a make-before-break
/// move, a fenced worker's page) is left out, as its picture is. Events in
/// a gap, before the first frame or after the last are kept where they
/// fall (negative before the first frame).
pub fn place(mut events: Vec<TrackEvent>, spans: &[Span], tl: &Timeline) -> Vec<TrackEvent> {
    let played: Vec<(&str, u64, u64, u64)> = tl
        .segments
        .iter()
        .filter_map(|s| Some((spans.get(s.index)?.label.as_str(), s.from, s.to, s.at_ms)))
        .collect();
    // Every piece of the file with its wall-clock start, in file order.
    let mut pieces: Vec<(u64, u64)> = played.iter().map(|p| (p.1, p.3)).collect();
    pieces.extend(tl.gaps.iter().map(|g| (g.from, g.at_ms)));
    pieces.sort();
    events.retain(|e| {
        !played
            .iter()
            .any(|(label, from, to, _)| *label != e.segment && (*from..*to).contains(&e.wall_ms))
    });
    for e in &mut events {
        let w = e.wall_ms as i64;
        let media = match pieces.iter().rev().find(|(from, _)| *from <= e.wall_ms) {
            Some((from, at)) => *at as i64 + (w - *from as i64),
            None => match pieces.first() {
                Some((from, at)) => *at as i64 + (w - *from as i64),
                None => 0,
            },
        };
        e.media_ms = Some(media);
    }
    events.sort_by(|a, b| {
        (a.media_ms, a.wall_ms, &a.segment, a.seq).cmp(&(b.media_ms, b.wall_ms, &b.segment, b.seq))
    });
    events
}

/// Counts per type, and the events the workers dropped (the sum of their
/// `recfleet.dropped` counts).
pub fn summarize(events: &[TrackEvent]) -> EventsOutput {
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    let mut dropped = 0u64;
    for e in events {
        *counts.entry(e.kind.clone()).or_default() += 1;
        if e.kind == DROPPED_TYPE {
            dropped += serde_json::from_str::<serde_json::Value>(&e.data)
                .ok()
                .and_then(|v| v.get("count")?.as_u64())
                .unwrap_or(0);
        }
    }
    EventsOutput {
        counts,
        total: events.len() as u64,
        dropped,
        ..EventsOutput::default()
    }
}

/// `events.jsonl`: one event per line.
pub fn to_jsonl(events: &[TrackEvent]) -> String {
    let mut out = String::new();
    for e in events {
        if let Ok(line) = serde_json::to_string(e) {
            out.push_str(&line);
            out.push('\n');
        }
    }
    out
}

/// The WebVTT chapters of events of type `kind`: a chapter from each such
/// event to the next (the last to `end_ms`), titled by the event's data.
/// None when there is no such event.
pub fn chapters(events: &[TrackEvent], kind: &str, end_ms: u64) -> Option<String> {
    let marks: Vec<(u64, String)> = events
        .iter()
        .filter(|e| e.kind == kind)
        .map(|e| {
            (
                e.media_ms.unwrap_or(0).max(0) as u64,
                chapter_title(kind, &e.data),
            )
        })
        .collect();
    if marks.is_empty() {
        return None;
    }
    let mut out = String::from("WEBVTT\n");
    let mut n = 0;
    for (i, (start, title)) in marks.iter().enumerate() {
        let end = marks.get(i + 1).map_or(end_ms.max(*start), |next| next.0);
        if end <= *start {
            continue; // Replaced at once by the next one.
        }
        n += 1;
        out.push_str(&format!(
            "\n{n}\n{} --> {}\n{}\n",
            vtt_time(*start),
            vtt_time(end),
            title
        ));
    }
    Some(out)
}

/// A chapter's title: the data's `title`, `text`, `name` or `label`, or the
/// data itself when it is a string or a number, else the type and the data.
fn chapter_title(kind: &str, data: &str) -> String {
    let value: serde_json::Value = serde_json::from_str(data).unwrap_or(serde_json::Value::Null);
    let named = ["title", "text", "name", "label"]
        .iter()
        .find_map(|k| value.get(k).and_then(|v| v.as_str()).map(str::to_string));
    let title = match (&value, named) {
        (_, Some(t)) => t,
        (serde_json::Value::String(s), None) => s.clone(),
        (serde_json::Value::Number(n), None) => format!("{kind} {n}"),
        (serde_json::Value::Null, None) => kind.to_string(),
        (v, None) => format!("{kind} {v}"),
    };
    // A cue's text ends at a blank line, and "-->" would start a cue.
    let title: String = title
        .replace("-->", "->")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    title.chars().take(200).collect()
}

fn vtt_time(ms: u64) -> String {
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use recfleet_protocol::EventSource;

    fn ev(segment: &str, seq: u64, wall_ms: u64, kind: &str, data: &str) -> TrackEvent {
        TrackEvent {
            media_ms: None,
            wall_ms,
            segment: segment.into(),
            seq,
            source: EventSource::Page,
            kind: kind.into(),
            data: data.into(),
        }
    }

    fn span(label: &str, first_frame_at: u64, duration_ms: u64) -> Span {
        Span {
            label: label.into(),
            first_frame_at,
            duration_ms,
        }
    }

    #[test]
    fn events_land_where_their_moment_is_in_the_file_across_a_failover_gap() {
        // e1-p0 plays 10 s, nothing for 6 s, e2-p0 plays 10 s.
        let spans = [
            span("e1-p0", 100_000, 10_000),
            span("e2-p0", 116_000, 10_000),
        ];
        let tl = timeline(&spans, &plan(&spans));
        let events = vec![
            ev("e1-p0", 0, 99_500, "browser.navigation", "{}"),
            ev("e1-p0", 1, 104_000, "slide", "1"),
            ev("e2-p0", 0, 114_000, "browser.navigation", "{}"),
            ev("e2-p0", 1, 120_000, "slide", "2"),
        ];
        let placed = place(events, &spans, &tl);
        let at: Vec<(i64, &str)> = placed
            .iter()
            .map(|e| (e.media_ms.unwrap(), e.segment.as_str()))
            .collect();
        assert_eq!(
            at,
            [
                (-500, "e1-p0"),
                (4000, "e1-p0"),
                (14_000, "e2-p0"),
                (20_000, "e2-p0")
            ]
        );
    }

    #[test]
    fn where_two_pages_overlap_the_one_that_plays_speaks() {
        // A make-before-break move: e2-p0 starts at 105 s while e1-p0 runs
        // to 110 s; the file plays e1-p0 to 105 s, then e2-p0.
        let spans = [
            span("e1-p0", 100_000, 10_000),
            span("e2-p0", 105_000, 10_000),
        ];
        let tl = timeline(&spans, &plan(&spans));
        let events = vec![
            ev("e1-p0", 0, 104_000, "slide", "3"),
            ev("e2-p0", 0, 104_500, "slide", "3"), // while e1-p0 plays: left out
            ev("e1-p0", 1, 107_000, "slide", "4"), // the old page, cut away
            ev("e2-p0", 1, 107_000, "slide", "4"),
        ];
        let placed = place(events, &spans, &tl);
        let kept: Vec<(&str, u64, i64)> = placed
            .iter()
            .map(|e| (e.segment.as_str(), e.seq, e.media_ms.unwrap()))
            .collect();
        assert_eq!(kept, [("e1-p0", 0, 4000), ("e2-p0", 1, 7000)]);
    }

    #[test]
    fn chapters_run_from_each_event_to_the_next() {
        let mut events = vec![
            ev("e1-p0", 0, 0, "slide", r#"{"n":1,"title":"Intro"}"#),
            ev("e1-p0", 1, 0, "stroke", "{}"),
            ev("e1-p0", 2, 0, "slide", "\"Fractions\""),
            ev("e1-p0", 3, 0, "slide", "3"),
        ];
        for (e, at) in events.iter_mut().zip([-20i64, 500, 4000, 3_661_000]) {
            e.media_ms = Some(at);
        }
        let vtt = chapters(&events, "slide", 3_700_000).unwrap();
        assert_eq!(
            vtt,
            "WEBVTT\n\n1\n00:00:00.000 --> 00:00:04.000\nIntro\n\n2\n00:00:04.000 --> 01:01:01.000\nFractions\n\n3\n01:01:01.000 --> 01:01:40.000\nslide 3\n"
        );
        assert_eq!(chapters(&events, "poll", 10), None);
    }

    #[test]
    fn counts_and_drops_are_summed() {
        let events = vec![
            ev("e1-p0", 0, 0, "slide", "1"),
            ev("e1-p0", 1, 0, DROPPED_TYPE, r#"{"count":9000}"#),
            ev("e2-p0", 0, 0, DROPPED_TYPE, r#"{"count":12}"#),
        ];
        let s = summarize(&events);
        assert_eq!(s.total, 3);
        assert_eq!(s.dropped, 9012);
        assert_eq!(s.counts["slide"], 1);
    }

    #[tokio::test]
    async fn the_last_events_are_read_from_the_newest_chunks_only() {
        let root = tempfile::tempdir().unwrap();
        let dest = Destination::open(&format!("file://{}", root.path().display())).unwrap();
        for (seg, n, walls) in [
            ("e1-p0", 0, vec![1u64, 2]),
            ("e1-p0", 1, vec![3]),
            ("e2-p0", 0, vec![4, 5]),
        ] {
            let events: Vec<TrackEvent> =
                walls.iter().map(|w| ev(seg, *w, *w, "tick", "1")).collect();
            dest.put(
                "rec",
                &chunk_key(seg, n),
                bytes::Bytes::from(to_jsonl(&events)),
            )
            .await
            .unwrap();
        }
        let walls = |v: Vec<TrackEvent>| v.iter().map(|e| e.wall_ms).collect::<Vec<_>>();
        assert_eq!(
            walls(read_last_chunks(&dest, "rec", 2).await.unwrap()),
            [4, 5]
        );
        assert_eq!(
            walls(read_last_chunks(&dest, "rec", 3).await.unwrap()),
            [3, 4, 5]
        );
        assert_eq!(
            walls(read_last_chunks(&dest, "rec", 9).await.unwrap()),
            [1, 2, 3, 4, 5]
        );
        let (all, unread) = read_chunks(&dest, "rec", u64::MAX).await.unwrap();
        assert_eq!((walls(all), unread), (vec![1, 2, 3, 4, 5], 0));
        let (some, unread) = read_chunks(&dest, "rec", 1).await.unwrap();
        assert_eq!((some.len(), unread), (0, 3));
    }

    #[test]
    fn chunk_keys_name_their_segment_and_order() {
        assert_eq!(chunk_key("e3-p1", 12), "events/e3-p1/00012.jsonl");
        assert_eq!(
            parse_chunk_key("events/e3-p1/00012.jsonl"),
            Some((3, 1, 12))
        );
        assert_eq!(parse_chunk_key("events/e3-p1/x.jsonl"), None);
        assert_eq!(parse_chunk_key("segments/e3-p1/00012.jsonl"), None);
        assert_eq!(parse_lines("{bad\n\n"), vec![]);
    }
}
