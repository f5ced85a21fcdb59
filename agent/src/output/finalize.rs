//! Finalizing a recording: read back what its destination holds, make
//! `recording.mp4` (one file over every segment, gaps as slates, overlaps
//! cut) and `index.m3u8` (HLS over every segment), and store both. The
//! segments are taken from the store's listing, not from what workers said:
//! a chunk a worker stored and died before reporting is still used, and
//! sizes and checksums are those of the bytes read back.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use recfleet_protocol::manifest::{Chunk, FileGap, Manifest, Outputs, StoredFile};
use recfleet_protocol::spec::RecordingSpec;
use recfleet_protocol::Epoch;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::destination::{Destination, DestinationError};
use super::events;
use super::hls::{as_played, vod_playlist, HlsSegment};
use super::remux::{remux_with, video_duration_ms, RemuxError, SlateParams, Tools};
use super::stitch::{plan, timeline, Span, Timeline};
use recfleet_protocol::events::{CHAPTERS_KEY, EVENTS_KEY, JOIN_MAX_BYTES};
use recfleet_protocol::EventsOutput;

/// The stitched file's key in the recording's directory.
pub const RECORDING_KEY: &str = "recording.mp4";
/// The playlist's key.
pub const PLAYLIST_KEY: &str = "index.m3u8";
/// The manifest's key.
pub const MANIFEST_KEY: &str = "manifest.json";

/// A segment's directory in the recording's directory.
pub fn segment_dir(epoch: Epoch, part: u32) -> String {
    format!("segments/e{}-p{part}", epoch.0)
}

/// A segment as found in the destination.
#[derive(Debug, Clone)]
pub struct StoredSegment {
    /// Placement.
    pub epoch: Epoch,
    /// Part.
    pub part: u32,
    /// Its objects, init first.
    pub chunks: Vec<Chunk>,
    /// Bytes of the segment as one file (init and chunks).
    pub bytes: u64,
    /// SHA-256 of the segment as one file, hex.
    pub sha256: String,
    /// Its video's length as stored, ms: with the first frame's time, when
    /// its last stored frame was captured.
    pub duration_ms: u64,
}

