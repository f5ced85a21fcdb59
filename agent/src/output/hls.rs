//! HLS playlists, pure text: the VOD playlist over a recording's captured
//! chunks, and ffmpeg's own live `local.m3u8` as the worker reads it.

use std::fmt::Write as _;

/// One captured segment as HLS: its init section and its media chunks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HlsSegment {
    /// URI of `init.mp4`, relative to the playlist.
    pub init: String,
    /// URI (relative to the playlist) and duration in ms of each chunk.
    pub chunks: Vec<(String, u64)>,
}

/// An HLS VOD playlist playing `segments` in order. Each segment is a separate
/// encode with its own init section and timestamps from zero, hence an
/// `EXT-X-DISCONTINUITY` between them. Segments without chunks are left out.
pub fn vod_playlist(segments: &[HlsSegment]) -> String {
    let longest_ms = segments
        .iter()
        .flat_map(|s| s.chunks.iter().map(|c| c.1))
        .max()
        .unwrap_or(0);
    // The spec requires each EXTINF, rounded to an integer, to be at most the
    // target; ceil satisfies that, and a target of 0 is invalid.
    let target = longest_ms.div_ceil(1000).max(1);
    let mut out = String::new();
    out.push_str("#EXTM3U\n#EXT-X-VERSION:7\n");
    // Writing to a String cannot fail.
    let _ = writeln!(out, "#EXT-X-TARGETDURATION:{target}");
    out.push_str("#EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-INDEPENDENT-SEGMENTS\n");
    let mut first = true;
    for segment in segments.iter().filter(|s| !s.chunks.is_empty()) {
        if !first {
            out.push_str("#EXT-X-DISCONTINUITY\n");
        }
        first = false;
        let _ = writeln!(out, "#EXT-X-MAP:URI=\"{}\"", segment.init);
        for (uri, ms) in &segment.chunks {
            let _ = writeln!(out, "#EXTINF:{}.{:03},\n{uri}", ms / 1000, ms % 1000);
        }
    }
    out.push_str("#EXT-X-ENDLIST\n");
    out
}

/// The playlist's segments as the stitched file plays them. `pieces` is
/// [`super::stitch::plan`] over the same segments; `segments[i]` is span
/// `i` in HLS form with each chunk's media start (None: it has no init
/// section stored). A segment another one covers (the second copy of a
/// recording with redundancy 2, a fenced duplicate) is left out, and a cut
/// one ends with the chunk the cut falls in: HLS cuts only between chunks,
/// so up to one chunk (about 2 s) plays twice there, never a whole copy.
pub fn as_played(
    segments: &[Option<(HlsSegment, Vec<u64>)>],
    pieces: &[super::stitch::Piece],
) -> Vec<HlsSegment> {
    pieces
        .iter()
        .filter_map(|p| match p {
            super::stitch::Piece::Segment { index, outpoint_ms } => {
                let (seg, starts) = segments.get(*index)?.as_ref()?;
                let mut seg = seg.clone();
                if let Some(cut) = outpoint_ms {
                    let keep = starts.iter().take_while(|s| *s < cut).count();
                    seg.chunks.truncate(keep);
                }
                Some(seg)
            }
            super::stitch::Piece::Slate { .. } => None,
        })
        .collect()
}

/// What ffmpeg's `local.m3u8` says so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalPlaylist {
    /// The init section's URI, once listed.
    pub init: Option<String>,
    /// Complete chunks: URI and duration in ms. ffmpeg lists a chunk only
    /// once it has finished writing it.
    pub chunks: Vec<(String, u64)>,
    /// `#EXT-X-ENDLIST` seen: ffmpeg has finished the segment.
    pub ended: bool,
}

/// Reads ffmpeg's live playlist. Lenient: unknown tags are ignored, and a
/// chunk without a readable `#EXTINF` counts as 0 ms rather than being lost.
pub fn parse_local_playlist(text: &str) -> LocalPlaylist {
    let mut out = LocalPlaylist::default();
    let mut pending_ms: Option<u64> = None;
    for line in text.lines().map(str::trim) {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("#EXTINF:") {
            let secs = rest.split(',').next().unwrap_or("");
            pending_ms = Some(seconds_to_ms(secs).unwrap_or(0));
        } else if let Some(rest) = line.strip_prefix("#EXT-X-MAP:") {
            out.init = attribute(rest, "URI");
        } else if line == "#EXT-X-ENDLIST" {
            out.ended = true;
        } else if !line.starts_with('#') {
            out.chunks
                .push((line.to_string(), pending_ms.take().unwrap_or(0)));
        }
    }
    out
}

/// Decimal seconds ("2.000000", "1.9") to ms, rounded; `None` if unreadable.
pub(super) fn seconds_to_ms(text: &str) -> Option<u64> {
    let text = text.trim();
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Milliseconds from the first three digits, rounded by the fourth.
    let mut digits = frac.bytes().map(|b| u64::from(b - b'0'));
    let mut ms = 0;
    for _ in 0..3 {
        ms = ms * 10 + digits.next().unwrap_or(0);
    }
    if digits.next().is_some_and(|d| d >= 5) {
        ms += 1;
    }
    whole.checked_mul(1000)?.checked_add(ms)
}

