//! The event track: what happened in the class beside its picture (slide
//! changes, strokes, chat, who joined), on the recording's own timeline.
//! Pages emit events through `window.recfleet.emit(type, data)`, watched
//! elements emit their text when it changes, and the browser's own facts
//! (navigation, title, console errors, WebRTC peers) are always recorded.
//! Workers store them in chunks beside the media (`events/e<E>-p<P>/`);
//! finalizing joins them into `events.jsonl` with each event's position in
//! `recording.mp4`, and a WebVTT chapters file from one event type.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The joined track's key in the recording's directory.
pub const EVENTS_KEY: &str = "events.jsonl";
/// The chapters file's key.
pub const CHAPTERS_KEY: &str = "chapters.vtt";
/// Where the workers' event chunks are: `events/e<E>-p<P>/<NNNNN>.jsonl`.
pub const EVENT_CHUNKS_DIR: &str = "events";
/// Longest event type, bytes.
pub const TYPE_MAX: usize = 64;
/// Largest event data, bytes of JSON; a larger event is dropped.
pub const DATA_MAX: usize = 8 * 1024;
/// Events a page may emit per second, sustained (the browser's own facts
/// count too); more are dropped and counted.
pub const RATE_PER_SEC: u32 = 200;
/// Events a page may emit at once before the rate applies.
pub const BURST: u32 = 400;
/// The most elements watched per recording.
pub const WATCH_MAX: usize = 8;
/// The event a page emits to end its recording.
pub const STOP_TYPE: &str = "recfleet.stop";
/// The event the worker adds when it dropped events: `{"count": N}`.
pub const DROPPED_TYPE: &str = "recfleet.dropped";

/// What a recording keeps of its page beside the picture.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub struct EventOptions {
    /// CSS selectors of elements whose text is recorded each time it
    /// changes (type `watch`, data `{"selector": ..., "text": ...}`).
    #[serde(default)]
    pub watch_text: Vec<String>,
    /// The event type that makes the chapters file (`slide`): one chapter
    /// per event, titled by its data.
    #[serde(default)]
    pub chapters: Option<String>,
}

impl EventOptions {
    /// Every problem of these options, as (field, message).
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if self.watch_text.len() > WATCH_MAX {
            out.push((
                "events.watch_text",
                format!(
                    "{} selectors given, at most {WATCH_MAX} are allowed",
                    self.watch_text.len()
                ),
            ));
        }
        for s in &self.watch_text {
            if s.trim().is_empty() || s.len() > 256 {
                out.push((
                    "events.watch_text",
                    "a selector must be 1 to 256 characters".to_string(),
                ));
            }
        }
        if let Some(t) = &self.chapters {
            if let Err(e) = check_type(t) {
                out.push(("events.chapters", e));
            }
        }
        out
    }
}

/// Checks an event type: 1 to [`TYPE_MAX`] of `A-Z a-z 0-9 . _ : -`.
pub fn check_type(t: &str) -> Result<(), String> {
    let ok = !t.is_empty()
        && t.len() <= TYPE_MAX
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b));
    match ok {
        true => Ok(()),
        false => Err(format!(
            "\"{t}\" is not an event type: expected 1 to {TYPE_MAX} of A-Z a-z 0-9 . _ : -"
        )),
    }
}

/// Who produced an event.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventSource {
    /// The page, through `window.recfleet.emit`.
    Page,
    /// A watched element's text changed.
    Watch,
    /// The browser: navigation, title, console errors, WebRTC peers.
    Browser,
    /// The worker: a crashed page, dropped events.
    Worker,
}

impl fmt::Display for EventSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EventSource::Page => "page",
            EventSource::Watch => "watch",
            EventSource::Browser => "browser",
            EventSource::Worker => "worker",
        })
    }
}

/// One event, as stored: a line of `events.jsonl` (and of its chunks).
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackEvent {
    /// Position on the recording's timeline, ms: the moment of
    /// `recording.mp4` (and of the manifest's times) it happened at.
    /// Negative before the first frame. None in the workers' chunks.
    #[serde(default)]
    pub media_ms: Option<i64>,
    /// Wall clock when it happened, Unix ms (the page's clock for page
    /// events).
    pub wall_ms: u64,
    /// The segment whose page produced it (`e1-p0`).
    pub segment: String,
    /// Its order in that segment, from 0.
    pub seq: u64,
    /// Who produced it.
    pub source: EventSource,
    /// Its type (`slide`, `browser.navigation`...).
    #[serde(rename = "type")]
    pub kind: String,
    /// Its data, JSON text on the wire and a JSON value in files.
    #[serde(with = "json_text")]
    pub data: String,
}

/// A JSON value carried as its text: postcard cannot encode an arbitrary
/// JSON value, and a file should show the value itself, not a string of it.
mod json_text {
    use serde::de::Error as _;
    use serde::ser::Error as _;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(text: &str, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            let v: serde_json::Value = serde_json::from_str(text).map_err(S::Error::custom)?;
            v.serialize(s)
        } else {
            s.serialize_str(text)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        if d.is_human_readable() {
            let v = serde_json::Value::deserialize(d)?;
            serde_json::to_string(&v).map_err(D::Error::custom)
        } else {
            String::deserialize(d)
        }
    }
}

/// The most bytes of chunks joined into `events.jsonl` (the coordinator
/// holds them in memory while it does).
pub const JOIN_MAX_BYTES: u64 = 512 * 1024 * 1024;
/// The most bytes of track `recfleet record events` reads for one answer.
pub const ANSWER_MAX_BYTES: u64 = 64 * 1024 * 1024;
/// The most events one part keeps (at the page's limit, 40 minutes of a
/// page that emits all it may); more are dropped and counted.
pub const PART_MAX_EVENTS: u64 = 500_000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_is_a_value_in_json_and_text_on_the_wire() {
        let e = TrackEvent {
            media_ms: Some(1500),
            wall_ms: 1_796_000_000_000,
            segment: "e1-p0".into(),
            seq: 3,
            source: EventSource::Page,
            kind: "slide".into(),
            data: r#"{"n":7,"title":"Fractions"}"#.into(),
        };
        let json = serde_json::to_string(&e).unwrap();
        assert!(
            json.contains(r#""data":{"n":7,"title":"Fractions"}"#),
            "{json}"
        );
        assert!(json.contains(r#""type":"slide""#), "{json}");
        assert_eq!(serde_json::from_str::<TrackEvent>(&json).unwrap(), e);
        let wire = postcard::to_allocvec(&e).unwrap();
        assert_eq!(postcard::from_bytes::<TrackEvent>(&wire).unwrap(), e);
    }

    #[test]
    fn event_types_are_short_plain_names() {
        assert!(check_type("slide").is_ok());
        assert!(check_type("browser.webrtc").is_ok());
        assert!(check_type("").is_err());
        assert!(check_type("a b").is_err());
        assert!(check_type(&"x".repeat(65)).is_err());
        let o = EventOptions {
            watch_text: vec!["#slide".into(), " ".into()],
            chapters: Some("no spaces".into()),
        };
        assert_eq!(o.problems().len(), 2);
    }
}
