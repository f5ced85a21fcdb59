//! The recording request ("spec") and its validation. Validation returns
//! every problem at once so that a caller fixes a request in one go.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::egress::check_url_syntax;
use crate::ids::RecordingId;

/// The size of the browser window and of the captured picture, in pixels.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Viewport {
    /// Width in pixels; even, 160 to 3840.
    pub width: u16,
    /// Height in pixels; even, 120 to 2160.
    pub height: u16,
}

impl Default for Viewport {
    fn default() -> Self {
        Viewport {
            width: 1280,
            height: 720,
        }
    }
}

impl fmt::Display for Viewport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}", self.width, self.height)
    }
}

impl std::str::FromStr for Viewport {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("\"{s}\" is not a size: expected WIDTHxHEIGHT such as 1280x720");
        let (w, h) = s.split_once(['x', 'X']).ok_or_else(bad)?;
        Ok(Viewport {
            width: w.trim().parse().map_err(|_| bad())?,
            height: h.trim().parse().map_err(|_| bad())?,
        })
    }
}

/// How the page tells that the class has ended.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PageSignal {
    /// A global JavaScript variable (dotted path from `window`) becomes truthy.
    Variable(String),
    /// An element matching this CSS selector appears.
    Selector(String),
}

impl PageSignal {
    /// The signal the demo class page gives.
    pub fn demo() -> Self {
        PageSignal::Variable("recfleetClassEnded".into())
    }
}

/// When a recording stops on its own. An explicit stop request always works.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub struct StopConditions {
    /// Stop after this many seconds of recording (at most 24 h).
    pub max_duration_secs: Option<u32>,
    /// Stop when the page signals the end of the class.
    pub page_signal: Option<PageSignal>,
    /// Stop when the room is empty for this many seconds: no live remote
    /// WebRTC media in the page (or, if the page sets it, the global
    /// `recfleetParticipants` equal to 0).
    pub empty_room_timeout_secs: Option<u32>,
}

/// What produces the segment files.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CaptureMode {
    /// The worker drives Chromium through ChromeDriver and encodes with ffmpeg.
    #[default]
    Builtin,
    /// An external command does the capture in the prepared slot and speaks the
    /// JSON-lines contract of `examples/capture/README.md`.
    External {
        /// Program and arguments (no shell).
        command: Vec<String>,
    },
}

/// Everything needed to record one class.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordingSpec {
    /// Client-chosen id; starting the same id twice returns the same recording.
    pub id: RecordingId,
    /// The class page (http or https only).
    pub url: String,
    /// Window and picture size.
    pub viewport: Viewport,
    /// Frames per second of the capture, 1 to 60.
    pub fps: u8,
    /// Whether sound is captured.
    pub audio: bool,
    /// When to stop on its own.
    pub stop: StopConditions,
    /// Placement constraints: a worker must carry every one of these labels.
    pub labels: BTreeMap<String, String>,
    /// Capacity units this recording takes on a worker (1 to 1000).
    pub cost: u32,
    /// Builtin pipeline or an external capture command.
    pub capture: CaptureMode,
    /// Sub-directory of the worker's output root for the segment files
    /// (relative, no `..`); defaults to the recording id.
    pub output: Option<String>,
    /// Where the recording is stored: `file:///DIR` or `s3://BUCKET/PREFIX`
    /// (None: the coordinator's default, filled in when it accepts the
    /// recording). Objects go under `<destination>/<output_dir()>/`.
    #[serde(default)]
    pub destination: Option<String>,
    /// When the recording counts as silent, frozen or black, and which of
    /// those restart its slot (what it leaves out: the coordinator's
    /// defaults, filled in when it accepts the recording).
    #[serde(default)]
    pub health: Box<crate::health::HealthRequest>,
    /// What is kept of the page beside its picture: watched elements and
    /// the chapters' event type (docs/events.md).
    /// (This and `health` are boxed: most recordings leave them empty, and
    /// the spec rides in messages whose other variants are small.)
    #[serde(default)]
    pub events: Box<crate::events::EventOptions>,
    /// Copies recorded at once, 1 or 2. With 2 a second worker (on another
    /// host when there is one) records the same page all along, so a
    /// worker's death costs no moment of the recording; it costs twice the
    /// capacity.
    #[serde(default = "one_copy")]
    pub redundancy: u8,
}