/// The value of `name` in an attribute list (`URI="init.mp4",BYTERANGE=...`).
fn attribute(list: &str, name: &str) -> Option<String> {
    let start = list.find(&format!("{name}="))? + name.len() + 1;
    let rest = &list[start..];
    match rest.strip_prefix('"') {
        Some(quoted) => quoted.split('"').next().map(str::to_string),
        None => rest.split(',').next().map(str::to_string),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ffmpeg 5.1's local.m3u8 while capturing, and once finished.
    const LIVE: &str = "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:2\n\
        #EXT-X-MEDIA-SEQUENCE:0\n#EXT-X-INDEPENDENT-SEGMENTS\n\
        #EXT-X-MAP:URI=\"init.mp4\"\n#EXTINF:2.000000,\nc00000.m4s\n\
        #EXTINF:2.000000,\nc00001.m4s\n";

    #[test]
    fn live_playlist_lists_complete_chunks() {
        let p = parse_local_playlist(LIVE);
        assert_eq!(p.init.as_deref(), Some("init.mp4"));
        assert_eq!(
            p.chunks,
            vec![
                ("c00000.m4s".to_string(), 2000),
                ("c00001.m4s".to_string(), 2000)
            ]
        );
        assert!(!p.ended);
    }

    #[test]
    fn endlist_means_finished() {
        let text = format!("{LIVE}#EXTINF:1.066667,\r\nc00002.m4s\r\n#EXT-X-ENDLIST\r\n");
        let p = parse_local_playlist(&text);
        assert!(p.ended);
        assert_eq!(p.chunks.len(), 3);
        assert_eq!(p.chunks[2], ("c00002.m4s".to_string(), 1067));
    }

    #[test]
    fn empty_or_garbage_playlist_is_empty() {
        assert_eq!(parse_local_playlist(""), LocalPlaylist::default());
        let p = parse_local_playlist("#EXTINF:abc,\nc0.m4s\n#EXT-X-MAP:URI=\"i.mp4\n");
        assert_eq!(p.chunks, vec![("c0.m4s".to_string(), 0)]);
        assert_eq!(p.init.as_deref(), Some("i.mp4"));
    }

    #[test]
    fn seconds_parse_to_rounded_ms() {
        assert_eq!(seconds_to_ms("2"), Some(2000));
        assert_eq!(seconds_to_ms("2.000000"), Some(2000));
        assert_eq!(seconds_to_ms("1.9"), Some(1900));
        assert_eq!(seconds_to_ms("0.0665"), Some(67));
        assert_eq!(seconds_to_ms(".5"), Some(500));
        assert_eq!(seconds_to_ms("-1"), None);
        assert_eq!(seconds_to_ms("1.2e3"), None);
        assert_eq!(seconds_to_ms("99999999999999999999"), None);
    }

    #[test]
    fn vod_playlist_maps_each_segment_with_discontinuities() {
        let segments = [
            HlsSegment {
                init: "e1p0/init.mp4".into(),
                chunks: vec![
                    ("e1p0/c00000.m4s".into(), 2000),
                    ("e1p0/c00001.m4s".into(), 1066),
                ],
            },
            HlsSegment {
                init: "e2p0/init.mp4".into(),
                chunks: vec![],
            },
            HlsSegment {
                init: "e3p0/init.mp4".into(),
                chunks: vec![("e3p0/c00000.m4s".into(), 2001)],
            },
        ];
        let expected = "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:3\n\
            #EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-INDEPENDENT-SEGMENTS\n\
            #EXT-X-MAP:URI=\"e1p0/init.mp4\"\n#EXTINF:2.000,\ne1p0/c00000.m4s\n\
            #EXTINF:1.066,\ne1p0/c00001.m4s\n#EXT-X-DISCONTINUITY\n\
            #EXT-X-MAP:URI=\"e3p0/init.mp4\"\n#EXTINF:2.001,\ne3p0/c00000.m4s\n\
            #EXT-X-ENDLIST\n";
        assert_eq!(vod_playlist(&segments), expected);
    }

    #[test]
    fn empty_vod_playlist_is_still_valid() {
        let text = vod_playlist(&[]);
        assert!(text.contains("#EXT-X-TARGETDURATION:1\n"));
        assert!(text.ends_with("#EXT-X-ENDLIST\n"));
        assert!(!text.contains("DISCONTINUITY"));
    }

    #[test]
    fn the_playlist_plays_a_moment_once_when_two_copies_recorded_it() {
        use crate::output::stitch::{plan, Span};
        let seg = |name: &str, n: u64| {
            let chunks: Vec<(String, u64)> =
                (0..n).map(|i| (format!("{name}/{i}.m4s"), 2000)).collect();
            let starts = (0..n).map(|i| i * 2000).collect();
            Some((
                HlsSegment {
                    init: format!("{name}/init.mp4"),
                    chunks,
                },
                starts,
            ))
        };
        // The first copy from 0 to 10 s (its worker died), the second from
        // 0.5 s to 20 s: the first plays to 0.5 s (its first chunk), then
        // the second to the end; a third copy from 12 s to 19 s is covered.
        let spans = [
            Span {
                label: "e1-p0".into(),
                first_frame_at: 0,
                duration_ms: 10_000,
            },
            Span {
                label: "e2-p0".into(),
                first_frame_at: 500,
                duration_ms: 19_500,
            },
            Span {
                label: "e3-p0".into(),
                first_frame_at: 12_000,
                duration_ms: 7_000,
            },
        ];
        let hls = [seg("e1", 5), seg("e2", 10), seg("e3", 4)];
        let played = as_played(&hls, &plan(&spans));
        assert_eq!(played.len(), 2, "{played:#?}");
        assert_eq!(played[0].chunks.len(), 1);
        assert_eq!(played[1].init, "e2/init.mp4");
        assert_eq!(played[1].chunks.len(), 10);
        let text = vod_playlist(&played);
        assert!(!text.contains("e3/"), "{text}");
        assert_eq!(text.matches("#EXT-X-DISCONTINUITY").count(), 1);
    }
}
