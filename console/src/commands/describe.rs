//! `recfleet describe recording ID` and `describe worker NAME`: one object
//! with everything known of it, as `kubectl describe` shows a pod: its
//! state, health, processes (pid, CPU, memory, from its worker) and its own
//! latest events.

use recfleet_protocol::{Event, ProcessInfo, RecordingDetail, RecordingId, WorkerInfo, WorkerName};

use super::Session;
use crate::cli::DescribeWhat;
use crate::error::ConsoleError;
use crate::{describe as words, format};

/// Events shown at most.
const EVENTS: u32 = 30;

/// Runs `describe`.
pub(super) async fn describe(s: &Session, what: DescribeWhat) -> Result<(), ConsoleError> {
    match what {
        DescribeWhat::Recording { id } => recording(s, id).await,
        DescribeWhat::Worker { name } => worker(s, name).await,
    }
}

async fn recording(s: &Session, id: RecordingId) -> Result<(), ConsoleError> {
    let detail = s.client.show(id.clone()).await?;
    // Processes only while it runs; their absence is said, not an error.
    let processes = if detail.info.state.holds_capacity() {
        s.client
            .processes(id.clone())
            .await
            .map_err(|e| e.to_string())
    } else {
        Err("not running: no processes".to_string())
    };
    let events = s.client.history(Some(id), None, EVENTS).await?;
    if s.output.structured() {
        return s.json(&serde_json::json!({
            "recording": detail,
            "processes": processes.as_ref().ok(),
            "processes_error": processes.as_ref().err(),
            "events": events,
        }));
    }
    s.text(&recording_text(
        &detail,
        &processes,
        &events,
        recfleet_protocol::now_ms(),
    ))
}

/// The text of `describe recording`.
pub fn recording_text(
    d: &RecordingDetail,
    processes: &Result<Vec<ProcessInfo>, String>,
    events: &[Event],
    now: u64,
) -> String {
    let i = &d.info;
    let mut out = String::new();
    let mut field = |k: &str, v: String| out.push_str(&format!("{:<12}{v}\n", format!("{k}:")));
    field("Recording", i.id.to_string());
    field("State", i.state.to_string());
    field("URL", i.url.clone());
    field(
        "Worker",
        i.worker
            .as_ref()
            .map_or("-".to_string(), |w| format!("{w} (epoch {})", i.epoch)),
    );
    if d.spec.redundancy > 1 || i.copy.is_some() {
        field(
            "Copy",
            match &i.copy {
                Some(c) if c.capturing => format!("{} (epoch {}), capturing", c.worker, c.epoch),
                Some(c) => format!("{} (epoch {}), starting", c.worker, c.epoch),
                None if i.state.is_terminal() => "-".to_string(),
                None => "none now: waiting for a worker (redundancy 2)".to_string(),
            },
        );
    }
    field(
        "Health",
        if i.health.state == recfleet_protocol::HealthState::Unknown {
            "unknown".to_string()
        } else {
            format!(
                "{} for {}{}",
                i.health.state,
                format::age(now, i.health.since),
                if i.health.detail.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", i.health.detail)
                }
            )
        },
    );
    field(
        "Sound",
        i.level_db
            .map_or("-".to_string(), |db| format!("{db} dBFS {}", meter(db, 20))),
    );
    field(
        "Started",
        i.started_at.map_or("-".to_string(), |t| {
            format!("{} ({} ago)", format::clock(t), format::age(now, t))
        }),
    );
    field(
        "Size",
        format!(
            "{} in {} segment(s), {} restart(s)",
            format::bytes(i.bytes),
            i.segments,
            i.restarts
        ),
    );
    field(
        "Rate",
        if i.repeated_permille >= format::REPEATING_PERMILLE {
            format!(
                "{} fps over the last 5 s, {}% of the frames repeat the picture before (the worker is too busy)",
                format::fps(i.fps_milli),
                (i.repeated_permille + 5) / 10
            )
        } else {
            format!("{} fps over the last 5 s", format::fps(i.fps_milli))
        },
    );
    if let Some(r) = &i.reason {
        field("Reason", r.clone());
    }
    out.push_str("Processes:\n");
    match processes {
        Ok(p) if !p.is_empty() => {
            let rows: Vec<Vec<String>> = p
                .iter()
                .map(|p| {
                    vec![
                        p.name.clone(),
                        p.pid.to_string(),
                        format::cores(p.cpu_millicores),
                        format::bytes(p.rss_bytes),
                    ]
                })
                .collect();
            for line in format::table(&["NAME", "PID", "CPU", "RSS"], &rows).lines() {
                out.push_str(&format!("  {line}\n"));
            }
        }
        Ok(_) => out.push_str("  none\n"),
        Err(e) => out.push_str(&format!("  {e}\n")),
    }
    events_text(&mut out, events, now);
    out
}

