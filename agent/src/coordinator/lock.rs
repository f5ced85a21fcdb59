//! One coordinator per data dir: an exclusive `flock` on `DATA_DIR/lock`,
//! held for the life of the process (the kernel drops it when the process
//! dies, kill -9 included, so a stale lock never blocks a restart). The file
//! names the holder's PID so that the refusal can say who holds it.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::Path;

use nix::fcntl::{Flock, FlockArg};

/// The held lock; dropping it releases it.
#[derive(Debug)]
pub struct DataDirLock {
    _file: Flock<File>,
}

impl DataDirLock {
    /// Takes the lock, or says which process holds it.
    pub fn take(dir: &Path) -> Result<DataDirLock, String> {
        let path = dir.join("lock");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(mut held) => {
                let pid = std::process::id();
                let written = held
                    .set_len(0)
                    .and_then(|_| held.rewind())
                    .and_then(|_| writeln!(held, "{pid}"))
                    .and_then(|_| held.sync_all());
                if let Err(e) = written {
                    tracing::warn!(path = %path.display(), error = %e, "cannot write the lock holder's pid");
                }
                Ok(DataDirLock { _file: held })
            }
            Err((mut file, errno)) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                let who = if holder.is_empty() {
                    "another process".to_string()
                } else {
                    format!("process {holder}")
                };
                Err(format!(
                    "the data dir {} is in use by {who} (lock {}: {errno}); \
                     one coordinator per data dir: stop it, or give this one another --data-dir",
                    dir.display(),
                    path.display()
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataDirLock::take(dir.path()).unwrap();
        let err = DataDirLock::take(dir.path()).unwrap_err();
        assert!(
            err.contains(&format!("process {}", std::process::id())),
            "{err}"
        );
        drop(first);
        DataDirLock::take(dir.path()).expect("free again once released");
    }
}
