//! Writes the planned pieces as one MP4 with ffmpeg, without re-encoding a
//! captured frame: slates are encoded with the capture's own parameters, and
//! everything is joined by the concat demuxer with `-c copy`.
//!
//! Why `-c copy` across separate encodes works, and what guards it: the
//! concat demuxer keeps the first file's codec configuration (H.264 SPS/PPS in
//! `avcC`, AAC `esds`) for the whole output. Checked by hand with ffmpeg 5.1 /
//! x264 164: a `testsrc2` encode and a `color=black` encode with the capture's
//! options and the same size, fps and channel layout have byte-identical
//! `avcC` and `esds` (x264 derives SPS/PPS from its parameters, not the
//! picture; with CRF the PPS init QP is fixed at 26), and their concat decodes
//! clean. A slate that differs (another preset, mono audio) also concatenates
//! and decodes with no error at all, yet carries the wrong configuration, so a
//! clean decode proves nothing. Hence [`remux`] compares every file's stream
//! parameters and extradata hashes (`ffprobe -show_data_hash`) before joining,
//! and refuses with [`RemuxError::Incompatible`] instead of writing a file
//! that plays wrong.

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;
use tokio::process::Command;

use super::hls::seconds_to_ms;
use super::stitch::Piece;
use args::{concat_list, join_args, parse_streams, slate_args};

mod args;

/// What the capture encodes, so a slate can be encoded the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlateParams {
    /// Picture width, pixels.
    pub width: u32,
    /// Picture height, pixels.
    pub height: u32,
    /// Frames per second.
    pub fps: u32,
    /// Whether the capture has an audio track.
    pub audio: bool,
}

/// The written file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemuxReport {
    /// Its duration as ffprobe reads it, ms.
    pub duration_ms: u64,
    /// Its size.
    pub bytes: u64,
    /// SHA-256 of its bytes, lowercase hex.
    pub sha256: String,
}

/// Why no file was written.
#[derive(Debug, thiserror::Error)]
pub enum RemuxError {
    /// The plan has no pieces.
    #[error("nothing to remux: the plan has no pieces")]
    Empty,
    /// A segment piece names an input that was not given.
    #[error("piece {piece} plays input {index}, but only {inputs} inputs were given")]
    MissingInput {
        /// Position of the piece in the plan.
        piece: usize,
        /// The input it names.
        index: usize,
        /// How many inputs were given.
        inputs: usize,
    },
    /// A path that ffmpeg's concat list cannot hold.
    #[error("path {0:?} contains a line break, which a concat list cannot hold")]
    BadPath(PathBuf),
    /// Reading or writing a file around ffmpeg failed.
    #[error("cannot {what} {path:?}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// ffmpeg or ffprobe could not be started.
    #[error("cannot run {program:?}: {source}")]
    Spawn {
        /// The program.
        program: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// ffmpeg or ffprobe exited with an error.
    #[error("{step} failed ({status}): {stderr}")]
    Tool {
        /// What it was doing.
        step: String,
        /// Its exit status.
        status: String,
        /// The end of what it wrote to stderr.
        stderr: String,
    },
    /// A file's streams differ from the first piece's, so joining them without
    /// re-encoding would write a file that plays wrong.
    #[error("{path:?} cannot be joined to {first:?} without re-encoding: its streams are {got:?}, expected {expected:?}")]
    Incompatible {
        /// The first piece's file.
        first: PathBuf,
        /// The file that differs.
        path: PathBuf,
        /// The first piece's streams, as ffprobe describes them.
        expected: String,
        /// This file's streams.
        got: String,
    },
    /// ffprobe's answer could not be read.
    #[error("cannot read ffprobe's duration of {path:?}: {text:?}")]
    Probe {
        /// The file probed.
        path: PathBuf,
        /// What ffprobe printed.
        text: String,
    },
    /// The deadline passed; the running ffmpeg was killed.
    #[error("remux did not finish within {0:?}; ffmpeg was stopped")]
    Deadline(Duration),
}

/// The programs to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tools {
    /// ffmpeg.
    pub ffmpeg: PathBuf,
    /// ffprobe.
    pub ffprobe: PathBuf,
}

