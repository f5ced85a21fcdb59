//! Reading what is appended to a file, whole lines at a time: the
//! encoder's analysis files (`super::health`) and the slot's logs
//! (`super::queries`). A file that does not exist yet reads as empty.

use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;

/// A line longer than this is given out cut rather than held.
const LINE_MAX: usize = 16 * 1024;

/// One file being read from `offset` on.
#[derive(Debug)]
pub struct FileTail {
    path: PathBuf,
    offset: u64,
    partial: String,
    /// Reading starts mid-line: drop what comes before the first newline.
    skip_partial: bool,
}

impl FileTail {
    /// Reads `path` from its start.
    pub fn new(path: PathBuf) -> Self {
        FileTail {
            path,
            offset: 0,
            partial: String::new(),
            skip_partial: false,
        }
    }

    /// The file read.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Starts reading at `offset` (a line cut there is dropped, unless it
    /// is the start of the file).
    pub fn seek(&mut self, offset: u64) {
        self.offset = offset;
        self.partial.clear();
        self.skip_partial = offset > 0;
    }

    /// The lines appended since the last call (at most `max` bytes read),
    /// without their newline.
    pub fn lines(&mut self, max: u64) -> Vec<String> {
        let Ok(mut f) = std::fs::File::open(&self.path) else {
            return Vec::new();
        };
        if f.seek(SeekFrom::Start(self.offset)).is_err() {
            return Vec::new();
        }
        let mut buf = Vec::new();
        let Ok(n) = f.take(max).read_to_end(&mut buf) else {
            return Vec::new();
        };
        self.offset += n as u64;
        self.partial.push_str(&String::from_utf8_lossy(&buf));
        let mut out = Vec::new();
        while let Some(nl) = self.partial.find('\n') {
            let line: String = self.partial.drain(..=nl).collect();
            if std::mem::take(&mut self.skip_partial) {
                continue;
            }
            out.push(line.trim_end_matches(['\n', '\r']).to_string());
        }
        if self.partial.len() > LINE_MAX {
            out.push(std::mem::take(&mut self.partial));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_lines_as_they_arrive_and_a_cut_first_line_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ffmpeg.log");
        let mut t = FileTail::new(path.clone());
        assert!(t.lines(u64::MAX).is_empty(), "no file yet");
        std::fs::write(&path, "one\ntw").unwrap();
        assert_eq!(t.lines(u64::MAX), vec!["one"]);
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        std::io::Write::write_all(&mut f, b"o\nthree\r\n").unwrap();
        assert_eq!(t.lines(u64::MAX), vec!["two", "three"]);
        t.seek(5);
        assert_eq!(t.lines(u64::MAX), vec!["three"], "the cut 'wo' is dropped");
    }
}
