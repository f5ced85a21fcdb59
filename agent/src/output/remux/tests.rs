//! The remux as a user checks its result: ffmpeg builds capture-like segments
//! from `testsrc2` (a picture that changes every frame) with the capture's exact
//! output options, and ffmpeg/ffprobe inspect what comes out.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::process::Command;

use super::args::*;
use super::*;
use crate::output::hls::{parse_local_playlist, vod_playlist, HlsSegment};
use crate::output::stitch::{plan, timeline, Span};

const FPS: u32 = 15;
const PARAMS: SlateParams = SlateParams {
    width: 320,
    height: 180,
    fps: FPS,
    audio: true,
};
const DEADLINE: Duration = Duration::from_secs(60);

/// Captures `secs` of testsrc2 from source time `from` into `root/name/` as
/// the worker's ffmpeg does, and returns `root/name.mp4`, the chunks joined.
async fn capture(root: &Path, name: &str, from: u32, secs: u32, tone: u32) -> PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).expect("fixture dir");
    let video = format!("testsrc2=size=320x180:rate={FPS},trim=start={from},setpts=PTS-STARTPTS");
    // PulseAudio gives the capture stereo; sine alone is mono.
    let audio = format!("sine=frequency={tone}:sample_rate=48000,aformat=channel_layouts=stereo");
    // The capture's own codec options (shared with the worker's encoder).
    let codec = [
        crate::output::codec::video_args(FPS),
        crate::output::codec::audio_args(),
    ]
    .concat()
    .join(" ");
    let mut args: Vec<String> = format!(
        "-hide_banner -nostdin -v error -y -f lavfi -i {video} -f lavfi -i {audio} -t {secs} {codec}"
    )
    .split_whitespace()
    .map(String::from)
    .collect();
    args.extend(crate::output::codec::chunk_output_args(&dir, "local.m3u8"));
    let out = Command::new("ffmpeg")
        .args(&args)
        .output()
        .await
        .expect("ffmpeg runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let local =
        parse_local_playlist(&std::fs::read_to_string(dir.join("local.m3u8")).expect("m3u8"));
    assert!(local.ended);
    let mut bytes = std::fs::read(dir.join(local.init.expect("init listed"))).expect("init");
    for (chunk, _) in &local.chunks {
        bytes.extend(std::fs::read(dir.join(chunk)).expect("chunk"));
    }
    let seg = root.join(format!("{name}.mp4"));
    std::fs::write(&seg, bytes).expect("seg.mp4");
    seg
}

async fn stdout_of(program: &str, args: &[&str]) -> (String, String) {
    let out = Command::new(program)
        .args(args)
        .output()
        .await
        .expect("tool runs");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn s(path: &Path) -> &str {
    path.to_str().expect("utf-8 temp path")
}

async fn duration_ms(path: &Path) -> u64 {
    let (text, _) = stdout_of(
        "ffprobe",
        &[
            "-v",
            "error",
            "-show_entries",
            "format=duration",
            "-of",
            "default=nw=1:nk=1",
            s(path),
        ],
    )
    .await;
    seconds_to_ms(text.trim()).expect("a duration")
}

/// What `ffmpeg -v error` says decoding the whole file: nothing if it is sound.
async fn decode_errors(path: &Path) -> String {
    let (_, err) = stdout_of("ffmpeg", &["-v", "error", "-i", s(path), "-f", "null", "-"]).await;
    err
}

/// Mean luma (0 black .. 255 white) of the frame at `t` seconds.
async fn mean_luma(path: &Path, t: f64) -> f64 {
    let at = format!("{t:.3}");
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-ss", &at, "-i", s(path), "-frames:v", "1"])
        .args(["-f", "rawvideo", "-pix_fmt", "gray", "-"])
        .output()
        .await
        .expect("ffmpeg runs");
    assert!(!out.stdout.is_empty(), "no frame at {at}");
    out.stdout.iter().map(|&b| f64::from(b)).sum::<f64>() / out.stdout.len() as f64
}

/// md5 of each decoded picture, in order, none duplicated or dropped.
async fn frame_hashes(path: &Path) -> Vec<String> {
    let (text, _) = stdout_of(
        "ffmpeg",
        &[
            "-v",
            "error",
            "-i",
            s(path),
            "-map",
            "0:v",
            "-fps_mode",
            "passthrough",
            "-f",
            "framemd5",
            "-",
        ],
    )
    .await;
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit(',').next().map(|h| h.trim().to_string()))
        .collect()
}

