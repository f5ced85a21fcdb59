//! `workers`, `recordings`, `whoami`.

use recfleet_protocol::{
    now_ms, ConsoleRequest, ConsoleResponse, RecordingInfo, RecordingState, WorkerInfo,
};

use super::{unexpected, Session};
use crate::cells;
use crate::cli::Output;
use crate::error::ConsoleError;
use crate::format;

/// The text of `recfleet workers`.
pub fn workers_table(workers: &[WorkerInfo], now: u64) -> String {
    let rows: Vec<Vec<String>> = workers
        .iter()
        .map(|w| cells::worker_cells(w, now))
        .collect();
    format::table(&cells::WORKER_COLUMNS, &rows)
}

/// The text of `recfleet recordings`.
pub fn recordings_table(recordings: &[RecordingInfo], now: u64) -> String {
    let rows: Vec<Vec<String>> = recordings
        .iter()
        .map(|r| cells::recording_cells(r, now))
        .collect();
    format::table(&cells::RECORDING_COLUMNS, &rows)
}

pub(super) async fn workers(s: &Session) -> Result<(), ConsoleError> {
    match s.client.request(ConsoleRequest::ListWorkers).await? {
        ConsoleResponse::Workers(mut ws) => {
            ws.sort_by(|a, b| a.name.cmp(&b.name));
            match s.output {
                Output::Json => s.json(&ws),
                Output::Table => s.text(&workers_table(&ws, now_ms())),
            }
        }
        other => Err(unexpected("a worker list", &other)),
    }
}

pub(super) async fn recordings(
    s: &Session,
    states: Vec<RecordingState>,
) -> Result<(), ConsoleError> {
    match s
        .client
        .request(ConsoleRequest::ListRecordings { states })
        .await?
    {
        ConsoleResponse::Recordings(mut rs) => {
            rs.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
            match s.output {
                Output::Json => s.json(&rs),
                Output::Table => s.text(&recordings_table(&rs, now_ms())),
            }
        }
        other => Err(unexpected("a recording list", &other)),
    }
}

pub(super) async fn whoami(s: &Session) -> Result<(), ConsoleError> {
    match s.client.request(ConsoleRequest::WhoAmI).await? {
        ConsoleResponse::Identity {
            role,
            name,
            coordinator_version,
        } => match s.output {
            Output::Json => s.json(&serde_json::json!({
                "role": role,
                "name": name,
                "coordinator": s.client.addr.to_string(),
                "coordinator_version": coordinator_version,
            })),
            Output::Table => s.text(&format!(
                "{role}/{name} at {} (coordinator {coordinator_version})",
                s.client.addr
            )),
        },
        other => Err(unexpected("an identity", &other)),
    }
}
