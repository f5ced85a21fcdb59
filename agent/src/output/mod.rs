//! A recording's output: planning how its segments join (`stitch`), HLS
//! playlists (`hls`), and the ffmpeg remux that writes the final file (`remux`).

pub mod hls;
pub mod remux;
pub mod stitch;
