//! The capture encoder: ffmpeg grabbing the slot's X display and the audio
//! sink's monitor into HLS fMP4 chunks (`init.mp4`, `c00000.m4s`, ...) of
//! two seconds, listed in `local.m3u8` as each closes, so that the worker
//! uploads them while the recording goes on (see `super::upload`). A killed
//! ffmpeg loses only the chunk it was writing.

use std::path::Path;

use recfleet_protocol::spec::RecordingSpec;

use crate::output::codec;

/// The ffmpeg arguments for one part, writing its chunks into `dir`.
pub fn ffmpeg_args(
    spec: &RecordingSpec,
    display: &str,
    audio_source: &str,
    dir: &Path,
) -> Vec<String> {
    let size = format!("{}x{}", spec.viewport.width, spec.viewport.height);
    let fps = spec.fps.to_string();
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
        "1024",
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
    a.extend(codec::video_args(u32::from(spec.fps)));
    if spec.audio {
        // Silence from the first frame until the first sample, so that the
        // audio track spans the video's and chunks join end to end.
        a.extend(["-af", "aresample=async=1:first_pts=0"].map(String::from));
        a.extend(codec::audio_args());
    }
    a.extend(codec::chunk_output_args(dir, super::upload::LOCAL_PLAYLIST));
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
    fn parses_progress_blocks() {
        let mut p = ProgressParser::default();
        let text = "frame=0\nfps=0.00\nout_time_us=N/A\ntotal_size=48\nprogress=continue\n\
                    frame=31\nfps=15.02\nbitrate=100kbits/s\nout_time_us=2066667\ntotal_size=90123\nprogress=continue\n\
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
        assert!(joined.ends_with("-y /o/seg/local.m3u8"));
        spec.audio = false;
        let args = ffmpeg_args(&spec, ":101", "rec.monitor", Path::new("/o/seg"));
        assert!(!args.iter().any(|a| a == "pulse" || a == "aac"));
    }
}
