//! Action dialogs: each names its target and its effect, has a few fields,
//! and turns into one request when confirmed.

use recfleet_protocol::{ConsoleRequest, DrainMode, RecordingId, RecordingSpec, WorkerName};

use crate::cli::{duration_secs, generated_id, parse_duration, parse_recording};
use crate::describe;

/// What the dialog does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Drain a worker.
    Drain {
        /// The worker.
        worker: WorkerName,
        /// How many recordings it runs.
        recordings: usize,
    },
    /// Undrain a worker.
    Undrain(WorkerName),
    /// Reassign a recording.
    Reassign {
        /// The recording.
        id: RecordingId,
        /// Its current worker.
        from: Option<WorkerName>,
    },
    /// Stop a recording.
    Stop(RecordingId),
    /// Start a recording.
    Start,
}

/// A field's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// Free text.
    Text(String),
    /// One of some options.
    Choice {
        /// The options, as shown.
        options: Vec<String>,
        /// The chosen one.
        index: usize,
    },
}

/// One field of a dialog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// Its label.
    pub label: &'static str,
    /// Its value.
    pub value: Value,
}

impl Field {
    fn text(label: &'static str, value: impl Into<String>) -> Field {
        Field {
            label,
            value: Value::Text(value.into()),
        }
    }

    fn choice(label: &'static str, options: &[&str]) -> Field {
        Field {
            label,
            value: Value::Choice {
                options: options.iter().map(|o| o.to_string()).collect(),
                index: 0,
            },
        }
    }

    /// The value as shown.
    pub fn shown(&self) -> &str {
        match &self.value {
            Value::Text(t) => t,
            Value::Choice { options, index } => options.get(*index).map_or("", String::as_str),
        }
    }
}

/// An open dialog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dialog {
    /// What it does.
    pub action: Action,
    /// Its fields.
    pub fields: Vec<Field>,
    /// The field with the cursor.
    pub focus: usize,
    /// Why the last confirm was not accepted.
    pub error: Option<String>,
}

impl Dialog {
    /// A dialog for `action`. `workers` are the ready workers, for reassign.
    pub fn new(action: Action, workers: &[WorkerName]) -> Dialog {
        let fields = match &action {
            Action::Drain { .. } => vec![
                Field::choice("mode", &["wait", "migrate"]),
                Field::text("deadline", ""),
                Field::choice("force", &["no", "yes"]),
            ],
            Action::Undrain(_) => vec![Field::choice("keep ineligible", &["no", "yes"])],
            Action::Reassign { from, .. } => {
                let mut options = vec!["scheduler picks".to_string()];
                options.extend(
                    workers
                        .iter()
                        .filter(|w| Some(*w) != from.as_ref())
                        .map(|w| w.to_string()),
                );
                vec![Field {
                    label: "target",
                    value: Value::Choice { options, index: 0 },
                }]
            }
            Action::Stop(_) => vec![],
            Action::Start => vec![
                Field::text("url", "https://"),
                Field::text("id", generated_id()),
                Field::text("max duration", ""),
            ],
        };
        Dialog {
            action,
            fields,
            focus: 0,
            error: None,
        }
    }

    fn field(&self, label: &str) -> &str {
        self.fields
            .iter()
            .find(|f| f.label == label)
            .map_or("", Field::shown)
    }

    /// The title, naming the target.
    pub fn title(&self) -> String {
        match &self.action {
            Action::Drain { worker, .. } => format!("Drain worker {worker}?"),
            Action::Undrain(w) => format!("Undrain worker {w}?"),
            Action::Reassign { id, .. } => format!("Reassign recording {id}?"),
            Action::Stop(id) => format!("Stop recording {id}?"),
            Action::Start => "Start a recording?".to_string(),
        }
    }

    /// The effect, as it would be with the current fields.
    pub fn effect(&self) -> String {
        match &self.action {
            Action::Drain { recordings, .. } => {
                let mode = self.drain_mode();
                let deadline = parse_duration(self.field("deadline"))
                    .ok()
                    .map(duration_secs);
                describe::drain_effect(
                    mode,
                    deadline,
                    self.field("force") == "yes",
                    Some(*recordings),
                )
            }
            Action::Undrain(_) => {
                if self.field("keep ineligible") == "yes" {
                    "The drain ends; the worker stays out of placement (ineligible).".to_string()
                } else {
                    "The drain ends; the worker takes new recordings again.".to_string()
                }
            }
            Action::Reassign { from, .. } => {
                let from = from
                    .as_ref()
                    .map_or("its worker".to_string(), |w| w.to_string());
                let target = match self.field("target") {
                    "scheduler picks" => "a worker the scheduler picks".to_string(),
                    w => w.to_string(),
                };
                format!("It moves from {from} to {target}, make-before-break: no gap.")
            }
            Action::Stop(_) => {
                "Capture stops; the last segment is closed and the manifest written.".to_string()
            }
            Action::Start => "A browser opens the page and records it until stopped.".to_string(),
        }
    }

    fn drain_mode(&self) -> DrainMode {
        if self.field("mode") == "migrate" {
            DrainMode::Migrate
        } else {
            DrainMode::Wait
        }
    }

