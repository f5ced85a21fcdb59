//! The context: where the coordinator is and which certificate to show it.
//!
//! A context file is TOML, written by `recfleet-agent dev` (through
//! [`Context::write`]) or by hand:
//!
//! ```toml
//! coordinator = "127.0.0.1:7800"   # host:port (UDP)
//! server_name = "localhost"        # name checked against the coordinator certificate
//! ca = "/abs/path/ca.pem"
//! cert = "/abs/path/operator-dev.pem"
//! key = "/abs/path/operator-dev-key.pem"
//! ```
//!
//! A file may hold several named contexts and say which is current
//! ([`file`], [`ContextFile`]); the file above, of one context, reads as a
//! context named `default`.
//!
//! Every field can be overridden: flags beat environment variables, which
//! beat the file ([`Overrides`], [`resolve`]). Relative paths in a file are
//! taken relative to the file's directory.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub mod file;

pub use file::{ContextFile, Entry, LEGACY_NAME};

/// The server name used when none is given.
pub const DEFAULT_SERVER_NAME: &str = "localhost";

/// Environment variable naming the context file.
pub const ENV_CONTEXT: &str = "RECFLEET_CONTEXT";

/// Environment variable naming the context to use in the file.
pub const ENV_CONTEXT_NAME: &str = "RECFLEET_CONTEXT_NAME";

/// A complete context: everything needed to connect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Context {
    /// The coordinator, `host:port` (UDP).
    pub coordinator: String,
    /// The name checked against the coordinator's certificate.
    #[serde(default = "default_server_name")]
    pub server_name: String,
    /// The fleet CA certificate (PEM).
    pub ca: PathBuf,
    /// This client's certificate (PEM).
    pub cert: PathBuf,
    /// This client's private key (PEM).
    pub key: PathBuf,
}

fn default_server_name() -> String {
    DEFAULT_SERVER_NAME.to_string()
}

/// Why a context could not be read, written or completed.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    /// The file could not be read.
    #[error("cannot read context file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not valid TOML of the expected shape.
    #[error("context file {path} is not valid: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        message: String,
    },
    /// The file could not be written.
    #[error("cannot write context file {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The context could not be serialized.
    #[error("cannot encode the context: {0}")]
    Encode(String),
    /// Fields are missing after flags, environment and file were combined.
    #[error("no {} given (looked at flags, environment and {})", .missing.join(", "), .file)]
    Missing {
        /// The missing fields, as flag names.
        missing: Vec<&'static str>,
        /// Which file was looked at, or why none.
        file: String,
    },
    /// The file has no context of this name.
    #[error("no context named \"{name}\" in {file} (it has: {})", if .known.is_empty() { "none".to_string() } else { .known.join(", ") })]
    UnknownName {
        /// The name asked for.
        name: String,
        /// Which file was looked at.
        file: String,
        /// The names it has.
        known: Vec<String>,
    },
    /// The file has no context at all (or is absent).
    #[error("no context in {file}")]
    NoContexts {
        /// Which file was looked at.
        file: String,
    },
    /// The file has several contexts and none is current.
    #[error("no current context in {file}, which has several ({})", .known.join(", "))]
    NoCurrent {
        /// Which file was looked at.
        file: String,
        /// The names it has.
        known: Vec<String>,
    },
    /// No default path could be found (neither `XDG_CONFIG_HOME` nor `HOME`).
    #[error("cannot find a config directory: set XDG_CONFIG_HOME or HOME, or pass --context")]
    NoConfigDir,
}

/// A context as read from a file: every field may be missing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct PartialContext {
    coordinator: Option<String>,
    server_name: Option<String>,
    ca: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
}

impl Context {
    /// Reads the current context of the file at `path` (its only one, in a
    /// file of one). Relative paths in the file are resolved against the
    /// file's directory.
    pub fn load(path: &Path) -> Result<Context, ContextError> {
        let partial = read_partial(path, None)?;
        let file = path.display().to_string();
        complete(partial, file)
    }

