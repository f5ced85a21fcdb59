//! A context file of several named contexts, kubectl's habit:
//!
//! ```toml
//! current = "dev"
//!
//! [contexts.dev]
//! coordinator = "127.0.0.1:7800"
//! ca = "/abs/path/ca.pem"
//! cert = "/abs/path/operator-dev.pem"
//! key = "/abs/path/operator-dev-key.pem"
//!
//! [contexts.prod]
//! coordinator = "coord-a.example:7800,coord-b.example:7800"
//! server_name = "coordinator.example"
//! ca = "prod/ca.pem"
//! cert = "prod/alice.pem"
//! key = "prod/alice-key.pem"
//! ```
//!
//! A file of the first shape (one context, its fields at the top) reads as
//! one context named [`LEGACY_NAME`], current. Reading never writes: such a
//! file stays as it is until a command writes the file, which writes it in
//! the shape above with every field it had (keys this version does not
//! know included). Writes go to a temporary file in the same directory,
//! mode 0600, then renamed over the file: a reader sees the old file or the
//! new one, never half of one.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Context, ContextError, PartialContext};

/// The name given to the one context of a file of the old shape.
pub const LEGACY_NAME: &str = "default";

/// One named context as written in the file: every field may be missing
/// (flags and variables can give it), paths as written (relative ones are
/// relative to the file's directory).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// The coordinator(s), `host:port[,host:port...]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coordinator: Option<String>,
    /// The name checked against the coordinator's certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// The fleet CA certificate (PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
    /// This client's certificate (PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<PathBuf>,
    /// This client's private key (PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
    /// Keys this version does not know, kept as they were.
    #[serde(flatten)]
    pub extra: toml::Table,
}

impl Entry {
    /// The fields, with relative paths taken relative to `dir`.
    pub(super) fn partial(&self, dir: &Path) -> PartialContext {
        let abs = |p: &Option<PathBuf>| {
            p.as_ref().map(|p| {
                if p.is_relative() {
                    dir.join(p)
                } else {
                    p.clone()
                }
            })
        };
        PartialContext {
            coordinator: self.coordinator.clone(),
            server_name: self.server_name.clone(),
            ca: abs(&self.ca),
            cert: abs(&self.cert),
            key: abs(&self.key),
        }
    }

    /// Sets every field from a complete context; unknown keys stay.
    pub fn set(&mut self, ctx: &Context) {
        self.coordinator = Some(ctx.coordinator.clone());
        self.server_name = Some(ctx.server_name.clone());
        self.ca = Some(ctx.ca.clone());
        self.cert = Some(ctx.cert.clone());
        self.key = Some(ctx.key.clone());
    }
}

/// The shape written, and read when the file has `[contexts]`.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Named {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    current: Option<String>,
    #[serde(flatten)]
    extra: toml::Table,
    #[serde(default)]
    contexts: BTreeMap<String, Entry>,
}

/// A whole context file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContextFile {
    /// The context used when none is named (`recfleet context use NAME`).
    pub current: Option<String>,
    /// Every context, by name.
    pub contexts: BTreeMap<String, Entry>,
    /// Top-level keys this version does not know, kept as they were.
    pub extra: toml::Table,
    /// Read from a file of the old, one-context shape.
    pub legacy: bool,
}

impl ContextFile {
    /// Parses the text of a context file (`path` names it in errors).
    pub fn parse(text: &str, path: &Path) -> Result<ContextFile, ContextError> {
        let bad = |e: toml::de::Error| ContextError::Parse {
            path: path.to_path_buf(),
            message: e.message().to_string(),
        };
        let table: toml::Table = toml::from_str(text).map_err(bad)?;
        let legacy = !table.is_empty() && !table.contains_key("contexts");
        if legacy {
            let entry: Entry = toml::from_str(text).map_err(bad)?;
            return Ok(ContextFile {
                current: Some(LEGACY_NAME.to_string()),
                contexts: BTreeMap::from([(LEGACY_NAME.to_string(), entry)]),
                extra: toml::Table::new(),
                legacy: true,
            });
        }
        let named: Named = toml::from_str(text).map_err(bad)?;
        Ok(ContextFile {
            current: named.current,
            contexts: named.contexts,
            extra: named.extra,
            legacy: false,
        })
    }

