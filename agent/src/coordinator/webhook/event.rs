//! What a webhook says: the event, its JSON body, and which recording state
//! changes are events at all. Pure: no clock, no I/O.

use recfleet_protocol::{RecordingId, RecordingState};
use serde::Serialize;

use crate::coordinator::store::RecordingRow;

/// The kinds of events, each a `type` in the JSON body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum WebhookKind {
    /// The first frame of the recording was captured.
    #[serde(rename = "recording.started")]
    Started,
    /// It lost its worker (or its worker gave up) while recording; it waits
    /// to be placed again.
    #[serde(rename = "recording.interrupted")]
    Interrupted,
    /// It captures frames again after an interruption.
    #[serde(rename = "recording.resumed")]
    Resumed,
    /// It ended with something captured; `output` says where it is.
    #[serde(rename = "recording.completed")]
    Completed,
    /// It ended without a usable recording; `reason` says why.
    #[serde(rename = "recording.failed")]
    Failed,
    /// It was stopped before anything was captured.
    #[serde(rename = "recording.cancelled")]
    Cancelled,
}

impl WebhookKind {
    /// The `type` of the body and of the `Recfleet-Event-Type` header.
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookKind::Started => "recording.started",
            WebhookKind::Interrupted => "recording.interrupted",
            WebhookKind::Resumed => "recording.resumed",
            WebhookKind::Completed => "recording.completed",
            WebhookKind::Failed => "recording.failed",
            WebhookKind::Cancelled => "recording.cancelled",
        }
    }

    /// The event a state change is, if any. `recorded_before`: an earlier
    /// placement of the recording captured frames (so entering `Recording`
    /// again is a resumption, not a start). Intermediate states (assigned,
    /// starting, stopping, finalizing) are not news to a platform, and an
    /// interruption before the first frame of a placement is not either:
    /// the platform was told `interrupted` when the frames stopped.
    pub fn of_transition(
        from: RecordingState,
        to: RecordingState,
        recorded_before: bool,
    ) -> Option<WebhookKind> {
        use RecordingState as S;
        match (from, to) {
            (_, S::Recording) if recorded_before => Some(WebhookKind::Resumed),
            (_, S::Recording) => Some(WebhookKind::Started),
            (S::Recording, S::Interrupted) => Some(WebhookKind::Interrupted),
            (_, S::Completed) => Some(WebhookKind::Completed),
            (_, S::Failed) => Some(WebhookKind::Failed),
            (_, S::Cancelled) => Some(WebhookKind::Cancelled),
            _ => None,
        }
    }
}

/// One event, the same for every URL it goes to.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WebhookEvent {
    /// Unique and stable (`<recording>-<event seq>`): the receiver's
    /// idempotency key, the same on every retry.
    pub id: String,
    /// What happened.
    #[serde(rename = "type")]
    pub kind: WebhookKind,
    /// To which recording.
    pub recording: RecordingId,
    /// When, in milliseconds since the Unix epoch.
    pub at: u64,
    /// Why (interrupted, failed, cancelled; completed says how it ended).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Where the recording is (completed only): see [`output_of`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<serde_json::Value>,
}

impl WebhookEvent {
    /// The event for a recording's row just after a state change to `kind`;
    /// `seq` is the fleet's event number of the change, unique across
    /// restarts.
    pub fn new(kind: WebhookKind, row: &RecordingRow, seq: u64, at: u64) -> WebhookEvent {
        let reason = match kind {
            WebhookKind::Started | WebhookKind::Resumed => None,
            _ => row.reason.clone(),
        };
        WebhookEvent {
            id: format!("{}-{seq}", row.spec.id),
            kind,
            recording: row.spec.id.clone(),
            at,
            reason,
            output: (kind == WebhookKind::Completed).then(|| output_of(row)),
        }
    }

    /// The JSON body, exactly the bytes that are signed and sent.
    pub fn body(&self) -> String {
        // A struct of strings, numbers and a JSON value cannot fail to
        // serialize; an empty object is still a valid body if it ever did.
        serde_json::to_string(self).unwrap_or_else(|_| "{}".into())
    }
}

