//! Typed identifiers. Each rejects bad text when it is parsed, so a value of
//! these types is always valid wherever it travels (wire, store, file names).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why a piece of text is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The text is empty.
    #[error("{kind} is empty")]
    Empty {
        /// Which kind of identifier.
        kind: &'static str,
    },
    /// The text is longer than allowed.
    #[error("{kind} \"{value}\" is {len} characters long, at most {max} are allowed")]
    TooLong {
        /// Which kind of identifier.
        kind: &'static str,
        /// The rejected text (cut to 140 characters).
        value: String,
        /// Its length in characters.
        len: usize,
        /// The maximum length.
        max: usize,
    },
    /// The text holds a character outside the allowed set.
    #[error("{kind} \"{value}\" contains {found:?}; allowed are A-Z a-z 0-9 . _ -{extra}")]
    BadChar {
        /// Which kind of identifier.
        kind: &'static str,
        /// The rejected text (cut to 140 characters).
        value: String,
        /// The first character that is not allowed.
        found: char,
        /// An extra rule, if any.
        extra: &'static str,
    },
}

fn shown(value: &str) -> String {
    value.chars().take(140).collect()
}

/// Checks `value` against `[A-Za-z0-9._-]{1,max}`; with `alnum_first`, the
/// first character must be a letter or digit (names that end up in paths and
/// certificate URIs must not start with `.` or `-`).
fn check(kind: &'static str, value: &str, max: usize, alnum_first: bool) -> Result<(), IdError> {
    if value.is_empty() {
        return Err(IdError::Empty { kind });
    }
    let len = value.chars().count();
    if len > max {
        return Err(IdError::TooLong {
            kind,
            value: shown(value),
            len,
            max,
        });
    }
    let extra = if alnum_first {
        "; the first must be a letter or digit"
    } else {
        ""
    };
    for (i, c) in value.chars().enumerate() {
        let allowed = c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        if !allowed || (alnum_first && i == 0 && !c.is_ascii_alphanumeric()) {
            return Err(IdError::BadChar {
                kind,
                value: shown(value),
                found: c,
                extra,
            });
        }
    }
    Ok(())
}

macro_rules! text_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $max:expr, $alnum_first:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// The longest accepted value, in characters.
            pub const MAX_LEN: usize = $max;

            /// Parses and validates `value`.
            pub fn new(value: impl Into<String>) -> Result<Self, IdError> {
                let value = value.into();
                check($kind, &value, $max, $alnum_first)?;
                Ok(Self(value))
            }

            /// The identifier as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::new(s)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        // Validation also runs when decoding from the wire or the store: a
        // peer cannot smuggle an invalid id past the type.
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::new(s).map_err(serde::de::Error::custom)
            }
        }
    };
}

text_id!(
    /// A recording's id, chosen by the client: the idempotency key of a start
    /// request. 1 to 128 of `[A-Za-z0-9._-]`.
    RecordingId,
    "recording id",
    128,
    false
);

text_id!(
    /// A worker's name, as in its agent certificate (`spiffe://recfleet/agent/NAME`).
    /// 1 to 63 of `[A-Za-z0-9._-]`, starting with a letter or digit.
    WorkerName,
    "worker name",
    63,
    true
);

/// A placement of a recording on a worker. Every new placement takes the next
/// epoch; a worker holding an older epoch than the coordinator's current one
/// for a recording is fenced (told to stop). Epochs start at 1.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(transparent)]
pub struct Epoch(pub u64);

impl Epoch {
    /// The first placement of a recording.
    pub const FIRST: Epoch = Epoch(1);

    /// The epoch after this one.
    pub fn next(self) -> Epoch {
        Epoch(self.0.saturating_add(1))
    }
}

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recording_id_accepts_the_documented_alphabet() {
        for ok in ["a", "A-1", "class_2026.11.24", "-x", &"x".repeat(128)] {
            assert!(RecordingId::new(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn recording_id_rejects_bad_text_with_a_reason() {
        assert_eq!(
            RecordingId::new(""),
            Err(IdError::Empty {
                kind: "recording id"
            })
        );
        let long = "x".repeat(129);
        assert!(matches!(
            RecordingId::new(long),
            Err(IdError::TooLong { len: 129, .. })
        ));
        for bad in ["a b", "a/b", "é", "a\n", "../x"] {
            let err = RecordingId::new(bad).unwrap_err();
            assert!(err.to_string().contains("allowed are"), "{bad}: {err}");
        }
    }

    #[test]
    fn worker_name_must_start_alphanumeric() {
        assert!(WorkerName::new("w1").is_ok());
        assert!(WorkerName::new("-w1").is_err());
        assert!(WorkerName::new(".w1").is_err());
        assert!(WorkerName::new("x".repeat(64)).is_err());
    }

    #[test]
    fn decoding_validates() {
        let bytes = postcard::to_allocvec(&"bad id").unwrap();
        assert!(postcard::from_bytes::<RecordingId>(&bytes).is_err());
        let bytes = postcard::to_allocvec(&"good-id").unwrap();
        assert_eq!(
            postcard::from_bytes::<RecordingId>(&bytes)
                .unwrap()
                .as_str(),
            "good-id"
        );
    }

    #[test]
    fn epochs_advance() {
        assert_eq!(Epoch::FIRST.next(), Epoch(2));
        assert_eq!(Epoch(u64::MAX).next(), Epoch(u64::MAX));
    }
}
