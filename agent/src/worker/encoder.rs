//! The capture encoder: ffmpeg grabbing the slot's X display and the audio
//! sink's monitor into HLS fMP4 chunks (`init.mp4`, `c00000.m4s`, ...) of
//! two seconds, listed in `local.m3u8` as each closes, so that the worker
//! uploads them while the recording goes on (see `super::upload`). A killed
//! ffmpeg loses only the chunk it was writing.
//!
//! The same filter graph analyses a small copy of the picture and sound
//! for media health (`super::health`) and writes a thumbnail every two
//! seconds. Those files are named relative to ffmpeg's working directory,
//! the part's directory, so that no path needs escaping inside the graph.

use std::path::Path;

use recfleet_protocol::spec::RecordingSpec;

use super::health::{AUDIO_FILE, SILENCE_DB, THUMBNAIL_FILE, VIDEO_FILE};
use crate::output::codec;

/// Below this mean frame difference (dB) a picture counts as unchanged:
/// a static screen grabs identical frames (no difference at all), while a
/// ticking clock alone stays above it.
const FREEZE_NOISE_DB: i32 = -70;

/// Whether the encoder also analyses what it encodes and writes the
/// thumbnail. The worker always does; the benchmark measures both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Analysis {
    /// Encode, analyse, thumbnail (the worker).
    On,
    /// Encode only (the benchmark's baseline).
    Off,
}

/// The filter graph: the encoded picture and sound, their analysis at two
/// pictures and two sound levels a second, and the thumbnail.
fn filter_graph(spec: &RecordingSpec) -> String {
    let policy = spec.health.resolve();
    let mut g = format!(
        "[0:v]{vf},split=2[venc][vprobe];\
         [vprobe]fps=2,scale=320:-2,split=2[vlook][vthumb];\
         [vlook]freezedetect=n={FREEZE_NOISE_DB}dB:d={frozen},blackdetect=d=0:pix_th=0.10,\
         metadata=mode=print:file={VIDEO_FILE}:direct=1,nullsink;\
         [vthumb]fps=0.5[thumb]",
        vf = codec::VIDEO_FILTER,
        frozen = policy.frozen_secs,
    );
    if spec.audio {
        // Silence from the first frame until the first sample, so that the
        // audio track spans the video's and chunks join end to end.
        g.push_str(&format!(
            ";[1:a]aresample=async=1:first_pts=0,asplit=2[aenc][aprobe];\
             [aprobe]asetnsamples=n=24000:p=0,\
             astats=metadata=1:reset=1:measure_perchannel=none:measure_overall=RMS_level,\
             silencedetect=n={SILENCE_DB}dB:d={silent},\
             ametadata=mode=print:file={AUDIO_FILE}:direct=1,anullsink",
            silent = policy.silent_secs,
        ));
    }
    g
}

/// The ffmpeg arguments for one part, writing its chunks into `dir`.
pub fn ffmpeg_args(
    spec: &RecordingSpec,
    display: &str,
    audio_source: &str,
    dir: &Path,
) -> Vec<String> {
    let mut a = input_args(spec, display, audio_source);
    a.extend(output_args(spec, dir, Analysis::On));
    a
}

/// Raw frames x11grab may queue for an encoder that falls behind.
///
/// Each queued frame holds a shared-memory segment of width x height x 4
/// bytes, mapped by Xvfb as well. With 1024 (ffmpeg's usual advice) two
/// 720p recordings on two cores queued 35 MB/s each and the kernel killed
/// their Xvfb at the slot's 2 GiB limit after a minute (measured
/// 2026-12-02). So the queue holds [`GRAB_QUEUE_SECS`] of frames, at most
/// [`GRAB_QUEUE_BYTES`]: 120 frames (442 MB) at 720p15, 64 at 1080p. Past
/// that the grab waits and the encoder repeats frames (flagged) instead
/// of memory growing. Eight seconds let an encoder starved while other
/// slots start catch up without losing the moment of a stop.
pub fn grab_queue_frames(v: recfleet_protocol::spec::Viewport, fps: u8) -> u32 {
    let frame = u64::from(v.width) * u64::from(v.height) * 4;
    let by_time = GRAB_QUEUE_SECS * u64::from(fps.max(1));
    let by_bytes = GRAB_QUEUE_BYTES / frame.max(1);
    by_time.min(by_bytes).clamp(8, 1024) as u32
}

/// See [`grab_queue_frames`].
pub const GRAB_QUEUE_SECS: u64 = 8;

/// See [`grab_queue_frames`].
pub const GRAB_QUEUE_BYTES: u64 = 512 << 20;

