//! Configuration of the daemon roles: a TOML file, then environment
//! variables, then flags, each overriding the one before (clap handles
//! env < flag; this module lays both over the file). A bad value is named
//! with its key and what is expected, and the process exits with 64.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::exit::Failure;

/// Values given on the command line or in the environment, by key.
#[derive(Debug, Default)]
pub struct Overrides(toml::Table);

impl Overrides {
    /// Sets `key` when the flag or variable was given.
    pub fn set<T: Serialize>(&mut self, key: &str, value: Option<T>) {
        if let Some(v) = value {
            if let Ok(v) = toml::Value::try_from(v) {
                self.0.insert(key.to_string(), v);
            }
        }
    }
}

/// Reads `file` (if any), lays `overrides` over it and decodes the result.
pub fn load<T: DeserializeOwned>(file: Option<&Path>, overrides: Overrides) -> Result<T, Failure> {
    let mut table = match file {
        None => toml::Table::new(),
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                Failure::invalid(format!("cannot read config file {}: {e}", path.display()))
            })?;
            text.parse::<toml::Table>()
                .map_err(|e| Failure::invalid(format!("config file {}: {e}", path.display())))?
        }
    };
    for (k, v) in overrides.0 {
        table.insert(k, v);
    }
    // Through text, so that errors quote the key and the bad value.
    let text = toml::to_string(&table).map_err(|e| Failure::invalid(e.to_string()))?;
    toml::from_str(&text).map_err(|e| {
        let origin = file
            .map(|p| format!(" (file {} and flags/environment)", p.display()))
            .unwrap_or_default();
        Failure::invalid(format!("invalid configuration{origin}: {e}"))
    })
}

/// The configuration as TOML, for `--print-config`.
pub fn print<T: Serialize>(settings: &T) -> Result<(), Failure> {
    let text = toml::to_string_pretty(settings).map_err(|e| Failure::other(e.into()))?;
    print!("{text}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct S {
        #[serde(default = "two")]
        capacity: u32,
        #[serde(default)]
        name: String,
    }
    fn two() -> u32 {
        2
    }

    #[test]
    fn flags_override_the_file_and_bad_values_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "capacity = 4\nname = \"file\"\n").unwrap();
        let mut o = Overrides::default();
        o.set("name", Some("flag"));
        let s: S = load(Some(&f), o).unwrap();
        assert_eq!(
            s,
            S {
                capacity: 4,
                name: "flag".into()
            }
        );

        std::fs::write(&f, "capacity = \"many\"\n").unwrap();
        let e = load::<S>(Some(&f), Overrides::default()).unwrap_err();
        assert_eq!(e.code, 64);
        let msg = e.error.to_string();
        assert!(msg.contains("capacity") && msg.contains("many"), "{msg}");

        std::fs::write(&f, "capacty = 3\n").unwrap();
        let msg = load::<S>(Some(&f), Overrides::default())
            .unwrap_err()
            .error
            .to_string();
        assert!(
            msg.contains("unknown field") && msg.contains("capacty"),
            "{msg}"
        );
    }
}
