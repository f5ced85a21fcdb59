//! A recording's output: where its objects go and how its chunks become one
//! stitched file and a playlist.

pub mod destination;