/// The global options and the inputs: the display and the sink's monitor.
pub fn input_args(spec: &RecordingSpec, display: &str, audio_source: &str) -> Vec<String> {
    let size = format!("{}x{}", spec.viewport.width, spec.viewport.height);
    let fps = spec.fps.to_string();
    let grab_queue = grab_queue_frames(spec.viewport, spec.fps).to_string();
    let mut a: Vec<String> = vec![
        // Exit on an input error (a dead PulseAudio) instead of carrying on
        // with a file that silently stops growing.
        "-xerror",
        "-hide_banner",
        "-nostdin",
        "-nostats",
        // info: the input's start time (the wall clock of the first frame,
        // x11grab stamps frames with it) is read from the log.
        "-loglevel",
        "info",
        "-progress",
        "pipe:1",
        "-stats_period",
        "0.25",
        "-thread_queue_size",
        &grab_queue,
        "-f",
        "x11grab",
        "-draw_mouse",
        "0",
        "-framerate",
        &fps,
        "-video_size",
        &size,
        "-i",
        display,
    ]
    .into_iter()
    .map(String::from)
    .collect();
    if spec.audio {
        a.extend(
            [
                // Both inputs stamp with the wall clock, but ffmpeg starts
                // each input at zero on its own: PulseAudio opens 0.5-0.65 s
                // after x11grab's first frame (measured), which put the
                // sound half a second ahead of the picture. -isync keeps
                // the audio on the video's clock.
                "-isync",
                "0",
                "-thread_queue_size",
                "1024",
                "-f",
                "pulse",
                "-sample_rate",
                "48000",
                "-channels",
                "2",
                "-i",
                audio_source,
            ]
            .map(String::from),
        );
    }
    a
}

/// What follows the inputs (input 0 the picture, input 1 the sound when
/// the spec has sound): filters, encoders, the chunks in `dir` and, with
/// [`Analysis::On`], the analysis files and the thumbnail in ffmpeg's
/// working directory.
pub fn output_args(spec: &RecordingSpec, dir: &Path, analysis: Analysis) -> Vec<String> {
    let mut a = Vec::new();
    match analysis {
        Analysis::On => {
            a.extend(["-filter_complex".to_string(), filter_graph(spec)]);
            a.extend(["-map", "[venc]"].map(String::from));
            a.extend(codec::video_encoder_args(u32::from(spec.fps)));
            if spec.audio {
                a.extend(["-map", "[aenc]"].map(String::from));
                a.extend(codec::audio_args());
            }
        }
        Analysis::Off => {
            a.extend(codec::video_args(u32::from(spec.fps)));
            if spec.audio {
                a.extend(["-af", "aresample=async=1:first_pts=0"].map(String::from));
                a.extend(codec::audio_args());
            }
        }
    }
    a.extend(codec::chunk_output_args(dir, super::upload::LOCAL_PLAYLIST));
    if analysis == Analysis::Off {
        return a;
    }
    // The thumbnail: one file, replaced whole (renamed into place) so that
    // a reader never sees half a picture.
    a.extend(
        [
            "-map",
            "[thumb]",
            "-f",
            "image2",
            "-update",
            "1",
            "-atomic_writing",
            "1",
            "-q:v",
            "6",
            "-y",
            THUMBNAIL_FILE,
        ]
        .map(String::from),
    );
    a
}

/// The wall clock of the first frame, from ffmpeg's log: x11grab stamps
/// frames with the wall clock, and ffmpeg prints the first input's start
/// (`Duration: N/A, start: 1796160129.433639, ...`). Accurate to a frame,
/// where "now minus the media time" carries the encoder's delay.
pub fn first_frame_at(log: &str) -> Option<u64> {
    let line = log
        .lines()
        .find(|l| l.contains("Duration:") && l.contains("start:"))?;
    let secs: f64 = line
        .split("start:")
        .nth(1)?
        .split(',')
        .next()?
        .trim()
        .parse()
        .ok()?;
    (secs > 1e9).then(|| (secs * 1000.0).round() as u64)
}

/// What ffmpeg's `-progress` output says, one block at a time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Frames encoded so far.
    pub frames: u64,
    /// Current rate, thousandths of a frame per second.
    pub fps_milli: u32,
    /// Encoded media time, ms.
    pub out_time_ms: u64,
    /// Bytes written so far.
    pub total_size: u64,
    /// Frames that repeat the previous picture (the grab came late and
    /// ffmpeg filled the constant rate).
    pub dup_frames: u64,
    /// Whether ffmpeg said `progress=end`.
    pub ended: bool,
}

/// Parses `-progress` lines (`key=value`); a block ends with `progress=...`.
#[derive(Debug, Default)]
pub struct ProgressParser {
    current: Progress,
}