impl Default for Tools {
    fn default() -> Self {
        Tools {
            ffmpeg: "ffmpeg".into(),
            ffprobe: "ffprobe".into(),
        }
    }
}

/// [`remux_with`] the `ffmpeg` and `ffprobe` found on `PATH`.
pub async fn remux(
    pieces: &[Piece],
    inputs: &[PathBuf],
    slate: SlateParams,
    work_dir: &Path,
    out: &Path,
    deadline: Duration,
) -> Result<RemuxReport, RemuxError> {
    remux_with(
        &Tools::default(),
        pieces,
        inputs,
        slate,
        work_dir,
        out,
        deadline,
    )
    .await
}

/// Writes `pieces` (from [`super::stitch::plan`]; `inputs` holds one
/// `seg.mp4` per span) to `out`, with slates and lists in `work_dir`. Past
/// `deadline` the running ffmpeg is killed. `out` appears only when complete.
pub async fn remux_with(
    tools: &Tools,
    pieces: &[Piece],
    inputs: &[PathBuf],
    slate: SlateParams,
    work_dir: &Path,
    out: &Path,
    deadline: Duration,
) -> Result<RemuxReport, RemuxError> {
    let part = part_path(out);
    let result = tokio::time::timeout(
        deadline,
        write(tools, pieces, inputs, slate, work_dir, out, &part),
    )
    .await
    .unwrap_or(Err(RemuxError::Deadline(deadline)));
    if result.is_err() {
        // Best effort: a half-written file is of no use to anyone.
        let _ = tokio::fs::remove_file(&part).await;
    }
    result
}

async fn write(
    tools: &Tools,
    pieces: &[Piece],
    inputs: &[PathBuf],
    slate: SlateParams,
    work_dir: &Path,
    out: &Path,
    part: &Path,
) -> Result<RemuxReport, RemuxError> {
    if pieces.is_empty() {
        return Err(RemuxError::Empty);
    }
    tokio::fs::create_dir_all(work_dir)
        .await
        .map_err(|source| io_error("create", work_dir, source))?;
    let mut entries: Vec<(PathBuf, Option<u64>)> = Vec::with_capacity(pieces.len());
    let mut expected: Option<(PathBuf, String)> = None;
    for (n, piece) in pieces.iter().enumerate() {
        let (path, outpoint_ms) = match *piece {
            Piece::Segment { index, outpoint_ms } => {
                let path = inputs.get(index).ok_or(RemuxError::MissingInput {
                    piece: n,
                    index,
                    inputs: inputs.len(),
                })?;
                (absolute(path)?, outpoint_ms)
            }
            Piece::Slate { duration_ms, .. } => {
                let path = absolute(&work_dir.join(format!("slate-{n:03}.mp4")))?;
                run(
                    &tools.ffmpeg,
                    &slate_args(slate, duration_ms, &path),
                    "encoding a slate",
                )
                .await?;
                // The slate is encoded a little long and cut here, so the
                // next piece starts exactly when the gap ends.
                (path, Some(duration_ms))
            }
        };
        let probed = parse_streams(&probe_streams(tools, &path).await?);
        match &expected {
            None => expected = Some((path.clone(), probed.signature)),
            Some((first, signature)) if *signature != probed.signature => {
                return Err(RemuxError::Incompatible {
                    first: first.clone(),
                    path,
                    expected: signature.clone(),
                    got: probed.signature,
                });
            }
            Some(_) => {}
        }
        // A piece's length in the file is its video's length. The capture's
        // HLS fMP4 muxer starts video at the AAC priming delay (1024/48000 s,
        // 21 ms), so the file's own end lies 21 ms past that; left to itself the
        // concat demuxer would start every later piece 21 ms further late.
        entries.push((path, outpoint_ms.or(probed.video_ms)));
    }

    let list = work_dir.join("concat.txt");
    tokio::fs::write(&list, concat_list(&entries)?)
        .await
        .map_err(|source| io_error("write", &list, source))?;
    run(&tools.ffmpeg, &join_args(&list, part), "joining the pieces").await?;
    tokio::fs::rename(part, out)
        .await
        .map_err(|source| io_error("rename into", out, source))?;
    report(tools, out).await
}