    /// Writes a file of this one context to `path` (fields at the top, the
    /// first shape), replacing the whole file, atomically and with mode
    /// 0600, creating the parent directory. For a file of its own (tests,
    /// benchmarks); to add a context to a file that may hold others, use
    /// [`ContextFile::save_current`].
    pub fn write(&self, path: &Path) -> Result<(), ContextError> {
        let text = self.to_toml()?;
        file::write_atomic(path, text.as_bytes()).map_err(|source| ContextError::Write {
            path: path.to_path_buf(),
            source,
        })
    }

    /// The TOML text [`Context::write`] writes.
    pub fn to_toml(&self) -> Result<String, ContextError> {
        let body = toml::to_string(self).map_err(|e| ContextError::Encode(e.to_string()))?;
        Ok(format!(
            "# recfleet console context: where the coordinator is, and which\n\
             # certificate to show it. Flags and RECFLEET_* variables override it.\n{body}"
        ))
    }

    /// The default context file: `$XDG_CONFIG_HOME/recfleet/context.toml`,
    /// else `~/.config/recfleet/context.toml`.
    pub fn default_path() -> Result<PathBuf, ContextError> {
        default_path_from(
            std::env::var_os("XDG_CONFIG_HOME").map(PathBuf::from),
            std::env::var_os("HOME").map(PathBuf::from),
        )
    }
}

fn default_path_from(xdg: Option<PathBuf>, home: Option<PathBuf>) -> Result<PathBuf, ContextError> {
    let base = match (xdg, home) {
        (Some(x), _) if x.is_absolute() => x,
        (_, Some(h)) if !h.as_os_str().is_empty() => h.join(".config"),
        _ => return Err(ContextError::NoConfigDir),
    };
    Ok(base.join("recfleet").join("context.toml"))
}

/// The context `name` (else the current one) of the file at `path`, with
/// relative paths resolved against the file's directory.
fn read_partial(path: &Path, name: Option<&str>) -> Result<PartialContext, ContextError> {
    let file = ContextFile::load(path)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    Ok(file
        .pick(name, path)?
        .map(|e| e.partial(dir))
        .unwrap_or_default())
}

fn complete(p: PartialContext, file: String) -> Result<Context, ContextError> {
    let mut missing = Vec::new();
    if p.coordinator.is_none() {
        missing.push("--coordinator");
    }
    if p.ca.is_none() {
        missing.push("--ca");
    }
    if p.cert.is_none() {
        missing.push("--cert");
    }
    if p.key.is_none() {
        missing.push("--key");
    }
    match (p.coordinator, p.ca, p.cert, p.key) {
        (Some(coordinator), Some(ca), Some(cert), Some(key)) => Ok(Context {
            coordinator,
            server_name: p.server_name.unwrap_or_else(default_server_name),
            ca,
            cert,
            key,
        }),
        _ => Err(ContextError::Missing { missing, file }),
    }
}

/// Values given on the command line or in the environment (clap reads both:
/// a flag wins over its variable). `None` falls back to the file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `--context` / `RECFLEET_CONTEXT`: the file.
    pub context: Option<PathBuf>,
    /// `--context-name` / `RECFLEET_CONTEXT_NAME`: which context of the
    /// file [default: its current one].
    pub context_name: Option<String>,
    /// `--coordinator` / `RECFLEET_COORDINATOR`.
    pub coordinator: Option<String>,
    /// `--server-name` / `RECFLEET_SERVER_NAME`.
    pub server_name: Option<String>,
    /// `--ca` / `RECFLEET_CA`.
    pub ca: Option<PathBuf>,
    /// `--cert` / `RECFLEET_CERT`.
    pub cert: Option<PathBuf>,
    /// `--key` / `RECFLEET_KEY`.
    pub key: Option<PathBuf>,
}

/// The context file: `--context` if given, else the default path.
pub fn file_path(o: &Overrides) -> Result<PathBuf, ContextError> {
    match &o.context {
        Some(path) => Ok(path.clone()),
        None => Context::default_path(),
    }
}

