//! `record start|stop|show|thumbnail|events`.

use std::collections::BTreeMap;
use std::time::Duration;

use recfleet_client::Started;
use recfleet_protocol::{
    RecordingDetail, RecordingId, RecordingSpec, RecordingState, WebhookDelivery,
};

use super::Session;
use crate::cli::{duration_secs, generated_id, Output, StartArgs};
use crate::error::ConsoleError;
use crate::format;

/// How often `--wait` asks for the recording's state.
const POLL: Duration = Duration::from_millis(500);

/// The spec a `record start` asks for. Problems are listed all at once.
pub fn spec_from_args(args: &StartArgs) -> Result<RecordingSpec, ConsoleError> {
    let id = match &args.id {
        Some(id) => id.clone(),
        None => {
            RecordingId::new(generated_id()).map_err(|e| ConsoleError::Invalid(e.to_string()))?
        }
    };
    let mut spec = RecordingSpec::new(id, args.url.clone());
    spec.fps = args.fps;
    spec.viewport = args.size;
    spec.audio = !args.no_audio;
    spec.redundancy = args.redundancy;
    spec.stop.max_duration_secs = args.max_duration.map(duration_secs);
    spec.labels = args.labels.iter().cloned().collect::<BTreeMap<_, _>>();
    spec.destination = args.destination.clone();
    spec.stop.empty_room_timeout_secs = args.empty_room_after.map(duration_secs);
    spec.events = Box::new(recfleet_protocol::EventOptions {
        watch_text: args.watch_text.clone(),
        chapters: args.chapters.clone(),
    });
    spec.health = Box::new(recfleet_protocol::HealthRequest {
        silent_secs: args.silent_after.map(duration_secs),
        frozen_secs: args.frozen_after.map(duration_secs),
        black_secs: args.black_after.map(duration_secs),
        restart_crashed: args.no_restart_on_crash.then_some(false),
        restart_frozen_secs: args.restart_frozen_after,
        restart_black_secs: args.restart_black_after,
    });
    spec.validate().map_err(|problems| {
        ConsoleError::Wire(
            recfleet_protocol::WireError::new(
                recfleet_protocol::ErrorCode::InvalidInput,
                "the recording request is not valid",
            )
            .with_details(problems.iter().map(|p| p.to_string()).collect()),
        )
    })?;
    Ok(spec)
}

pub(super) async fn start(s: &Session, args: StartArgs) -> Result<(), ConsoleError> {
    let spec = spec_from_args(&args)?;
    let id = spec.id.clone();
    let Started { recording, created } = s.client.start(spec).await?;
    if !args.wait {
        return match s.output {
            Output::Json | Output::Yaml => {
                s.json(&serde_json::json!({ "created": created, "recording": recording }))
            }
            Output::Table | Output::Wide => s.text(&format!(
                "recording {id} {} ({})",
                if created { "started" } else { "already exists" },
                recording.state
            )),
        };
    }
    if !s.output.structured() {
        eprintln!("recording {id}: {}", recording.state);
    }
    let detail = wait_until_terminal(s, &id, recording.state).await?;
    match s.output {
        Output::Json | Output::Yaml => s.json(&serde_json::json!({
            "created": created,
            "recording": detail.info,
            "manifest": detail.manifest,
            "output_dir": detail.spec.output_dir(),
        }))?,
        Output::Table | Output::Wide => s.text(&final_summary(&detail))?,
    }
    match detail.info.state {
        RecordingState::Completed => Ok(()),
        state => Err(ConsoleError::RecordingFailed {
            id: id.to_string(),
            state: state.to_string(),
            reason: detail.info.reason.clone(),
        }),
    }
}