    /// The request to send, or why the fields are not acceptable.
    pub fn request(&self) -> Result<ConsoleRequest, String> {
        Ok(match &self.action {
            Action::Drain { worker, .. } => {
                let deadline = match self.field("deadline").trim() {
                    "" => None,
                    d => Some(duration_secs(parse_duration(d)?)),
                };
                ConsoleRequest::Drain {
                    worker: worker.clone(),
                    mode: self.drain_mode(),
                    deadline_secs: deadline,
                    force: self.field("force") == "yes",
                }
            }
            Action::Undrain(worker) => ConsoleRequest::Undrain {
                worker: worker.clone(),
                keep_ineligible: self.field("keep ineligible") == "yes",
            },
            Action::Reassign { id, .. } => ConsoleRequest::Reassign {
                id: id.clone(),
                to: match self.field("target") {
                    "scheduler picks" => None,
                    w => Some(WorkerName::new(w).map_err(|e| e.to_string())?),
                },
            },
            Action::Stop(id) => ConsoleRequest::StopRecording { id: id.clone() },
            Action::Start => {
                let id = parse_recording(self.field("id").trim())?;
                let mut spec = RecordingSpec::new(id, self.field("url").trim());
                spec.stop.max_duration_secs = match self.field("max duration").trim() {
                    "" => None,
                    d => Some(duration_secs(parse_duration(d)?)),
                };
                spec.validate().map_err(|p| {
                    p.iter()
                        .map(|p| p.to_string())
                        .collect::<Vec<_>>()
                        .join("; ")
                })?;
                ConsoleRequest::StartRecording(spec)
            }
        })
    }

    /// A short name of the action, for the result line.
    pub fn what(&self) -> String {
        match &self.action {
            Action::Drain { worker, .. } => format!("drain {worker}"),
            Action::Undrain(w) => format!("undrain {w}"),
            Action::Reassign { id, .. } => format!("reassign {id}"),
            Action::Stop(id) => format!("stop {id}"),
            Action::Start => format!("start {}", self.field("id")),
        }
    }

    /// Moves the cursor to the next field.
    pub fn next_field(&mut self) {
        if !self.fields.is_empty() {
            self.focus = (self.focus + 1) % self.fields.len();
        }
    }

    /// Changes the focused choice by `delta` (left/right), wrapping.
    pub fn cycle(&mut self, forward: bool) {
        if let Some(Field {
            value: Value::Choice { options, index },
            ..
        }) = self.fields.get_mut(self.focus)
        {
            let n = options.len().max(1);
            *index = if forward {
                (*index + 1) % n
            } else {
                (*index + n - 1) % n
            };
        }
    }

    /// Types a character into the focused text field (space toggles a choice).
    pub fn type_char(&mut self, c: char) {
        match self.fields.get_mut(self.focus).map(|f| &mut f.value) {
            Some(Value::Text(t)) => t.push(c),
            Some(Value::Choice { .. }) if c == ' ' => self.cycle(true),
            _ => {}
        }
    }

    /// Deletes the last character of the focused text field.
    pub fn backspace(&mut self) {
        if let Some(Value::Text(t)) = self.fields.get_mut(self.focus).map(|f| &mut f.value) {
            t.pop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(n: &str) -> WorkerName {
        WorkerName::new(n).unwrap()
    }

    #[test]
    fn a_drain_dialog_builds_its_request() {
        let mut d = Dialog::new(
            Action::Drain {
                worker: w("w1"),
                recordings: 2,
            },
            &[],
        );
        d.cycle(true); // mode: migrate
        d.next_field();
        for c in "10m".chars() {
            d.type_char(c);
        }
        assert_eq!(
            d.request().unwrap(),
            ConsoleRequest::Drain {
                worker: w("w1"),
                mode: DrainMode::Migrate,
                deadline_secs: Some(600),
                force: false
            }
        );
        assert!(d.effect().contains("its 2 recordings move"));
        d.type_char('x');
        assert!(d.request().unwrap_err().contains("not a duration"));
    }

    #[test]
    fn reassign_offers_other_workers_and_the_scheduler() {
        let mut d = Dialog::new(
            Action::Reassign {
                id: RecordingId::new("r1").unwrap(),
                from: Some(w("w1")),
            },
            &[w("w1"), w("w2")],
        );
        assert_eq!(
            d.request().unwrap(),
            ConsoleRequest::Reassign {
                id: RecordingId::new("r1").unwrap(),
                to: None
            }
        );
        d.cycle(true);
        assert_eq!(d.field("target"), "w2");
        assert!(d.effect().contains("from w1 to w2"));
        d.cycle(true);
        assert_eq!(d.field("target"), "scheduler picks");
    }

    #[test]
    fn a_start_form_checks_the_spec() {
        let mut d = Dialog::new(Action::Start, &[]);
        assert!(d.request().unwrap_err().contains("url"));
        for c in "example.com/class".chars() {
            d.type_char(c);
        }
        assert!(matches!(d.request(), Ok(ConsoleRequest::StartRecording(_))));
    }
}