/// Combines overrides with the context file. The file is optional when the
/// overrides give every field; a file named explicitly must exist, and so
/// must a context named explicitly.
pub fn resolve(o: &Overrides) -> Result<Context, ContextError> {
    let name = o.context_name.as_deref();
    let absent = |label: String| match name {
        Some(n) => Err(ContextError::UnknownName {
            name: n.to_string(),
            file: label,
            known: Vec::new(),
        }),
        None => Ok(PartialContext::default()),
    };
    let (file, label) = match &o.context {
        Some(path) => (read_partial(path, name)?, path.display().to_string()),
        None => match Context::default_path() {
            Ok(path) if path.exists() => (read_partial(&path, name)?, path.display().to_string()),
            Ok(path) => {
                let label = format!("{} (absent)", path.display());
                (absent(label.clone())?, label)
            }
            Err(_) => (
                absent("no context file".to_string())?,
                "no context file".to_string(),
            ),
        },
    };
    let merged = PartialContext {
        coordinator: o.coordinator.clone().or(file.coordinator),
        server_name: o.server_name.clone().or(file.server_name),
        ca: o.ca.clone().or(file.ca),
        cert: o.cert.clone().or(file.cert),
        key: o.key.clone().or(file.key),
    };
    complete(merged, label)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Context {
        Context {
            coordinator: "127.0.0.1:7800".into(),
            server_name: "localhost".into(),
            ca: "/tmp/ca.pem".into(),
            cert: "/tmp/op.pem".into(),
            key: "/tmp/op-key.pem".into(),
        }
    }

    #[test]
    fn write_then_load_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/context.toml");
        sample().write(&path).unwrap();
        assert_eq!(Context::load(&path).unwrap(), sample());
    }

    #[test]
    fn relative_paths_are_relative_to_the_file_and_server_name_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("context.toml");
        std::fs::write(
            &path,
            "coordinator = \"h:1\"\nca = \"ca.pem\"\ncert = \"c.pem\"\nkey = \"/k.pem\"\n",
        )
        .unwrap();
        let c = Context::load(&path).unwrap();
        assert_eq!(c.ca, dir.path().join("ca.pem"));
        assert_eq!(c.key, PathBuf::from("/k.pem"));
        assert_eq!(c.server_name, "localhost");
    }

    #[test]
    fn flags_beat_the_file_and_missing_fields_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("context.toml");
        std::fs::write(&path, "coordinator = \"file:1\"\nca = \"/ca.pem\"\n").unwrap();
        let mut o = Overrides {
            context: Some(path.clone()),
            coordinator: Some("flag:2".into()),
            ..Default::default()
        };
        let err = resolve(&o).unwrap_err().to_string();
        assert!(err.contains("no --cert, --key given"), "{err}");
        o.cert = Some("/c.pem".into());
        o.key = Some("/k.pem".into());
        let c = resolve(&o).unwrap();
        assert_eq!(c.coordinator, "flag:2");
        assert_eq!(c.ca, PathBuf::from("/ca.pem"));
    }

    #[test]
    fn a_context_name_picks_one_of_several() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("context.toml");
        let mut f = ContextFile::default();
        f.set("a", &sample());
        let mut b = sample();
        b.coordinator = "b:1".into();
        f.set("b", &b);
        f.current = Some("a".into());
        f.write(&path).unwrap();
        let mut o = Overrides {
            context: Some(path.clone()),
            ..Default::default()
        };
        assert_eq!(resolve(&o).unwrap().coordinator, "127.0.0.1:7800");
        o.context_name = Some("b".into());
        assert_eq!(resolve(&o).unwrap().coordinator, "b:1");
        o.context_name = Some("c".into());
        assert!(matches!(
            resolve(&o),
            Err(ContextError::UnknownName { known, .. }) if known == ["a", "b"]
        ));
        assert_eq!(Context::load(&path).unwrap(), sample());
    }

    #[test]
    fn a_bad_file_says_which_and_why() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("context.toml");
        std::fs::write(&path, "coordinator = 7800\n").unwrap();
        let err = Context::load(&path).unwrap_err().to_string();
        assert!(err.contains("context.toml is not valid"), "{err}");
    }

    #[test]
    fn default_path_prefers_xdg() {
        let p = default_path_from(Some("/x".into()), Some("/home/u".into())).unwrap();
        assert_eq!(p, PathBuf::from("/x/recfleet/context.toml"));
        let p = default_path_from(None, Some("/home/u".into())).unwrap();
        assert_eq!(p, PathBuf::from("/home/u/.config/recfleet/context.toml"));
        assert!(default_path_from(None, None).is_err());
    }
}