/// Why finalizing failed.
#[derive(Debug, thiserror::Error)]
pub enum FinalizeError {
    /// The destination failed.
    #[error("destination: {0}")]
    Destination(#[from] DestinationError),
    /// ffmpeg failed.
    #[error("{0}")]
    Remux(#[from] RemuxError),
    /// A local file.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Nothing captured is in the store.
    #[error("no captured segment is in the destination")]
    Nothing,
}

/// What finalizing makes.
#[derive(Debug, Clone)]
pub struct FinalizeOptions {
    /// ffmpeg and ffprobe.
    pub tools: Tools,
    /// Make recording.mp4 (else only the playlist and the manifest: a
    /// platform that plays HLS saves the coordinator's CPU).
    pub stitch: bool,
    /// ffmpeg's limit for one recording.
    pub deadline: Duration,
}

impl Default for FinalizeOptions {
    fn default() -> Self {
        FinalizeOptions {
            tools: Tools::default(),
            stitch: true,
            deadline: Duration::from_secs(30 * 60),
        }
    }
}

/// Makes and stores the outputs, and returns what the store holds.
/// `outputs.error` says why recording.mp4 cannot be made (for good: nothing
/// stored, segments that cannot be joined). A store that fails (away, slow,
/// refusing) is an `Err`: nothing was decided, try again later.
pub async fn finalize(
    dest: &Destination,
    spec: &RecordingSpec,
    manifest: &Manifest,
    work: &Path,
    options: &FinalizeOptions,
) -> Result<(Outputs, Vec<StoredSegment>), FinalizeError> {
    let dir = spec.output_dir();
    let mut outputs = Outputs {
        location: dest.location(dir),
        ..Outputs::default()
    };
    let _ = tokio::fs::remove_dir_all(work).await;
    let mut stored = Vec::new();
    let result = async {
        tokio::fs::create_dir_all(work).await?;
        make(
            dest,
            spec,
            manifest,
            work,
            options,
            &mut stored,
            &mut outputs,
        )
        .await
    }
    .await;
    let _ = tokio::fs::remove_dir_all(work).await;
    match result {
        Ok(()) => Ok((outputs, stored)),
        Err(e) if e.is_transient() => Err(e),
        Err(e) => {
            tracing::warn!(recording = %spec.id, error = %e, "recording.mp4 cannot be made");
            outputs.error = Some(e.to_string());
            Ok((outputs, stored))
        }
    }
}

impl FinalizeError {
    /// The store or the local disk failed: the same finalization may work
    /// later. (ffmpeg's verdict on the media and an empty store do not
    /// change by trying again.)
    pub fn is_transient(&self) -> bool {
        matches!(self, FinalizeError::Destination(_) | FinalizeError::Io(_))
    }
}

async fn make(
    dest: &Destination,
    spec: &RecordingSpec,
    manifest: &Manifest,
    work: &Path,
    options: &FinalizeOptions,
    stored: &mut Vec<StoredSegment>,
    outputs: &mut Outputs,
) -> Result<(), FinalizeError> {
    let tools = &options.tools;
    let dir = spec.output_dir();
    let listing = dest.list(dir, "segments").await?;
    let groups = group_by_segment(&listing);
    let mut spans = Vec::new();
    let mut inputs: Vec<PathBuf> = Vec::new();
    let mut hls = Vec::new();
    let mut segments: Vec<_> = manifest
        .segments
        .iter()
        .filter_map(|s| Some((s.first_frame_at?, s)))
        .collect();
    segments.sort_by_key(|(at, s)| (*at, s.epoch, s.part));
    for (first_frame_at, seg) in segments {
        let Some(objects) = groups.get(&(seg.epoch.0, seg.part)) else {
            continue;
        };
        let n = inputs.len();
        let file = work.join(format!("seg-{n:03}.mp4"));
        let (mut chunks, bytes, sha256) = download(dest, dir, objects, &file).await?;
        // Media times are what the worker measured; a chunk it never
        // reported (it died first) follows the one before it.
        let mut at = 0u64;
        for c in chunks.iter_mut() {
            if let Some(known) = seg.chunks.iter().find(|k| k.key == c.key) {
                c.media_start_ms = known.media_start_ms;
                c.duration_ms = known.duration_ms;
            } else if c.seq.is_some() {
                c.media_start_ms = at;
            }
            at = c.media_start_ms + c.duration_ms;
        }
        let Some(duration_ms) = video_duration_ms(tools, &file).await? else {
            continue;
        };
        hls.push(chunks.first().is_some_and(|c| c.seq.is_none()).then(|| {
            let media = chunks.iter().filter(|c| c.seq.is_some());
            (
                HlsSegment {
                    init: chunks[0].key.clone(),
                    chunks: media
                        .clone()
                        .map(|c| (c.key.clone(), c.duration_ms.max(1)))
                        .collect(),
                },
                media.map(|c| c.media_start_ms).collect::<Vec<u64>>(),
            )
        }));
        spans.push(Span {
            label: events::segment_name(seg.epoch.0, seg.part),
            first_frame_at,
            duration_ms,
        });
        inputs.push(file);
        stored.push(StoredSegment {
            epoch: seg.epoch,
            part: seg.part,
            chunks,
            bytes,
            sha256,
            duration_ms,
        });
    }
    let pieces = plan(&spans);
    let tl = timeline(&spans, &pieces);
    // The event track first: it is small, and a recording whose media
    // cannot be joined still has it.
    outputs.events = Some(Box::new(store_events(dest, spec, &spans, &tl).await?));
    if spans.is_empty() {
        return match options.stitch {
            true => Err(FinalizeError::Nothing),
            false => Ok(()),
        };
    }
    let played = as_played(&hls, &pieces);
    if !played.is_empty() {
        outputs.playlist = Some(put_text(dest, dir, PLAYLIST_KEY, vod_playlist(&played), 0).await?);
    }
    if !options.stitch {
        return Ok(());
    }
    let slate = SlateParams {
        width: u32::from(spec.viewport.width),
        height: u32::from(spec.viewport.height),
        fps: u32::from(spec.fps),
        audio: spec.audio,
    };
    let out = work.join(RECORDING_KEY);
    let report = remux_with(
        tools,
        &pieces,
        &inputs,
        slate,
        &work.join("remux"),
        &out,
        options.deadline,
    )
    .await?;
    dest.put_file(dir, RECORDING_KEY, &out).await?;
    outputs.recording = Some(StoredFile {
        url: dest.object_url(dir, RECORDING_KEY),
        key: RECORDING_KEY.into(),
        bytes: report.bytes,
        sha256: report.sha256,
        duration_ms: report.duration_ms,
    });
    outputs.gaps_in_file = tl
        .gaps
        .iter()
        .map(|g| FileGap {
            at_ms: g.at_ms,
            duration_ms: g.duration_ms,
            from: g.from,
            to: g.to,
        })
        .collect();
    Ok(())
}

/// Joins the workers' event chunks into `events.jsonl`, each event placed
/// on the file's timeline, and writes the chapters file the spec asks for.
async fn store_events(
    dest: &Destination,
    spec: &RecordingSpec,
    spans: &[Span],
    tl: &Timeline,
) -> Result<EventsOutput, FinalizeError> {
    let dir = spec.output_dir();
    let (read, unread) = events::read_chunks(dest, dir, JOIN_MAX_BYTES).await?;
    if unread > 0 {
        tracing::warn!(
            recording = %spec.id, unread,
            "the event track is larger than a coordinator joins at once: its last chunks stay in events/ only"
        );
    }
    let events = events::place(read, spans, tl);
    let mut out = events::summarize(&events);
    out.unread_chunks = unread;
    if events.is_empty() {
        return Ok(out);
    }
    out.file = Some(put_text(dest, dir, EVENTS_KEY, events::to_jsonl(&events), 0).await?);
    if let Some(kind) = &spec.events.chapters {
        if let Some(vtt) = events::chapters(&events, kind, tl.duration_ms) {
            out.chapters = Some(put_text(dest, dir, CHAPTERS_KEY, vtt, tl.duration_ms).await?);
        }
    }
    Ok(out)
}

/// Stores a text object and says what was stored.
async fn put_text(
    dest: &Destination,
    dir: &str,
    key: &str,
    text: String,
    duration_ms: u64,
) -> Result<StoredFile, FinalizeError> {
    let stored = StoredFile {
        url: dest.object_url(dir, key),
        key: key.into(),
        bytes: text.len() as u64,
        sha256: hex(&Sha256::digest(text.as_bytes())),
        duration_ms,
    };
    dest.put(dir, key, bytes::Bytes::from(text)).await?;
    Ok(stored)
}

/// One object of a segment as listed: (key, size, chunk number or None for
/// the init or a single-file capture).
type Listed = (String, u64, Option<u32>);

/// Listing entries by (epoch, part), each group init first then chunks in
/// order. Keys look like `segments/e3-p0/init.mp4`, `.../c00012.m4s`, or
/// `.../capture.mp4` (an external capture: one file).
fn group_by_segment(listing: &[(String, u64)]) -> BTreeMap<(u64, u32), Vec<Listed>> {
    let mut out: BTreeMap<(u64, u32), Vec<Listed>> = BTreeMap::new();
    for (key, size) in listing {
        let mut parts = key.split('/');
        let (Some("segments"), Some(seg), Some(name), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let Some((epoch, part)) = seg
            .strip_prefix('e')
            .and_then(|s| s.split_once("-p"))
            .and_then(|(e, p)| Some((e.parse::<u64>().ok()?, p.parse::<u32>().ok()?)))
        else {
            continue;
        };
        let seq = name
            .strip_prefix('c')
            .and_then(|n| n.strip_suffix(".m4s"))
            .and_then(|n| n.parse::<u32>().ok());
        let is_whole = name == "init.mp4" || name == "capture.mp4";
        if seq.is_none() && !is_whole {
            continue;
        }
        out.entry((epoch, part))
            .or_default()
            .push((key.clone(), *size, seq));
    }
    for v in out.values_mut() {
        // The init (no number) first, then chunks by number.
        v.sort_by_key(|(_, _, seq)| seq.map_or(-1, i64::from));
    }
    out
}

/// Reads a segment's objects into one local file; returns each object as
/// read (size and checksum of the bytes read back), and the whole file's.
async fn download(
    dest: &Destination,
    dir: &str,
    objects: &[Listed],
    file: &Path,
) -> Result<(Vec<Chunk>, u64, String), FinalizeError> {
    let mut out = tokio::fs::File::create(file).await?;
    let mut whole = Sha256::new();
    let mut total = 0u64;
    let mut chunks = Vec::with_capacity(objects.len());
    for (key, _, seq) in objects {
        let bytes = dest.get(dir, key).await?;
        whole.update(&bytes);
        out.write_all(&bytes).await?;
        total += bytes.len() as u64;
        chunks.push(Chunk {
            seq: *seq,
            key: key.clone(),
            bytes: bytes.len() as u64,
            sha256: hex(&Sha256::digest(&bytes)),
            media_start_ms: 0,
            duration_ms: 0,
        });
    }
    out.flush().await?;
    Ok((chunks, total, hex(&whole.finalize())))
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_objects_by_segment_init_first() {
        let listing = vec![
            ("segments/e1-p0/c00001.m4s".to_string(), 10),
            ("segments/e1-p0/c00000.m4s".to_string(), 10),
            ("segments/e1-p0/init.mp4".to_string(), 5),
            ("segments/e2-p1/capture.mp4".to_string(), 50),
            ("segments/e2-p1/local.m3u8".to_string(), 1),
            ("segments/junk".to_string(), 1),
            ("manifest.json".to_string(), 1),
        ];
        let g = group_by_segment(&listing);
        let keys: Vec<_> = g[&(1, 0)]
            .iter()
            .map(|(k, _, s)| (k.as_str(), *s))
            .collect();
        assert_eq!(
            keys,
            vec![
                ("segments/e1-p0/init.mp4", None),
                ("segments/e1-p0/c00000.m4s", Some(0)),
                ("segments/e1-p0/c00001.m4s", Some(1)),
            ]
        );
        assert_eq!(g[&(2, 1)].len(), 1);
        assert_eq!(g.len(), 2);
    }
}