/// Presentation times of the video packets, seconds, in order.
async fn video_times(path: &Path) -> Vec<f64> {
    let (text, _) = stdout_of(
        "ffprobe",
        &[
            "-v",
            "error",
            "-select_streams",
            "v",
            "-show_entries",
            "packet=pts_time",
            "-of",
            "csv=p=0",
            s(path),
        ],
    )
    .await;
    let mut times: Vec<f64> = text.lines().filter_map(|l| l.trim().parse().ok()).collect();
    times.sort_by(f64::total_cmp);
    times
}

/// Audio packets: (start, end) in seconds.
async fn audio_packets(path: &Path) -> Vec<(f64, f64)> {
    let (text, _) = stdout_of(
        "ffprobe",
        &[
            "-v",
            "error",
            "-select_streams",
            "a",
            "-show_entries",
            "packet=pts_time,duration_time",
            "-of",
            "csv=p=0",
            s(path),
        ],
    )
    .await;
    text.lines()
        .filter_map(|l| {
            let (pts, dur) = l.split_once(',')?;
            let pts: f64 = pts.parse().ok()?;
            Some((pts, pts + dur.parse::<f64>().ok()?))
        })
        .collect()
}

#[tokio::test]
async fn stitches_a_gap_and_an_overlap() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    // b and c capture the same screen; c starts 2 s before b stops.
    let a = capture(root, "a", 0, 6, 440).await;
    let b = capture(root, "b", 20, 6, 660).await;
    let c = capture(root, "c", 24, 6, 660).await;
    let spans = [
        Span {
            label: "a".into(),
            first_frame_at: 1_000_000,
            duration_ms: 6000,
        },
        // Three seconds nobody captured.
        Span {
            label: "b".into(),
            first_frame_at: 1_009_000,
            duration_ms: 6000,
        },
        // A fenced duplicate inside b: dropped, its file never read.
        Span {
            label: "dup".into(),
            first_frame_at: 1_010_000,
            duration_ms: 2000,
        },
        Span {
            label: "c".into(),
            first_frame_at: 1_013_000,
            duration_ms: 6000,
        },
    ];
    let inputs = [a, b, root.join("missing-dup.mp4"), c];
    let pieces = plan(&spans);
    let t = timeline(&spans, &pieces);
    assert_eq!((t.duration_ms, t.gaps.len()), (19_000, 1));

    let out = root.join("out.mp4");
    let report = remux(&pieces, &inputs, PARAMS, &root.join("work"), &out, DEADLINE)
        .await
        .expect("remux");

    assert!(report.duration_ms.abs_diff(19_000) <= 100, "{report:?}");
    assert_eq!(duration_ms(&out).await, report.duration_ms);
    assert_eq!(report.bytes, std::fs::metadata(&out).expect("out").len());
    assert_eq!(report.sha256.len(), 64);
    assert_eq!(decode_errors(&out).await, "");

    // Black in the gap [6, 9), a picture everywhere else.
    for at in [6.2, 7.5, 8.8] {
        let luma = mean_luma(&out, at).await;
        assert!(luma < 20.0, "gap at {at}s has luma {luma}");
    }
    for at in [0.5, 5.8, 9.2, 12.8, 13.2, 18.5] {
        let luma = mean_luma(&out, at).await;
        assert!(luma > 60.0, "picture at {at}s has luma {luma}");
    }

    // Every frame once, in order, one frame time apart: the overlap played once.
    let times = video_times(&out).await;
    assert!(
        times.len().abs_diff(19 * FPS as usize) <= 2,
        "{} frames",
        times.len()
    );
    let step = 1.0 / f64::from(FPS);
    for w in times.windows(2) {
        let gap = w[1] - w[0];
        assert!(
            gap > 0.5 * step && gap < 1.5 * step,
            "{:.3}s to {:.3}s",
            w[0],
            w[1]
        );
    }
    // Captured frames stay on the first segment's frame grid: the pieces before
    // them moved them by no more than jitter, so the file keeps wall time.
    let grid = times[0];
    for &t in times.iter().filter(|t| !(6.0..9.0).contains(*t)) {
        let off = (t - grid) * f64::from(FPS);
        assert!(
            (off - off.round()).abs() < 0.15,
            "frame at {t:.3}s is off the grid"
        );
    }
    assert!(
        times.iter().any(|t| (t - grid - 9.0).abs() < 0.005),
        "b starts at 9 s"
    );
    assert!(
        times.iter().any(|t| (t - grid - 13.0).abs() < 0.005),
        "c starts at 13 s"
    );
    let hashes = frame_hashes(&out).await;
    assert_eq!(hashes.len(), times.len());
    for (n, w) in hashes.windows(2).enumerate() {
        let at = times[n + 1];
        // The slate's black frames are all alike, and that is right.
        if !(6.0..9.1).contains(&at) {
            assert_ne!(w[0], w[1], "frame at {at:.3}s repeats");
        }
    }

    // Sound from start to end, slate included, with no hole.
    let packets = audio_packets(&out).await;
    let (first, last) = (
        packets.first().expect("audio"),
        packets.last().expect("audio"),
    );
    assert!(
        first.0 <= 0.1 && last.1 >= 18.9,
        "audio {first:?}..{last:?}"
    );
    for w in packets.windows(2) {
        assert!(w[1].0 - w[0].1 < 0.1, "audio hole {:?} {:?}", w[0], w[1]);
    }
}

