//! A recording's output: where its objects go (`destination`), how the
//! chunks of its segments become one stitched file (`stitch` plans,
//! `remux` runs ffmpeg) and an HLS playlist (`hls`); its event track
//! (`events`).

pub mod codec;
pub mod destination;
pub mod events;
pub mod finalize;
pub mod hls;
pub mod remux;
pub mod stitch;
