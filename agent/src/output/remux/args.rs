//! ffmpeg's arguments and inputs for the remux, and reading ffprobe's answers:
//! pure text, so they can be checked without running ffmpeg.

use crate::output::codec;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::{RemuxError, SlateParams};
use crate::output::hls::seconds_to_ms;

/// What a file's streams say about joining it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Probed {
    /// Everything that must match across the joined files (durations apart).
    pub(super) signature: String,
    /// The video stream's length, ms.
    pub(super) video_ms: Option<u64>,
}

/// Reads `probe_streams`' output (`key=value|key=value` per stream).
pub(super) fn parse_streams(text: &str) -> Probed {
    let mut lines = Vec::new();
    let mut video_ms = None;
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let mut fields = Vec::new();
        let mut duration = None;
        for field in line.split('|') {
            match field.strip_prefix("duration=") {
                Some(value) => duration = seconds_to_ms(value),
                None => fields.push(field),
            }
        }
        if fields.contains(&"codec_type=video") && video_ms.is_none() {
            video_ms = duration;
        }
        lines.push(fields.join("|"));
    }
    Probed {
        signature: lines.join("\n"),
        video_ms,
    }
}

/// ffmpeg arguments for a black, silent slate of `duration_ms`, encoded with
/// the capture's options so that its codec configuration matches.
pub(super) fn slate_args(p: SlateParams, duration_ms: u64, out: &Path) -> Vec<OsString> {
    let fps = p.fps.max(1);
    let mut args: Vec<String> = vec![
        "-hide_banner".into(),
        "-nostdin".into(),
        "-v".into(),
        "error".into(),
        "-y".into(),
        "-f".into(),
        "lavfi".into(),
        "-i".into(),
        format!("color=black:size={}x{}:rate={fps}", p.width, p.height),
    ];
    if p.audio {
        args.extend(["-f", "lavfi", "-i", "anullsrc=r=48000:cl=stereo"].map(String::from));
    }
    // One frame more than the gap; the concat list cuts it at the gap's end.
    let frame_ms = 1000 / u64::from(fps) + 1;
    args.extend(["-t".into(), seconds(duration_ms.saturating_add(frame_ms))]);
    args.extend(codec::video_args(fps));
    if p.audio {
        args.extend(codec::audio_args());
    }
    let mut args: Vec<OsString> = args.into_iter().map(OsString::from).collect();
    args.extend(["-f".into(), "mp4".into(), out.into()]);
    args
}

/// ffmpeg arguments that join the pieces of `list` into `out`.
pub(super) fn join_args(list: &Path, out: &Path) -> Vec<OsString> {
    let mut args: Vec<OsString> = [
        "-hide_banner",
        "-nostdin",
        "-v",
        "error",
        "-y",
        "-f",
        "concat",
        "-safe",
        "0",
    ]
    .map(OsString::from)
    .to_vec();
    args.extend(["-i".into(), list.into()]);
    // faststart: the index goes first, so a browser can start playing the
    // file before it has all of it.
    args.extend(
        [
            "-map",
            "0",
            "-c",
            "copy",
            "-movflags",
            "+faststart",
            "-f",
            "mp4",
        ]
        .map(OsString::from),
    );
    args.push(out.into());
    args
}

/// A concat demuxer list: each file, and where it is cut.
pub(super) fn concat_list(entries: &[(PathBuf, Option<u64>)]) -> Result<String, RemuxError> {
    let mut list = String::from("ffconcat version 1.0\n");
    for (path, outpoint_ms) in entries {
        let text = path.to_string_lossy();
        if text.contains(['\n', '\r']) {
            return Err(RemuxError::BadPath(path.clone()));
        }
        // Inside single quotes nothing is special but the quote itself.
        list.push_str(&format!("file '{}'\n", text.replace('\'', r"'\''")));
        if let Some(ms) = outpoint_ms {
            list.push_str(&format!("outpoint {}\n", seconds(*ms)));
        }
    }
    Ok(list)
}

pub(super) fn seconds(ms: u64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}