fn one_copy() -> u8 {
    1
}

impl RecordingSpec {
    /// A spec with the defaults: 1280x720 at 15 fps with sound, cost 1.
    pub fn new(id: RecordingId, url: impl Into<String>) -> Self {
        RecordingSpec {
            id,
            url: url.into(),
            viewport: Viewport::default(),
            fps: 15,
            audio: true,
            stop: StopConditions::default(),
            labels: BTreeMap::new(),
            cost: 1,
            capture: CaptureMode::Builtin,
            output: None,
            destination: None,
            health: Box::default(),
            events: Box::default(),
            redundancy: 1,
        }
    }

    /// The output sub-directory to use.
    pub fn output_dir(&self) -> &str {
        self.output.as_deref().unwrap_or(self.id.as_str())
    }

    /// Checks every field and returns all problems found, not only the first.
    pub fn validate(&self) -> Result<(), Vec<SpecProblem>> {
        let mut p = Problems::default();
        if let Err(e) = check_url_syntax(&self.url) {
            p.add("url", e);
        }
        let Viewport { width, height } = self.viewport;
        if !(160..=3840).contains(&width) || width % 2 != 0 {
            p.add(
                "viewport.width",
                format!("{width} is not allowed: expected an even number from 160 to 3840"),
            );
        }
        if !(120..=2160).contains(&height) || height % 2 != 0 {
            p.add(
                "viewport.height",
                format!("{height} is not allowed: expected an even number from 120 to 2160"),
            );
        }
        if !(1..=60).contains(&self.fps) {
            p.add(
                "fps",
                format!("{} is not allowed: expected 1 to 60", self.fps),
            );
        }
        if let Some(d) = self.stop.max_duration_secs {
            if d == 0 || d > 86_400 {
                p.add(
                    "stop.max_duration_secs",
                    format!("{d} is not allowed: expected 1 to 86400 seconds"),
                );
            }
        }
        if !(1..=2).contains(&self.redundancy) {
            p.add(
                "redundancy",
                format!(
                    "{} is not allowed: expected 1 (one copy) or 2 (two copies on two workers)",
                    self.redundancy
                ),
            );
        }
        if let Some(t) = self.stop.empty_room_timeout_secs {
            if t == 0 || t > 86_400 {
                p.add(
                    "stop.empty_room_timeout_secs",
                    format!("{t} is not allowed: expected 1 to 86400 seconds"),
                );
            }
        }
        for (field, message) in self.events.problems() {
            p.add(field, message);
        }
        for (field, message) in self.health.resolve().problems() {
            p.add(field, message);
        }
        match &self.stop.page_signal {
            Some(PageSignal::Variable(v)) if !is_js_path(v) => p.add(
                "stop.page_signal",
                format!("\"{v}\" is not a variable path: expected names like recfleetClassEnded or app.state.ended"),
            ),
            Some(PageSignal::Selector(s)) if s.trim().is_empty() || s.len() > 256 => p.add(
                "stop.page_signal",
                "a selector must be 1 to 256 characters".to_string(),
            ),
            _ => {}
        }
        if self.labels.len() > 32 {
            p.add(
                "labels",
                format!("{} labels given, at most 32 are allowed", self.labels.len()),
            );
        }
        for (k, v) in &self.labels {
            if !is_label_key(k) {
                p.add(
                    "labels",
                    format!("key \"{k}\" is not allowed: expected 1 to 63 of a-z 0-9 . _ / -"),
                );
            }
            if v.len() > 63 || v.chars().any(|c| c.is_control()) {
                p.add(
                    "labels",
                    format!("value of \"{k}\" is not allowed: at most 63 printable characters"),
                );
            }
        }
        if !(1..=1000).contains(&self.cost) {
            p.add(
                "cost",
                format!("{} is not allowed: expected 1 to 1000", self.cost),
            );
        }
        if let CaptureMode::External { command } = &self.capture {
            if command.is_empty() || command[0].trim().is_empty() {
                p.add(
                    "capture.command",
                    "an external capture needs a program to run".to_string(),
                );
            }
        }
        if let Some(out) = &self.output {
            if let Err(e) = check_relative_dir(out) {
                p.add("output", e);
            }
        }
        if let Some(dest) = &self.destination {
            if let Err(e) = check_destination(dest) {
                p.add("destination", e);
            }
        }
        p.finish()
    }
}