    /// Reads a context file.
    pub fn load(path: &Path) -> Result<ContextFile, ContextError> {
        let text = std::fs::read_to_string(path).map_err(|source| ContextError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        ContextFile::parse(&text, path)
    }

    /// Reads a context file; an absent file is an empty one.
    pub fn load_or_empty(path: &Path) -> Result<ContextFile, ContextError> {
        match ContextFile::load(path) {
            Err(ContextError::Read { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                Ok(ContextFile::default())
            }
            other => other,
        }
    }

    /// The names, sorted.
    pub fn names(&self) -> Vec<String> {
        self.contexts.keys().cloned().collect()
    }

    /// The context named `name`, or an error that lists the names there are.
    pub fn get(&self, name: &str, path: &Path) -> Result<&Entry, ContextError> {
        self.contexts
            .get(name)
            .ok_or_else(|| ContextError::UnknownName {
                name: name.to_string(),
                file: path.display().to_string(),
                known: self.names(),
            })
    }

    /// Makes `name` the current context; it must exist.
    pub fn use_context(&mut self, name: &str, path: &Path) -> Result<(), ContextError> {
        self.get(name, path)?;
        self.current = Some(name.to_string());
        Ok(())
    }

    /// Adds the context `name`, or sets every field of it (keys this
    /// version does not know stay). Other contexts are not touched.
    pub fn set(&mut self, name: &str, ctx: &Context) {
        self.contexts.entry(name.to_string()).or_default().set(ctx);
    }

    /// The context to use: `name` if given, else the current one, else the
    /// only one. `Ok(None)` when the file has no context at all.
    pub fn pick(&self, name: Option<&str>, path: &Path) -> Result<Option<&Entry>, ContextError> {
        if let Some(name) = name {
            return self.get(name, path).map(Some);
        }
        if let Some(current) = &self.current {
            return self.get(current, path).map(Some);
        }
        match self.contexts.len() {
            0 => Ok(None),
            1 => Ok(self.contexts.values().next()),
            _ => Err(ContextError::NoCurrent {
                file: path.display().to_string(),
                known: self.names(),
            }),
        }
    }

    /// The TOML text written: always the named shape.
    pub fn to_toml(&self) -> Result<String, ContextError> {
        let named = Named {
            current: self.current.clone(),
            extra: self.extra.clone(),
            contexts: self.contexts.clone(),
        };
        let body = toml::to_string(&named).map_err(|e| ContextError::Encode(e.to_string()))?;
        Ok(format!(
            "# recfleet console contexts: where each coordinator is, and which\n\
             # certificate to show it. `recfleet context use NAME` picks one;\n\
             # flags and RECFLEET_* variables override it.\n{body}"
        ))
    }

    /// Writes the file atomically (a temporary file in the same directory,
    /// mode 0600, renamed over it), creating the directory if needed.
    pub fn write(&self, path: &Path) -> Result<(), ContextError> {
        let text = self.to_toml()?;
        write_atomic(path, text.as_bytes()).map_err(|source| ContextError::Write {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Adds or updates the context `name` in the file at `path` (created
    /// if absent) and makes it current; every other context stays as it
    /// was. What `recfleet-agent dev` does with its `dev` context.
    pub fn save_current(path: &Path, name: &str, ctx: &Context) -> Result<(), ContextError> {
        let mut file = ContextFile::load_or_empty(path)?;
        file.set(name, ctx);
        file.current = Some(name.to_string());
        file.write(path)
    }
}

/// Writes `bytes` to a temporary file beside `path` (mode 0600), flushes it
/// to disk and renames it over `path`. A `path` that is a symbolic link (a
/// dotfiles checkout, say) is followed: the file it points to is replaced,
/// the link stays.
pub(super) fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let target = match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => std::fs::canonicalize(path)?,
        _ => path.to_path_buf(),
    };
    let path = target.as_path();
    let dir = match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(d) => d,
        None => Path::new("."),
    };
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "context.toml".to_string());
    let tmp = dir.join(format!(
        ".{name}.tmp-{}-{:08x}",
        std::process::id(),
        fastrand::u32(..)
    ));
    let result = (|| {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut f = options.open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(coordinator: &str) -> Context {
        Context {
            coordinator: coordinator.into(),
            server_name: "localhost".into(),
            ca: "/d/ca.pem".into(),
            cert: "/d/op.pem".into(),
            key: "/d/op-key.pem".into(),
        }
    }

    const PROD: &str = "current = \"prod\"\n\n[contexts.prod]\n\
        coordinator = \"a.example:7800,b.example:7800\"\n\
        server_name = \"coordinator.example\"\nca = \"prod/ca.pem\"\n\
        cert = \"prod/alice.pem\"\nkey = \"prod/alice-key.pem\"\nnote = \"on call: alice\"\n";

    #[test]
    fn the_old_shape_reads_as_one_context_named_default() {
        let path = Path::new("/x/context.toml");
        let f = ContextFile::parse("coordinator = \"h:1\"\nca = \"ca.pem\"\n", path).unwrap();
        assert!(f.legacy);
        assert_eq!(f.current.as_deref(), Some(LEGACY_NAME));
        let e = f.pick(None, path).unwrap().unwrap();
        assert_eq!(e.coordinator.as_deref(), Some("h:1"));
        assert_eq!(e.ca.as_deref(), Some(Path::new("ca.pem")));
    }

    #[test]
    fn the_dev_fleet_adds_its_context_beside_prod_and_keeps_prod() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("recfleet/context.toml");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, PROD).unwrap();
        let before = ContextFile::load(&path).unwrap();
        ContextFile::save_current(&path, "dev", &ctx("127.0.0.1:7800")).unwrap();
        let after = ContextFile::load(&path).unwrap();
        assert_eq!(after.contexts["prod"], before.contexts["prod"]);
        assert_eq!(
            after.contexts["prod"].extra.get("note"),
            Some(&toml::Value::String("on call: alice".into()))
        );
        assert_eq!(after.names(), ["dev", "prod"]);
        assert_eq!(after.current.as_deref(), Some("dev"));
        assert_eq!(
            after.contexts["dev"].coordinator.as_deref(),
            Some("127.0.0.1:7800")
        );
        // Once more, with another port: dev changes, prod still does not.
        ContextFile::save_current(&path, "dev", &ctx("127.0.0.1:7900")).unwrap();
        let again = ContextFile::load(&path).unwrap();
        assert_eq!(again.contexts["prod"], before.contexts["prod"]);
        assert_eq!(
            again.contexts["dev"].coordinator.as_deref(),
            Some("127.0.0.1:7900")
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, ["context.toml"], "no temporary file is left");
    }

    #[test]
    fn writing_an_old_file_converts_it_losing_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("context.toml");
        let old = "coordinator = \"h:1\"\nca = \"ca.pem\"\ncert = \"c.pem\"\nkey = \"k.pem\"\nteam = \"video\"\n";
        std::fs::write(&path, old).unwrap();
        // Reading does not rewrite.
        let f = ContextFile::load(&path).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), old);
        f.write(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("[contexts.default]"), "{text}");
        let g = ContextFile::load(&path).unwrap();
        assert!(!g.legacy);
        assert_eq!(g.current.as_deref(), Some("default"));
        assert_eq!(g.contexts, f.contexts);
        assert_eq!(
            g.contexts["default"].extra.get("team"),
            Some(&toml::Value::String("video".into()))
        );
    }

    #[test]
    fn unknown_names_list_the_known_ones_and_several_need_a_current() {
        let path = Path::new("/x/context.toml");
        let mut f = ContextFile::default();
        assert!(f.pick(None, path).unwrap().is_none());
        f.set("a", &ctx("a:1"));
        assert_eq!(
            f.pick(None, path).unwrap().unwrap().coordinator.as_deref(),
            Some("a:1"),
            "the only context is used"
        );
        f.set("b", &ctx("b:1"));
        let err = f.pick(None, path).unwrap_err().to_string();
        assert!(err.contains("no current context"), "{err}");
        let err = f.use_context("c", path).unwrap_err().to_string();
        assert!(err.contains("no context named \"c\""), "{err}");
        assert!(err.contains("a, b"), "{err}");
        f.use_context("b", path).unwrap();
        assert_eq!(
            f.pick(None, path).unwrap().unwrap().coordinator.as_deref(),
            Some("b:1")
        );
        assert_eq!(
            f.pick(Some("a"), path)
                .unwrap()
                .unwrap()
                .coordinator
                .as_deref(),
            Some("a:1")
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_linked_file_is_written_through_the_link() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("dotfiles/context.toml");
        let link = dir.path().join("context.toml");
        std::fs::create_dir_all(real.parent().unwrap()).unwrap();
        std::fs::write(&real, PROD).unwrap();
        std::os::unix::fs::symlink(&real, &link).unwrap();
        ContextFile::save_current(&link, "dev", &ctx("d:1")).unwrap();
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(ContextFile::load(&real).unwrap().names(), ["dev", "prod"]);
    }

    #[test]
    fn top_level_keys_it_does_not_know_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("context.toml");
        std::fs::write(&path, format!("editor = \"vi\"\n{PROD}")).unwrap();
        let mut f = ContextFile::load(&path).unwrap();
        f.set("dev", &ctx("d:1"));
        f.write(&path).unwrap();
        let g = ContextFile::load(&path).unwrap();
        assert_eq!(
            g.extra.get("editor"),
            Some(&toml::Value::String("vi".into()))
        );
        assert_eq!(g.contexts["prod"], f.contexts["prod"]);
    }
}
