//! Stored segments as a player reads them.

use std::path::{Path, PathBuf};

use anyhow::Context;

/// A segment's stored objects (`init.mp4` and `cNNNNN.m4s` in `dir`) as one
/// playable file beside them (`<dir>.mp4`).
pub fn join_segment(dir: &Path) -> anyhow::Result<PathBuf> {
    let mut chunks: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("no segment at {}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "m4s"))
        .collect();
    chunks.sort();
    let mut bytes = std::fs::read(dir.join("init.mp4"))
        .with_context(|| format!("no init.mp4 in {}", dir.display()))?;
    for c in &chunks {
        bytes.extend(std::fs::read(c)?);
    }
    let out = dir.with_extension("mp4");
    std::fs::write(&out, bytes)?;
    Ok(out)
}
