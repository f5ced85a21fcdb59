//! What a person checks in a recording, measured with ffprobe and ffmpeg:
//! the picture size, that there is sound, that the picture moves, which
//! tone plays and which color dominates.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context};

/// The streams and duration of a media file.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    /// Width and height of the video stream.
    pub video: Option<(u32, u32)>,
    /// Whether there is an audio stream.
    pub audio: bool,
    /// Container duration, seconds.
    pub duration: f64,
}

/// Reads streams and duration with ffprobe; an unplayable file is an error.
pub fn probe(file: &Path) -> anyhow::Result<Probe> {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_type,width,height:format=duration",
            "-of",
            "json",
        ])
        .arg(file)
        .output()
        .context("ffprobe")?;
    if !out.status.success() {
        bail!(
            "ffprobe cannot read {}: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let streams = v["streams"].as_array().cloned().unwrap_or_default();
    let video = streams
        .iter()
        .find(|s| s["codec_type"] == "video")
        .map(|s| {
            (
                s["width"].as_u64().unwrap_or(0) as u32,
                s["height"].as_u64().unwrap_or(0) as u32,
            )
        });
    let audio = streams.iter().any(|s| s["codec_type"] == "audio");
    let duration = v["format"]["duration"]
        .as_str()
        .and_then(|d| d.parse().ok())
        .unwrap_or(0.0);
    Ok(Probe {
        video,
        audio,
        duration,
    })
}

pub use recfleet_testkit::segments::join_segment;

/// MD5 of each video frame sampled at `fps`.
pub fn frame_hashes(file: &Path, fps: u32) -> anyhow::Result<Vec<String>> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(file)
        .args(["-an", "-vf", &format!("fps={fps}"), "-f", "framemd5", "-"])
        .output()
        .context("ffmpeg framemd5")?;
    if !out.status.success() {
        bail!(
            "ffmpeg cannot decode {}: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit(',').next().map(|h| h.trim().to_string()))
        .collect())
}

/// The longest run of identical consecutive samples, in seconds, when the
/// samples were taken at `fps`; ignores the first `skip_secs` (page load).
pub fn longest_freeze(hashes: &[String], fps: u32, skip_secs: u32) -> f64 {
    let skip = (fps * skip_secs) as usize;
    let mut longest = 0usize;
    let mut run = 0usize;
    for w in hashes.iter().skip(skip).collect::<Vec<_>>().windows(2) {
        if w[0] == w[1] {
            run += 1;
            longest = longest.max(run);
        } else {
            run = 0;
        }
    }
    longest as f64 / fps as f64
}

/// Mono 48 kHz samples of the audio track on the file's timeline: sample
/// `t * 48000` is what a player plays at `t` s (silence where the track has
/// a hole or starts late), so a place in the picture and in the sound agree.
pub fn audio_samples(file: &Path) -> anyhow::Result<Vec<f32>> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(file)
        .args(["-vn", "-af", "aresample=async=1:first_pts=0"])
        .args(["-ac", "1", "-ar", "48000", "-f", "s16le", "-"])
        .output()
        .context("ffmpeg audio decode")?;
    if !out.status.success() {
        bail!(
            "ffmpeg cannot decode audio of {}: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out
        .stdout
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]) as f32 / 32768.0)
        .collect())
}

/// RMS level in dBFS (−inf for digital silence).
pub fn rms_db(samples: &[f32]) -> f64 {
    if samples.is_empty() {
        return f64::NEG_INFINITY;
    }
    let mean_sq = samples.iter().map(|s| (*s as f64).powi(2)).sum::<f64>() / samples.len() as f64;
    10.0 * mean_sq.log10()
}

/// Power of one frequency (Goertzel), for telling two tones apart.
pub fn tone_power(samples: &[f32], hz: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * hz / 48_000.0;
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for x in samples {
        let s0 = *x as f64 + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    (s1 * s1 + s2 * s2 - coeff * s1 * s2) / samples.len().max(1) as f64
}

/// The average color of the frame at `at_secs`, as RGB.
pub fn mean_color(file: &Path, at_secs: f64) -> anyhow::Result<(u8, u8, u8)> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-ss", &format!("{at_secs}"), "-i"])
        .arg(file)
        .args([
            "-frames:v",
            "1",
            "-vf",
            "scale=1:1:flags=area",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "-",
        ])
        .output()
        .context("ffmpeg frame")?;
    match out.stdout.as_slice() {
        [r, g, b, ..] => Ok((*r, *g, *b)),
        _ => bail!("no frame at {at_secs}s in {}", file.display()),
    }
}

