//! `recfleet record events`: a recording's event track, read by the
//! coordinator from the recording's destination. A finalized recording's
//! `events.jsonl` is read as it is; a running one's chunks are joined and
//! placed on its timeline as it stands (positions are final once it is
//! finalized). The store read runs on this stream's task, never on the
//! driver's.

use std::time::Duration;

use quinn::SendStream;
use recfleet_certs::Identity;
use recfleet_protocol::events::ANSWER_MAX_BYTES;
use recfleet_protocol::EVENTS_PER_FRAME;
use recfleet_protocol::{
    now_ms, ConsoleRequest, ConsoleResponse, ErrorCode, EventsRequest, QueryFrame, RecordingDetail,
    RecordingId, TrackEvent, WireError,
};
use tokio::time::Instant;

use super::{ask, forbidden, Shared};
use crate::coordinator::cmd::{Cmd, REQUEST_DEADLINE};
use crate::output::destination::{Destination, DestinationError};
use crate::output::events;

/// How long reading the track from the store may take.
const READ_WITHIN: Duration = Duration::from_secs(60);
/// How long a frame may take to write to the console.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Answers one `OpenStream::Events` stream.
pub(super) async fn answer(
    shared: &Shared,
    identity: &Identity,
    req: EventsRequest,
    mut send: SendStream,
) {
    let frames = match read(shared, identity, &req).await {
        Ok(events) => frames(select(events, &req)),
        Err(e) => vec![QueryFrame::Error(e)],
    };
    for frame in frames {
        let write = recfleet_protocol::quic::write_frame(&mut send, &frame);
        if !matches!(tokio::time::timeout(WRITE_TIMEOUT, write).await, Ok(Ok(()))) {
            return;
        }
    }
    let _ = send.finish();
}

/// The answer in frames: the events, then the end.
fn frames(events: Vec<TrackEvent>) -> Vec<QueryFrame> {
    let mut out: Vec<QueryFrame> = events
        .chunks(EVENTS_PER_FRAME)
        .map(|c| QueryFrame::Events(c.to_vec()))
        .collect();
    out.push(QueryFrame::End {
        reason: "the track so far".into(),
    });
    out
}

/// The events the request asks for: its types, its last N.
fn select(mut events: Vec<TrackEvent>, req: &EventsRequest) -> Vec<TrackEvent> {
    if !req.types.is_empty() {
        events.retain(|e| req.types.contains(&e.kind));
    }
    if let Some(n) = req.tail {
        let skip = events.len().saturating_sub(n as usize);
        events.drain(..skip);
    }
    events
}

async fn read(
    shared: &Shared,
    identity: &Identity,
    req: &EventsRequest,
) -> Result<Vec<TrackEvent>, WireError> {
    if !identity.role().can_read_fleet() {
        super::audit_refusal(shared, identity, "read a recording's events");
        return Err(forbidden(identity, "read a recording's events"));
    }
    let until = Instant::now() + REQUEST_DEADLINE;
    let shown = ask(&shared.fleet, until, |reply| Cmd::Request {
        identity: identity.clone(),
        req: ConsoleRequest::ShowRecording {
            id: req.recording.clone(),
        },
        reply,
    })
    .await?;
    let detail = match shown {
        ConsoleResponse::Recording(d) => d,
        ConsoleResponse::Error(e) => return Err(e),
        _ => return Err(WireError::new(ErrorCode::Internal, "unexpected answer")),
    };
    let Some(url) = detail.spec.destination.clone() else {
        return Err(WireError::new(
            ErrorCode::NotFound,
            format!("recording {} has no destination yet", req.recording),
        ));
    };
    let dest = Destination::open(&url)
        .map_err(|e| WireError::new(ErrorCode::Unavailable, format!("destination {url}: {e}")))?;
    let read = read_track(&dest, &detail, &req.recording, &req.types, req.tail);
    match tokio::time::timeout(READ_WITHIN, read).await {
        Ok(Ok(events)) => Ok(events),
        Ok(Err(NotRead::TooLarge(why))) => Err(WireError::new(ErrorCode::InvalidInput, why)),
        Ok(Err(NotRead::Store(e))) => Err(WireError::new(
            ErrorCode::Unavailable,
            format!("the store at {url}: {e}"),
        )),
        Err(_) => Err(WireError::new(
            ErrorCode::Unavailable,
            format!(
                "the store at {url} did not answer within {} s",
                READ_WITHIN.as_secs()
            ),
        )),
    }
}

/// Why a track is not sent: the store failed, or it is too large for one
/// answer.
enum NotRead {
    Store(DestinationError),
    TooLarge(String),
}

impl From<DestinationError> for NotRead {
    fn from(e: DestinationError) -> Self {
        NotRead::Store(e)
    }
}

/// The recording's track: its `events.jsonl` once finalized, else the
/// chunks stored so far placed on its timeline as it stands.
async fn read_track(
    dest: &Destination,
    detail: &RecordingDetail,
    id: &RecordingId,
    types: &[String],
    tail: Option<u32>,
) -> Result<Vec<TrackEvent>, NotRead> {
    let dir = detail.spec.output_dir();
    let too_big = |what: String| {
        NotRead::TooLarge(format!(
            "the track of {id} is {what}: more than the {} MiB read for one answer; \
             read events.jsonl (or the chunks under events/) from {}",
            ANSWER_MAX_BYTES >> 20,
            dest.location(dir)
        ))
    };
    let joined = detail
        .manifest
        .outputs
        .as_ref()
        .and_then(|o| o.events.as_ref())
        .is_some_and(|e| e.file.is_some());
    if joined {
        return match events::joined_size(dest, dir).await? {
            Some(size) if size > ANSWER_MAX_BYTES => Err(too_big(format!("{} MiB", size >> 20))),
            _ => Ok(events::read_joined(dest, dir).await?),
        };
    }
    let (spans, tl) = events::live_timeline(&detail.manifest, now_ms());
    // The last N of every type (the TUI's latest events, every 2 s): the
    // newest chunks only, not the whole of a long recording.
    if let (Some(n), true) = (tail, types.is_empty()) {
        let read = events::read_last_chunks(dest, dir, n as usize).await?;
        return Ok(events::place(read, &spans, &tl));
    }
    let (read, unread) = events::read_chunks(dest, dir, ANSWER_MAX_BYTES).await?;
    if unread > 0 {
        return Err(too_big(format!("{unread} chunks larger")));
    }
    Ok(events::place(read, &spans, &tl))
}