#[tokio::test]
async fn refuses_a_slate_the_capture_cannot_join() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let a = capture(tmp.path(), "a", 0, 2, 440).await;
    let spans = [
        Span {
            label: "a".into(),
            first_frame_at: 0,
            duration_ms: 2000,
        },
        Span {
            label: "b".into(),
            first_frame_at: 3000,
            duration_ms: 2000,
        },
    ];
    let wrong = SlateParams { fps: 10, ..PARAMS };
    let out = tmp.path().join("out.mp4");
    let err = remux(
        &plan(&spans),
        &[a.clone(), a],
        wrong,
        tmp.path(),
        &out,
        DEADLINE,
    )
    .await
    .expect_err("a 10 fps slate in a 15 fps capture");
    assert!(matches!(err, RemuxError::Incompatible { .. }), "{err}");
    assert!(!out.exists());
}

#[tokio::test]
async fn deadline_stops_ffmpeg() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let pieces = [Piece::Slate {
        duration_ms: 600_000,
        from: 0,
        to: 600_000,
    }];
    let out = tmp.path().join("out.mp4");
    let err = remux(
        &pieces,
        &[],
        PARAMS,
        tmp.path(),
        &out,
        Duration::from_millis(300),
    )
    .await
    .expect_err("ten minutes of slate in 300 ms");
    assert!(matches!(err, RemuxError::Deadline(_)), "{err}");
    assert!(!out.exists());
}

#[tokio::test]
async fn bad_plans_are_errors() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("out.mp4");
    let err = remux(&[], &[], PARAMS, tmp.path(), &out, DEADLINE).await;
    assert!(matches!(err, Err(RemuxError::Empty)));
    let pieces = [Piece::Segment {
        index: 2,
        outpoint_ms: None,
    }];
    let err = remux(&pieces, &[], PARAMS, tmp.path(), &out, DEADLINE).await;
    assert!(matches!(
        err,
        Err(RemuxError::MissingInput { index: 2, .. })
    ));
    let tools = Tools {
        ffmpeg: "/nonexistent/ffmpeg".into(),
        ..Tools::default()
    };
    let pieces = [Piece::Slate {
        duration_ms: 1000,
        from: 0,
        to: 1000,
    }];
    let err = remux_with(&tools, &pieces, &[], PARAMS, tmp.path(), &out, DEADLINE).await;
    assert!(matches!(err, Err(RemuxError::Spawn { .. })));
}