/// The length of a file's video stream, ms (what a piece lasts in the
/// stitched file).
pub async fn video_duration_ms(tools: &Tools, path: &Path) -> Result<Option<u64>, RemuxError> {
    Ok(parse_streams(&probe_streams(tools, path).await?).video_ms)
}

/// ffprobe's description of each stream, one line each: codec, picture or
/// sound format, extradata hash, and duration.
async fn probe_streams(tools: &Tools, path: &Path) -> Result<String, RemuxError> {
    let mut args: Vec<OsString> = [
        "-v",
        "error",
        "-show_data_hash",
        "sha256",
        "-show_entries",
        "stream=codec_type,codec_name,profile,width,height,pix_fmt,r_frame_rate,\
         sample_rate,channels,duration,extradata_hash",
        "-of",
        "compact=p=0",
    ]
    .map(OsString::from)
    .to_vec();
    args.push(path.into());
    let output = run(&tools.ffprobe, &args, "probing a piece").await?;
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

async fn report(tools: &Tools, out: &Path) -> Result<RemuxReport, RemuxError> {
    let mut args: Vec<OsString> = [
        "-v",
        "error",
        "-show_entries",
        "format=duration",
        "-of",
        "default=nw=1:nk=1",
    ]
    .map(OsString::from)
    .to_vec();
    args.push(out.into());
    let output = run(&tools.ffprobe, &args, "probing the output").await?;
    let text = String::from_utf8_lossy(&output.stdout).trim().to_string();
    let duration_ms = seconds_to_ms(&text).ok_or_else(|| RemuxError::Probe {
        path: out.to_path_buf(),
        text: text.clone(),
    })?;
    let (bytes, sha256) = hash_file(out).await?;
    Ok(RemuxReport {
        duration_ms,
        bytes,
        sha256,
    })
}

async fn hash_file(path: &Path) -> Result<(u64, String), RemuxError> {
    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(|source| io_error("open", path, source))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut bytes = 0u64;
    loop {
        let n = file
            .read(&mut buf)
            .await
            .map_err(|source| io_error("read", path, source))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        bytes += n as u64;
    }
    let hex = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok((bytes, hex))
}

/// Runs a program to completion; killed if the caller's future is dropped
/// (the deadline), so no ffmpeg outlives a remux.
async fn run(program: &Path, args: &[OsString], step: &str) -> Result<Output, RemuxError> {
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|source| RemuxError::Spawn {
            program: program.to_path_buf(),
            source,
        })?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(RemuxError::Tool {
            step: step.to_string(),
            status: output.status.to_string(),
            stderr: tail(&output.stderr, 2000),
        })
    }
}

/// The last `max` characters of a program's output.
fn tail(bytes: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    let skip = text.chars().count().saturating_sub(max);
    text.chars().skip(skip).collect()
}

/// The concat list resolves relative paths against its own folder, not ours.
fn absolute(path: &Path) -> Result<PathBuf, RemuxError> {
    std::path::absolute(path).map_err(|source| io_error("resolve", path, source))
}

/// Where `out` is written until complete: beside it, so the rename is atomic.
fn part_path(out: &Path) -> PathBuf {
    let mut name = OsString::from(".");
    name.push(out.file_name().unwrap_or_default());
    name.push(".part");
    out.with_file_name(name)
}

fn io_error(what: &'static str, path: &Path, source: io::Error) -> RemuxError {
    RemuxError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests;