/// One thing wrong with a spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpecProblem {
    /// The field, as a dotted path (`viewport.width`).
    pub field: String,
    /// What is wrong and what is expected.
    pub message: String,
}

impl fmt::Display for SpecProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

#[derive(Default)]
struct Problems(Vec<SpecProblem>);

impl Problems {
    fn add(&mut self, field: &str, message: String) {
        self.0.push(SpecProblem {
            field: field.to_string(),
            message,
        });
    }
    fn finish(self) -> Result<(), Vec<SpecProblem>> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(self.0)
        }
    }
}

fn is_js_path(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 128
        && v.split('.').all(|part| {
            let mut chars = part.chars();
            matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == '$')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
        })
}

fn is_label_key(k: &str) -> bool {
    (1..=63).contains(&k.len())
        && k.chars().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '/' | '-')
        })
}

/// A destination is `file:///ABSOLUTE/DIR` or `s3://BUCKET[/PREFIX]`; the
/// store itself is checked where it is opened (worker and coordinator).
pub fn check_destination(dest: &str) -> Result<(), String> {
    if dest.len() > 1024 || dest.chars().any(|c| c.is_control()) {
        return Err("must be at most 1024 printable characters".into());
    }
    if let Some(path) = dest.strip_prefix("file://") {
        if !path.starts_with('/') {
            return Err(format!(
                "\"{dest}\": a file destination is file:///ABSOLUTE/DIR"
            ));
        }
        if path.split('/').any(|c| c == "..") {
            return Err(format!("\"{dest}\" may not contain \"..\""));
        }
        return Ok(());
    }
    if let Some(rest) = dest.strip_prefix("s3://") {
        let bucket = rest.split('/').next().unwrap_or("");
        let ok = (3..=63).contains(&bucket.len())
            && bucket
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
        if !ok {
            return Err(format!(
                "\"{dest}\": the bucket name must be 3 to 63 of a-z 0-9 . -"
            ));
        }
        if rest.split('/').skip(1).any(|c| c == ".." || c == ".") {
            return Err(format!("\"{dest}\" may not contain \"..\" or \".\""));
        }
        return Ok(());
    }
    Err(format!(
        "\"{dest}\": expected file:///DIR or s3://BUCKET/PREFIX"
    ))
}

fn check_relative_dir(out: &str) -> Result<(), String> {
    let path = std::path::Path::new(out);
    if out.is_empty() || out.len() > 255 {
        return Err("must be 1 to 255 characters".into());
    }
    if path.is_absolute() {
        return Err(format!(
            "\"{out}\" is absolute: expected a path under the worker's output root"
        ));
    }
    if path
        .components()
        .any(|c| !matches!(c, std::path::Component::Normal(_)))
    {
        return Err(format!("\"{out}\" may not contain \"..\" or \".\""));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> RecordingSpec {
        RecordingSpec::new(
            RecordingId::new("r1").unwrap(),
            "http://127.0.0.1:8080/class.html",
        )
    }

    #[test]
    fn the_default_spec_is_valid() {
        assert_eq!(spec().validate(), Ok(()));
    }

    #[test]
    fn validation_returns_every_problem() {
        let mut s = spec();
        s.url = "file:///etc/passwd".into();
        s.viewport = Viewport {
            width: 7,
            height: 5000,
        };
        s.fps = 0;
        s.cost = 0;
        s.output = Some("../escape".into());
        let problems = s.validate().unwrap_err();
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "url",
                "viewport.width",
                "viewport.height",
                "fps",
                "cost",
                "output"
            ]
        );
        assert!(problems[0].message.contains("only http and https"));
    }

    #[test]
    fn page_signal_variable_must_be_a_path() {
        let mut s = spec();
        s.stop.page_signal = Some(PageSignal::Variable("a.b_c.$d".into()));
        assert!(s.validate().is_ok());
        s.stop.page_signal = Some(PageSignal::Variable("alert(1)".into()));
        assert!(s.validate().is_err());
    }

    #[test]
    fn viewport_parses() {
        assert_eq!("1280x720".parse::<Viewport>().unwrap(), Viewport::default());
        assert!("1280".parse::<Viewport>().is_err());
    }
}