/// Where a completed recording's output is, for the `output` field of
/// `recording.completed`: the URLs of its objects in its destination
/// (`location` the recording's directory; `mp4` and `hls` once made;
/// `events` and `chapters` when the page left an event track).
pub fn output_of(row: &RecordingRow) -> serde_json::Value {
    let dir = row.spec.output_dir();
    let location = match (&row.outputs, &row.spec.destination) {
        (Some(o), _) if !o.location.is_empty() => o.location.clone(),
        (_, Some(d)) => format!("{}/{dir}", d.trim_end_matches('/')),
        _ => dir.to_string(),
    };
    let outputs = row.outputs.as_ref();
    serde_json::json!({
        "location": location,
        "manifest": format!("{location}/manifest.json"),
        "mp4": outputs.and_then(|o| o.recording.as_ref()).map(|f| f.url.clone()),
        "hls": outputs.and_then(|o| o.playlist.as_ref()).map(|f| f.url.clone()),
        "duration_ms": outputs.and_then(|o| o.recording.as_ref()).map(|f| f.duration_ms),
        "events": outputs.and_then(|o| o.events.as_ref()?.file.as_ref()).map(|f| f.url.clone()),
        "chapters": outputs.and_then(|o| o.events.as_ref()?.chapters.as_ref()).map(|f| f.url.clone()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use recfleet_protocol::RecordingState as S;

    #[test]
    fn state_changes_that_are_events() {
        let of = WebhookKind::of_transition;
        assert_eq!(
            of(S::Starting, S::Recording, false),
            Some(WebhookKind::Started)
        );
        assert_eq!(
            of(S::Starting, S::Recording, true),
            Some(WebhookKind::Resumed)
        );
        assert_eq!(
            of(S::Recording, S::Interrupted, true),
            Some(WebhookKind::Interrupted)
        );
        // a placement that never captured a frame: no news
        assert_eq!(of(S::Starting, S::Interrupted, true), None);
        assert_eq!(of(S::Assigned, S::Interrupted, false), None);
        assert_eq!(
            of(S::Finalizing, S::Completed, true),
            Some(WebhookKind::Completed)
        );
        assert_eq!(of(S::Recording, S::Failed, true), Some(WebhookKind::Failed));
        assert_eq!(
            of(S::Pending, S::Cancelled, false),
            Some(WebhookKind::Cancelled)
        );
        for quiet in [
            S::Pending,
            S::Assigned,
            S::Starting,
            S::Stopping,
            S::Finalizing,
        ] {
            for from in S::ALL {
                assert_eq!(of(from, quiet, false), None, "{from} -> {quiet}");
            }
        }
    }

    #[test]
    fn the_body_names_its_type_and_recording() {
        let spec = recfleet_protocol::RecordingSpec::new(
            RecordingId::new("class-42").unwrap(),
            "https://school.example/room/42",
        );
        let row = RecordingRow {
            spec,
            state: S::Completed,
            epoch: recfleet_protocol::Epoch(1),
            worker: None,
            created_at: 1,
            started_at: Some(2),
            ended_at: Some(3),
            reason: Some("stopped by alice".into()),
            restarts: 0,
            failed_placements: 0,
            outputs: None,
        };
        let e = WebhookEvent::new(WebhookKind::Completed, &row, 77, 1_700_000_000_000);
        let v: serde_json::Value = serde_json::from_str(&e.body()).unwrap();
        assert_eq!(v["id"], "class-42-77");
        assert_eq!(v["type"], "recording.completed");
        assert_eq!(v["recording"], "class-42");
        assert_eq!(v["at"], 1_700_000_000_000u64);
        assert_eq!(v["reason"], "stopped by alice");
        assert!(v["output"]["manifest"]
            .as_str()
            .unwrap()
            .ends_with("/manifest.json"));
        let started = WebhookEvent::new(WebhookKind::Started, &row, 5, 1);
        let v: serde_json::Value = serde_json::from_str(&started.body()).unwrap();
        assert!(
            v.get("reason").is_none() && v.get("output").is_none(),
            "{v}"
        );
    }
}