#[tokio::test]
async fn vod_playlist_over_captured_chunks_plays() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    capture(root, "e1p0", 0, 6, 440).await;
    capture(root, "e2p0", 30, 5, 660).await;
    let mut segments = Vec::new();
    for name in ["e1p0", "e2p0"] {
        let text = std::fs::read_to_string(root.join(name).join("local.m3u8")).expect("m3u8");
        let local = parse_local_playlist(&text);
        segments.push(HlsSegment {
            init: format!("{name}/{}", local.init.expect("init")),
            chunks: local
                .chunks
                .into_iter()
                .map(|(c, ms)| (format!("{name}/{c}"), ms))
                .collect(),
        });
    }
    let sum: u64 = segments.iter().flat_map(|s| &s.chunks).map(|c| c.1).sum();
    assert_eq!(sum, 11_000);
    let playlist = root.join("vod.m3u8");
    std::fs::write(&playlist, vod_playlist(&segments)).expect("write playlist");

    let ms = duration_ms(&playlist).await;
    assert!(ms.abs_diff(sum) <= 150, "playlist plays {ms} ms of {sum}");
    assert_eq!(decode_errors(&playlist).await, "");
}

#[test]
fn concat_list_quotes_and_cuts() {
    let entries = [
        (PathBuf::from("/w/it's.mp4"), None),
        (PathBuf::from("/w/b.mp4"), Some(4000)),
        (PathBuf::from("/w/slate-001.mp4"), Some(2345)),
    ];
    let list = concat_list(&entries).expect("list");
    assert_eq!(
        list,
        "ffconcat version 1.0\nfile '/w/it'\\''s.mp4'\nfile '/w/b.mp4'\noutpoint 4.000\n\
         file '/w/slate-001.mp4'\noutpoint 2.345\n"
    );
    let bad = [(PathBuf::from("/w/a\nfile /etc/passwd"), None)];
    assert!(matches!(concat_list(&bad), Err(RemuxError::BadPath(_))));
}

#[test]
fn slate_is_encoded_like_the_capture() {
    let args: Vec<String> = slate_args(PARAMS, 3000, Path::new("/w/s.mp4"))
        .into_iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let line = args.join(" ");
    assert!(
        line.contains(
            "-i color=black:size=320x180:rate=15 -f lavfi -i anullsrc=r=48000:cl=stereo -t 3.067 "
        ),
        "{line}"
    );
    assert!(line.contains("-vf scale=flags=area,format=yuv420p,setsar=1 -c:v libx264 -preset veryfast -tune zerolatency -pix_fmt yuv420p -r 15 -crf 26 -g 30 -bf 0 -force_key_frames expr:gte(t,n_forced*2) -c:a aac -b:a 128k -f mp4 /w/s.mp4"), "{line}");
    let silent = slate_args(
        SlateParams {
            audio: false,
            ..PARAMS
        },
        3000,
        Path::new("/w/s.mp4"),
    );
    assert!(!silent
        .iter()
        .any(|a| a == "anullsrc=r=48000:cl=stereo" || a == "aac"));
}

#[test]
fn helpers() {
    assert_eq!(tail("héllo\nworld\n".as_bytes(), 5), "world");
    assert_eq!(tail(b"ok", 100), "ok");
    assert_eq!(
        part_path(Path::new("/r/out.mp4")),
        PathBuf::from("/r/.out.mp4.part")
    );
    assert_eq!(seconds(2345), "2.345");
}

#[test]
fn streams_compare_without_durations() {
    let a = "codec_name=h264|codec_type=video|duration=6.000000|extradata_hash=SHA256:5c\n\
             codec_name=aac|codec_type=audio|duration=4.032000|extradata_hash=SHA256:b3\n";
    let b = "codec_name=h264|codec_type=video|duration=3.066667|extradata_hash=SHA256:5c\n\
             codec_name=aac|codec_type=audio|duration=3.067000|extradata_hash=SHA256:b3\n";
    let (a, b) = (parse_streams(a), parse_streams(b));
    assert_eq!(a.signature, b.signature);
    assert_eq!((a.video_ms, b.video_ms), (Some(6000), Some(3067)));
    let mono = parse_streams("codec_type=audio|channels=1|duration=N/A\n");
    assert_eq!(mono.signature, "codec_type=audio|channels=1");
    assert_eq!(mono.video_ms, None);
}