/// Where the demo page's sound and picture disagree: the page beeps every
/// second and lights its beep dot (the circle left of "440 Hz") at the same
/// moment. Returns, for each lit dot, how far (seconds) the nearest beep
/// onset in the audio lies before it; a capture in sync gives a frame or
/// two (the dot is painted by a timer), one with the sound ahead gives
/// half a second. `dot` is the dot's top-left pixel at the file's size.
pub fn beep_leads(file: &Path, dot: (u32, u32)) -> anyhow::Result<Vec<f64>> {
    let samples = audio_samples(file)?;
    let window = 240; // 5 ms
    let mut onsets = Vec::new();
    let mut was_on = false;
    for (n, w) in samples.chunks(window).enumerate() {
        let on = rms_db(w) > -30.0;
        if on && !was_on {
            onsets.push((n * window) as f64 / 48_000.0);
        }
        was_on = on;
    }
    let fps = 50.0;
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(file)
        .args([
            "-an",
            "-vf",
            &format!("fps={fps}:start_time=0,crop=8:8:{}:{}", dot.0, dot.1),
            "-f",
            "rawvideo",
            "-pix_fmt",
            "gray",
            "-",
        ])
        .output()
        .context("ffmpeg dot crop")?;
    let mut leads = Vec::new();
    let mut was_lit = true; // the first lit frame may be mid-beep
    for (n, px) in out.stdout.chunks_exact(64).enumerate() {
        let lit = px.iter().map(|p| *p as u32).sum::<u32>() / 64 > 110;
        if lit && !was_lit {
            let at = n as f64 / fps;
            if let Some(onset) = onsets
                .iter()
                .copied()
                .min_by(|a, b| (at - a).abs().partial_cmp(&(at - b).abs()).unwrap())
            {
                leads.push(at - onset);
            }
        }
        was_lit = lit;
    }
    Ok(leads)
}

/// When the picture turns bright: for each frame whose average brightness
/// (luma) rises above the middle from a frame below it, that frame's time
/// in seconds from the file's start. The event track's test page flashes
/// white on black.
pub fn flash_onsets(file: &Path) -> anyhow::Result<Vec<f64>> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(file)
        .args([
            "-an",
            "-vf",
            "scale=64:-2,signalstats,metadata=print:key=lavfi.signalstats.YAVG:file=-",
            "-f",
            "null",
            "-",
        ])
        .output()
        .context("ffmpeg signalstats")?;
    if !out.status.success() {
        bail!("ffmpeg: {}", String::from_utf8_lossy(&out.stderr));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut onsets = Vec::new();
    let (mut pts, mut bright) = (None::<f64>, false);
    for line in text.lines() {
        if let Some(t) = line.split("pts_time:").nth(1) {
            pts = t.split_whitespace().next().and_then(|v| v.parse().ok());
        } else if let Some(v) = line.strip_prefix("lavfi.signalstats.YAVG=") {
            let now_bright = v.trim().parse::<f64>().unwrap_or(0.0) > 128.0;
            if let (true, false, Some(t)) = (now_bright, bright, pts) {
                onsets.push(t);
            }
            bright = now_bright;
        }
    }
    Ok(onsets)
}

/// Frames whose content comes back after something else was shown: the
/// same moment shown twice. Consecutive equal frames (a still picture) are
/// one run; positions inside `skip` (a slate, all black) are ignored.
pub fn repeated_frames(hashes: &[String], fps: u32, skip: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let mut seen: std::collections::HashMap<&str, f64> = Default::default();
    let mut repeats = Vec::new();
    let mut prev: Option<&str> = None;
    for (n, h) in hashes.iter().enumerate() {
        let t = n as f64 / f64::from(fps);
        if skip.iter().any(|(a, b)| t >= *a && t < *b) {
            prev = None;
            continue;
        }
        if prev != Some(h.as_str()) {
            if let Some(first) = seen.get(h.as_str()) {
                repeats.push((*first, t));
            }
            seen.insert(h, t);
        }
        prev = Some(h);
    }
    repeats
}