async fn worker(s: &Session, name: WorkerName) -> Result<(), ConsoleError> {
    let workers = s.client.workers().await?;
    let Some(w) = workers.into_iter().find(|w| w.name == name) else {
        return Err(ConsoleError::Wire(recfleet_protocol::WireError::new(
            recfleet_protocol::ErrorCode::NotFound,
            format!("no worker \"{name}\""),
        )));
    };
    let events = s.client.history(None, Some(name), EVENTS).await?;
    if s.output.structured() {
        return s.json(&serde_json::json!({ "worker": w, "events": events }));
    }
    s.text(&worker_text(&w, &events, recfleet_protocol::now_ms()))
}

/// The text of `describe worker`.
pub fn worker_text(w: &WorkerInfo, events: &[Event], now: u64) -> String {
    let mut out = String::new();
    let mut field = |k: &str, v: String| out.push_str(&format!("{:<12}{v}\n", format!("{k}:")));
    field("Worker", w.name.to_string());
    field("State", w.state.as_str().to_string());
    field("Address", w.address.clone());
    field("Host", w.host.clone());
    field("Version", w.version.clone());
    field("Slots", format!("{}/{} used", w.used, w.capacity));
    field("CPU", format::cores(w.cpu_millicores));
    field("Memory", format::bytes(w.rss_bytes));
    field("RTT", format::rtt(w.rtt_us));
    field("Labels", format::labels(&w.labels));
    field(
        "Connected",
        format!("{} ago", format::age(now, w.connected_at)),
    );
    field(
        "Last seen",
        format!("{} ago", format::age(now, w.last_seen)),
    );
    field(
        "Uploads",
        format!(
            "{} waiting{}",
            format::bytes(w.upload_buffer_bytes),
            if w.upload_buffer_full {
                " (buffer full)"
            } else {
                ""
            }
        ),
    );
    let a = &w.admission;
    field(
        "Admission",
        if a.measured {
            format!(
                "takes {} more{}; CPU {} of {} cores used, {} free; a recording is expected to cost {}; {} memory available",
                a.takes,
                if a.limit.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", a.limit)
                },
                format::cores(a.cpu_used_millicores),
                format::cores(a.cpu_capacity_millicores),
                format::cores(a.cpu_headroom_millicores),
                format::cores(a.estimate_millicores),
                format::bytes(a.memory_available_bytes),
            )
        } else {
            format!("takes {} more (slots only: no measured cost)", a.takes)
        },
    );
    field(
        "Ready slots",
        match w.ready.target {
            0 => "none kept".to_string(),
            t => format!(
                "{} of {t}, waiting at {} CPU and {} memory",
                w.ready.ready,
                format::cores(w.ready.cpu_millicores),
                format::bytes(w.ready.rss_bytes)
            ),
        },
    );
    let recs: Vec<&str> = w.recordings.iter().map(|r| r.as_str()).collect();
    field(
        "Recordings",
        if recs.is_empty() {
            "none".into()
        } else {
            recs.join(", ")
        },
    );
    events_text(&mut out, events, now);
    out
}

fn events_text(out: &mut String, events: &[Event], now: u64) {
    out.push_str("Events:\n");
    if events.is_empty() {
        out.push_str(
            "  none kept (the coordinator keeps its latest 10,000 events since it started)\n",
        );
    }
    for e in events {
        out.push_str(&format!(
            "  {:>6} ago  {:<17} {}{}\n",
            format::age(now, e.at),
            words::kind_name(&e.kind),
            words::event_text(&e.kind),
            words::by(e)
        ));
    }
}

/// A sound level as a bar of `width` cells from -60 to 0 dBFS.
pub fn meter(db: i16, width: usize) -> String {
    let filled = (((f64::from(db) + 60.0) / 60.0).clamp(0.0, 1.0) * width as f64).round() as usize;
    format!("[{}{}]", "#".repeat(filled), "-".repeat(width - filled))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_meter_spans_sixty_decibels() {
        assert_eq!(meter(0, 10), "[##########]");
        assert_eq!(meter(-30, 10), "[#####-----]");
        assert_eq!(meter(-90, 4), "[----]");
    }
}
