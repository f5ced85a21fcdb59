//! The capture's codec parameters, shared by the worker's encoder and the
//! slates of the stitched file: a slate joins the captured chunks without
//! re-encoding them only if its H.264 and AAC configuration is the same,
//! byte for byte (checked before every join, see `remux`).

/// Length of a chunk, seconds; also the keyframe interval: every chunk
/// starts with one, so each plays on its own and segments start on one.
pub const CHUNK_SECS: u32 = 2;

/// The filter every captured and generated picture goes through: the
/// conversion to the encoder's 4:2:0 by swscale's area method (at the same
/// size it takes the converter's fast path: 0.005 of a core at 720p15
/// where ffmpeg's default conversion took 0.09, a third of the encoder,
/// for a picture as close to the grab; docs/capture.md), and square pixels
/// stated (x11grab leaves the aspect ratio unset and a generated slate says
/// 1:1, which put different headers in the two).
pub const VIDEO_FILTER: &str = "scale=flags=area,format=yuv420p,setsar=1";

/// ffmpeg's video filter and encoder options at `fps`.
pub fn video_args(fps: u32) -> Vec<String> {
    let mut a = vec!["-vf".to_string(), VIDEO_FILTER.to_string()];
    a.extend(video_encoder_args(fps));
    a
}

/// ffmpeg's video encoder options at `fps`, for an output fed by a filter
/// graph that applies [`VIDEO_FILTER`] itself.
pub fn video_encoder_args(fps: u32) -> Vec<String> {
    let fps = fps.max(1);
    [
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        // No lookahead: a chunk closes as soon as its last frame is
        // grabbed, not ~0.7 s later, so a killed worker loses less; and it
        // costs less CPU (docs/capture.md). It also means no B-frames, so a
        // segment can be cut at any frame when overlaps are stitched.
        "-tune",
        "zerolatency",
        "-pix_fmt",
        "yuv420p",
        // A constant rate stated to the encoder: left to guess it from the
        // first frames' (wall-clock) times, ffmpeg wrote a different rate
        // into the H.264 headers of two captures of the same spec, and
        // their segments could not be joined without re-encoding.
        "-r",
        &fps.to_string(),
        "-crf",
        "26",
        "-g",
        &(fps * CHUNK_SECS).to_string(),
        "-bf",
        "0",
        "-force_key_frames",
        &format!("expr:gte(t,n_forced*{CHUNK_SECS})"),
    ]
    .map(String::from)
    .to_vec()
}

/// ffmpeg's output options that cut the capture into chunks in `dir`:
/// `init.mp4`, `c00000.m4s`, ... each listed in `playlist` (a file in
/// `dir`) once it is complete.
pub fn chunk_output_args(dir: &std::path::Path, playlist: &str) -> Vec<String> {
    let mut a: Vec<String> = [
        "-f",
        "hls",
        "-hls_time",
        &CHUNK_SECS.to_string(),
        "-hls_list_size",
        "0",
        "-hls_segment_type",
        "fmp4",
        "-hls_fmp4_init_filename",
        "init.mp4",
        "-hls_flags",
        "independent_segments",
        "-hls_segment_filename",
    ]
    .map(String::from)
    .to_vec();
    a.push(dir.join("c%05d.m4s").display().to_string());
    a.push("-y".into());
    a.push(dir.join(playlist).display().to_string());
    a
}

/// ffmpeg's audio encoder options (48 kHz stereo in).
pub fn audio_args() -> Vec<String> {
    ["-c:a", "aac", "-b:a", "128k"].map(String::from).to_vec()
}
