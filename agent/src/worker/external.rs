//! The external capture contract: a command started in the slot that writes
//! JSON lines on stdout (see examples/capture/README.md).

use serde::Deserialize;

/// One line of the contract.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ContractEvent {
    /// The page is open and capture has begun.
    Ready,
    /// About every second.
    Progress {
        /// Frames encoded.
        #[serde(default)]
        frames: u64,
        /// Media time, ms.
        #[serde(default)]
        out_time_ms: u64,
        /// Bytes written.
        #[serde(default)]
        bytes: u64,
    },
    /// A fatal error; the command exits non-zero after it.
    Error {
        /// What went wrong.
        message: String,
    },
    /// A clean stop finished the file.
    Done {
        /// The file written.
        #[serde(default)]
        file: Option<String>,
        /// Its size.
        #[serde(default)]
        bytes: Option<u64>,
    },
}

/// Parses one stdout line; lines that are not contract events are returned
/// as an error text so the caller can log them and carry on.
pub fn parse_line(line: &str) -> Result<ContractEvent, String> {
    serde_json::from_str(line.trim()).map_err(|e| format!("not a contract event ({e}): {line}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_event() {
        assert_eq!(parse_line(r#"{"event":"ready"}"#), Ok(ContractEvent::Ready));
        assert_eq!(
            parse_line(r#"{"event":"progress","frames":30,"out_time_ms":2000,"bytes":4096}"#),
            Ok(ContractEvent::Progress {
                frames: 30,
                out_time_ms: 2000,
                bytes: 4096
            })
        );
        assert_eq!(
            parse_line(r#"{"event":"error","message":"no page"}"#),
            Ok(ContractEvent::Error {
                message: "no page".into()
            })
        );
        assert_eq!(
            parse_line(r#"{"event":"done","file":"/o/x.mp4","bytes":9}"#),
            Ok(ContractEvent::Done {
                file: Some("/o/x.mp4".into()),
                bytes: Some(9)
            })
        );
        assert!(parse_line("hello").is_err());
        assert!(parse_line(r#"{"event":"dance"}"#).is_err());
    }
}