/// Polls `ShowRecording` until a terminal state, printing each new state on
/// stderr in table mode.
async fn wait_until_terminal(
    s: &Session,
    id: &RecordingId,
    mut last: RecordingState,
) -> Result<RecordingDetail, ConsoleError> {
    loop {
        let detail = show_detail(s, id).await?;
        if detail.info.state != last {
            last = detail.info.state;
            if !s.output.structured() {
                eprintln!("recording {id}: {last}");
            }
        }
        if last.is_terminal() {
            return Ok(detail);
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn show_detail(s: &Session, id: &RecordingId) -> Result<RecordingDetail, ConsoleError> {
    Ok(s.client.show(id.clone()).await?)
}

/// The human summary of a recording's manifest.
pub fn final_summary(d: &RecordingDetail) -> String {
    let m = &d.manifest;
    let mut out = format!(
        "recording {} {}: {} segment(s), {} captured, {} gap(s)",
        d.info.id,
        d.info.state,
        m.segments.len(),
        format::span(m.total_captured_ms),
        m.gaps.len()
    );
    if let Some(r) = &d.info.reason {
        out.push_str(&format!("\nreason: {r}"));
    }
    let mut workers: Vec<&str> = m.segments.iter().map(|s| s.worker.as_str()).collect();
    workers.dedup();
    let location = match (&m.outputs, &d.spec.destination) {
        (Some(o), _) if !o.location.is_empty() => o.location.clone(),
        (_, Some(dest)) => format!("{}/{}", dest.trim_end_matches('/'), d.spec.output_dir()),
        _ => format!("{}/", d.spec.output_dir()),
    };
    out.push_str(&format!(
        "\noutput: {location} from {}",
        if workers.is_empty() {
            "no worker yet".to_string()
        } else {
            workers.join(", ")
        }
    ));
    if let Some(o) = &m.outputs {
        if let Some(f) = &o.recording {
            out.push_str(&format!(
                "\nrecording.mp4: {} ({}, {})",
                f.url,
                format::span(f.duration_ms),
                format::bytes(f.bytes)
            ));
        }
        if let Some(f) = &o.playlist {
            out.push_str(&format!("\nplaylist: {}", f.url));
        }
        if let Some(e) = &o.error {
            out.push_str(&format!("\nnot stitched: {e}"));
        }
    }
    if d.info.upload_lag_ms >= 5_000 {
        out.push_str(&format!(
            "\nupload lag: {} (chunks wait on the worker's disk)",
            format::span(d.info.upload_lag_ms)
        ));
    }
    for seg in &m.segments {
        let end = seg
            .end_reason
            .as_ref()
            .map_or("running".to_string(), |r| r.describe());
        out.push_str(&format!(
            "\n  {}  epoch {} part {}  {}  {} in {} chunk(s)  {}",
            seg.file,
            seg.epoch,
            seg.part,
            seg.worker,
            format::bytes(seg.bytes),
            seg.chunks.iter().filter(|c| c.seq.is_some()).count(),
            end
        ));
    }
    for g in &m.gaps {
        out.push_str(&format!(
            "\n  gap {} -> {} ({})",
            format::clock(g.from),
            format::clock(g.to),
            format::span(g.duration_ms)
        ));
    }
    out
}

pub(super) async fn stop(s: &Session, id: RecordingId) -> Result<(), ConsoleError> {
    let message = s.client.stop(id).await?;
    s.accepted(&message)
}

pub(super) async fn show(s: &Session, id: RecordingId) -> Result<(), ConsoleError> {
    let detail = show_detail(s, &id).await?;
    // Webhook deliveries are a request of their own: a coordinator that
    // predates them (or cannot read them now) still shows the recording.
    let webhooks = s.client.webhooks(id).await.ok();
    match s.output {
        Output::Json | Output::Yaml => {
            let mut value = serde_json::to_value(&detail)
                .map_err(|e| ConsoleError::Unexpected(format!("cannot encode JSON: {e}")))?;
            if let (Some(obj), Some(w)) = (value.as_object_mut(), &webhooks) {
                let w = serde_json::to_value(w)
                    .map_err(|e| ConsoleError::Unexpected(format!("cannot encode JSON: {e}")))?;
                obj.insert("webhooks".into(), w);
            }
            s.json(&value)
        }
        Output::Table | Output::Wide => {
            let mut text = final_summary(&detail);
            let h = &detail.info.health;
            if h.state != recfleet_protocol::HealthState::Unknown {
                text.push_str(&format!(
                    "\nhealth: {} for {}{}",
                    h.state,
                    format::age(recfleet_protocol::now_ms(), h.since),
                    if h.detail.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", h.detail)
                    }
                ));
            }
            if let Some(w) = webhooks.filter(|w| !w.is_empty()) {
                text.push_str(&webhook_lines(&w));
            }
            s.text(&text)
        }
    }
}

/// One line per webhook delivery: type, URL, state, attempts, last error.
pub fn webhook_lines(deliveries: &[WebhookDelivery]) -> String {
    let mut out = String::from("\nwebhooks:");
    for d in deliveries {
        out.push_str(&format!(
            "\n  {} -> {}: {} after {} attempt(s)",
            d.event_type, d.url, d.state, d.attempts
        ));
        if let Some(e) = &d.last_error {
            out.push_str(&format!(" (last error: {e})"));
        }
    }
    out
}

/// `record thumbnail ID -f FILE.jpg`.
pub(super) async fn thumbnail(
    s: &Session,
    id: RecordingId,
    file: &std::path::Path,
) -> Result<(), ConsoleError> {
    let t = s.client.thumbnail(id).await?;
    if file.as_os_str() == "-" {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        out.write_all(&t.jpeg)?;
        out.flush()?;
        return Ok(());
    }
    std::fs::write(file, &t.jpeg)?;
    let level = t
        .level_db
        .map_or("no sound measured".to_string(), |db| format!("{db} dBFS"));
    if s.output.structured() {
        s.json(&serde_json::json!({
            "recording": t.recording,
            "file": file.display().to_string(),
            "bytes": t.jpeg.len(),
            "taken_at": t.taken_at,
            "level_db": t.level_db,
            "health": t.health,
        }))
    } else {
        s.text(&format!(
            "{}: {} of recording {} taken at {}, sound {level}, health {}",
            file.display(),
            format::bytes(t.jpeg.len() as u64),
            t.recording,
            format::clock(t.taken_at),
            t.health.state
        ))
    }
}

/// `record events ID [--type T] [--tail N]`.
pub(super) async fn events(
    s: &Session,
    id: RecordingId,
    types: Vec<String>,
    tail: Option<u32>,
) -> Result<(), ConsoleError> {
    let events = s.client.events(id.clone(), types, tail).await?;
    if s.output.structured() {
        return s.json(&events);
    }
    if events.is_empty() {
        return s.text(&format!("recording {id} has no such event yet"));
    }
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|e| {
            vec![
                e.media_ms.map_or("-".to_string(), format::media_time),
                format::clock(e.wall_ms),
                e.source.to_string(),
                e.kind.clone(),
                format::shorten(&e.data, 100),
            ]
        })
        .collect();
    s.text(format::table(&["AT", "CLOCK", "SOURCE", "TYPE", "DATA"], &rows).trim_end())
}