impl ProgressParser {
    /// Feeds one line; returns a complete block when the line ends one.
    pub fn line(&mut self, line: &str) -> Option<Progress> {
        let (key, value) = line.trim().split_once('=')?;
        let value = value.trim();
        match key {
            "frame" => self.current.frames = value.parse().unwrap_or(self.current.frames),
            "fps" => {
                if let Ok(f) = value.parse::<f64>() {
                    self.current.fps_milli =
                        (f * 1000.0).round().clamp(0.0, u32::MAX as f64) as u32;
                }
            }
            // out_time_us (and the misnamed out_time_ms) are microseconds;
            // "N/A" before the first frame.
            "out_time_us" => {
                if let Ok(us) = value.parse::<u64>() {
                    self.current.out_time_ms = us / 1000;
                }
            }
            "dup_frames" => {
                self.current.dup_frames = value.parse().unwrap_or(self.current.dup_frames)
            }
            "total_size" => {
                self.current.total_size = value.parse().unwrap_or(self.current.total_size)
            }
            "progress" => {
                self.current.ended = value == "end";
                return Some(self.current);
            }
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use recfleet_protocol::RecordingId;

    #[test]
    fn the_grab_queue_is_bounded_in_time_and_bytes() {
        use recfleet_protocol::spec::Viewport;
        let frames = |width, height, fps| grab_queue_frames(Viewport { width, height }, fps);
        assert_eq!(frames(1280, 720, 15), 120);
        assert_eq!(frames(1280, 720, 30), 145);
        assert_eq!(frames(1920, 1080, 15), 64);
        assert_eq!(frames(3840, 2160, 30), 16);
        assert_eq!(frames(640, 360, 1), 8);
        for (w, h) in [(640, 360), (1280, 720), (1920, 1080)] {
            for fps in [15, 30, 60] {
                let n = u64::from(frames(w, h, fps));
                assert!(n * u64::from(w) * u64::from(h) * 4 <= GRAB_QUEUE_BYTES);
                assert!(n <= GRAB_QUEUE_SECS * u64::from(fps));
            }
        }
    }

    #[test]
    fn parses_progress_blocks() {
        let mut p = ProgressParser::default();
        let text = "frame=0\nfps=0.00\nout_time_us=N/A\ntotal_size=48\nprogress=continue\n\
                    frame=31\nfps=15.02\nbitrate=100kbits/s\nout_time_us=2066667\ntotal_size=90123\ndup_frames=3\nprogress=continue\n\
                    frame=45\nfps=15.00\nout_time_us=3000000\ntotal_size=120000\nprogress=end\n";
        let blocks: Vec<Progress> = text.lines().filter_map(|l| p.line(l)).collect();
        assert_eq!(blocks.len(), 3);
        assert_eq!(blocks[0].frames, 0);
        assert_eq!(
            blocks[1],
            Progress {
                frames: 31,
                fps_milli: 15020,
                out_time_ms: 2066,
                total_size: 90123,
                dup_frames: 3,
                ended: false
            }
        );
        assert!(blocks[2].ended);
        assert_eq!(blocks[2].frames, 45);
    }

    #[test]
    fn reads_the_first_frame_time_from_the_log() {
        let log = "Input #0, x11grab, from ':77':\n  Duration: N/A, start: 1796160129.433639, bitrate: 36864 kb/s\n";
        assert_eq!(first_frame_at(log), Some(1_796_160_129_434));
        assert_eq!(first_frame_at("nothing yet"), None);
    }

    #[test]
    fn args_follow_the_spec() {
        let mut spec = RecordingSpec::new(RecordingId::new("r").unwrap(), "http://x/");
        spec.fps = 30;
        let args = ffmpeg_args(&spec, ":101", "rec.monitor", Path::new("/o/seg"));
        let joined = args.join(" ");
        assert!(joined.contains("-framerate 30 -video_size 1280x720 -i :101"));
        assert!(joined.contains("-f pulse"));
        assert!(joined.contains("-g 60 -bf 0"));
        assert!(joined.contains("-hls_segment_filename /o/seg/c%05d.m4s"));
        assert!(joined.contains("-y /o/seg/local.m3u8"));
        assert!(joined.ends_with("-y thumb.jpg"));
        assert!(joined.contains("freezedetect=n=-70dB:d=10"));
        assert!(joined.contains("silencedetect=n=-50dB:d=10"));
        spec.audio = false;
        let args = ffmpeg_args(&spec, ":101", "rec.monitor", Path::new("/o/seg"));
        assert!(!args
            .iter()
            .any(|a| a == "pulse" || a == "aac" || a.contains("[1:a]")));
    }
}
