//! Writing and reading certificate and key files.
//!
//! Two rules: keys are created with mode 0600 from the start (never written
//! and chmod-ed afterwards, which leaves a window), and nothing that exists is
//! overwritten unless the caller passed `force`.

use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::{CertError, IssuedCert};

/// Mode of private key files.
pub const KEY_MODE: u32 = 0o600;
/// Mode of certificate files (public).
pub const CERT_MODE: u32 = 0o644;
/// Mode of directories this crate creates (they hold keys).
pub const DIR_MODE: u32 = 0o700;

/// Where [`write_cert_files`] put things.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertPaths {
    /// `<dir>/<stem>.pem`
    pub cert: PathBuf,
    /// `<dir>/<stem>-key.pem`
    pub key: PathBuf,
}

impl CertPaths {
    /// The paths [`write_cert_files`] uses for `dir` and `file_stem`.
    pub fn new(dir: &Path, file_stem: &str) -> Self {
        CertPaths {
            cert: dir.join(format!("{file_stem}.pem")),
            key: dir.join(format!("{file_stem}-key.pem")),
        }
    }
}

/// Creates `dir` (and parents) with mode 0700 if missing. An existing
/// directory is left as it is.
pub fn create_private_dir(dir: &Path) -> Result<(), CertError> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(|e| CertError::io("creating directory", dir, e))
}

/// Writes `<stem>.pem` (certificate) and `<stem>-key.pem` (key, 0600) in `dir`,
/// creating `dir` (0700) if needed.
///
/// Without `force`, refuses if either file exists, before writing anything,
/// so a refused call leaves no half-written pair behind.
pub fn write_cert_files(
    dir: &Path,
    file_stem: &str,
    issued: &IssuedCert,
    force: bool,
) -> Result<CertPaths, CertError> {
    let paths = CertPaths::new(dir, file_stem);
    write_pair(
        dir,
        (&paths.cert, issued.cert_pem.as_bytes()),
        (&paths.key, issued.key_pem.as_bytes()),
        force,
    )?;
    Ok(paths)
}

/// Writes a certificate and its key as a pair (see [`write_cert_files`]).
pub(crate) fn write_pair(
    dir: &Path,
    (cert_path, cert): (&Path, &[u8]),
    (key_path, key): (&Path, &[u8]),
    force: bool,
) -> Result<(), CertError> {
    create_private_dir(dir)?;
    if !force {
        for p in [cert_path, key_path] {
            refuse_existing(p)?;
        }
    }
    // Key first: a certificate without its key is useless, the reverse is
    // merely incomplete.
    write_file(key_path, key, KEY_MODE, force)?;
    if let Err(e) = write_file(cert_path, cert, CERT_MODE, force) {
        if !force {
            // We created the key a moment ago; do not leave it orphaned.
            let _ = fs::remove_file(key_path);
        }
        return Err(e);
    }
    Ok(())
}

fn refuse_existing(path: &Path) -> Result<(), CertError> {
    match fs::symlink_metadata(path) {
        Ok(_) => Err(CertError::AlreadyExists {
            path: path.to_owned(),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(CertError::io("checking", path, e)),
    }
}

/// Writes `contents` to `path` with `mode`.
///
/// Without `force` the file is created with `create_new`, so an existing file
/// (or one that appears concurrently) is never clobbered. With `force` the
/// content goes to a fresh temporary file that is renamed over the target, so
/// the mode is right even if the old file had a looser one, and readers never
/// see a half-written file.
pub fn write_file(path: &Path, contents: &[u8], mode: u32, force: bool) -> Result<(), CertError> {
    if !force {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(path)
            .map_err(|e| match e.kind() {
                io::ErrorKind::AlreadyExists => CertError::AlreadyExists {
                    path: path.to_owned(),
                },
                _ => CertError::io("creating", path, e),
            })?;
        return f
            .write_all(contents)
            .and_then(|()| f.sync_all())
            .map_err(|e| {
                let _ = fs::remove_file(path);
                CertError::io("writing", path, e)
            });
    }

    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{file_name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .map_err(|e| CertError::io("creating", &tmp, e))?;
        f.write_all(contents)
            .and_then(|()| f.sync_all())
            .map_err(|e| CertError::io("writing", &tmp, e))?;
        fs::rename(&tmp, path).map_err(|e| CertError::io("replacing", path, e))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Reads a whole file; the error names the file and what it was supposed to be.
pub fn read_file(path: &Path, what: &'static str) -> Result<Vec<u8>, CertError> {
    fs::read(path).map_err(|e| CertError::io(what, path, e))
}
