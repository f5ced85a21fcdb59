//! `recfleet watch --recording ID --worker NAME --type TYPE`: which events
//! are printed, decided in the console (the coordinator sends them all).
//! Values of one flag are alternatives; different flags must all match.

use recfleet_protocol::{EventKind, RecordingId, WorkerName};

use crate::describe;

/// What `watch` keeps. Empty lists keep everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// Events about one of these recordings.
    pub recordings: Vec<RecordingId>,
    /// Events about one of these workers.
    pub workers: Vec<WorkerName>,
    /// Events of one of these kinds ([`describe::kind_name`]).
    pub types: Vec<String>,
}

impl EventFilter {
    /// Whether no filter is set.
    pub fn is_empty(&self) -> bool {
        self.recordings.is_empty() && self.workers.is_empty() && self.types.is_empty()
    }

    /// Whether an event of this kind is printed.
    pub fn keeps(&self, kind: &EventKind) -> bool {
        let type_ok =
            self.types.is_empty() || self.types.iter().any(|t| t == describe::kind_name(kind));
        let recording_ok = self.recordings.is_empty()
            || kind
                .recordings()
                .iter()
                .any(|r| self.recordings.contains(r));
        let worker_ok =
            self.workers.is_empty() || kind.workers().iter().any(|w| self.workers.contains(w));
        type_ok && recording_ok && worker_ok
    }
}

/// Parses an event type for `--type`: one of [`describe::KIND_NAMES`].
pub fn parse_type(s: &str) -> Result<String, String> {
    let t = s.trim().to_ascii_lowercase();
    if describe::KIND_NAMES.contains(&t.as_str()) {
        Ok(t)
    } else {
        Err(format!(
            "\"{s}\" is not an event type: expected one of {}",
            describe::KIND_NAMES.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lost(name: &str) -> EventKind {
        EventKind::WorkerLost {
            name: WorkerName::new(name).unwrap(),
        }
    }

    fn notice(recording: &str, worker: &str) -> EventKind {
        EventKind::Notice {
            recording: Some(RecordingId::new(recording).unwrap()),
            worker: Some(WorkerName::new(worker).unwrap()),
            message: "m".into(),
        }
    }

    #[test]
    fn flags_combine_and_values_are_alternatives() {
        assert!(EventFilter::default().keeps(&lost("w1")));
        let f = EventFilter {
            workers: vec![
                WorkerName::new("w1").unwrap(),
                WorkerName::new("w2").unwrap(),
            ],
            ..Default::default()
        };
        assert!(f.keeps(&lost("w1")) && f.keeps(&lost("w2")) && !f.keeps(&lost("w3")));
        let f = EventFilter {
            recordings: vec![RecordingId::new("r1").unwrap()],
            types: vec!["notice".into()],
            ..Default::default()
        };
        assert!(f.keeps(&notice("r1", "w1")));
        assert!(!f.keeps(&notice("r2", "w1")), "another recording");
        assert!(!f.keeps(&lost("w1")), "not about a recording, nor a notice");
    }

    #[test]
    fn types_are_the_json_names() {
        assert_eq!(parse_type("Worker_Lost"), Ok("worker_lost".to_string()));
        let err = parse_type("lost").unwrap_err();
        assert!(
            err.starts_with("\"lost\" is not an event type: expected one of worker_up,"),
            "{err}"
        );
    }
}
