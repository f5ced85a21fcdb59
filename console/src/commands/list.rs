//! `workers`, `recordings`, `whoami`.

use recfleet_client::Identity;
use recfleet_protocol::{now_ms, RecordingInfo, RecordingState, WorkerInfo};

use super::Session;
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

/// The text of `recfleet coordinators`.
pub fn coordinators_table(list: &[recfleet_protocol::CoordinatorInfo]) -> String {
    let rows: Vec<Vec<String>> = list.iter().map(cells::coordinator_cells).collect();
    format::table(&cells::COORDINATOR_COLUMNS, &rows)
}

pub(super) async fn coordinators(s: &Session) -> Result<(), ConsoleError> {
    let list = s.client.coordinators().await?;
    match s.output {
        Output::Json => s.json(&list),
        Output::Table => s.text(&coordinators_table(&list)),
    }
}

pub(super) async fn workers(s: &Session) -> Result<(), ConsoleError> {
    let mut ws = s.client.workers().await?;
    ws.sort_by(|a, b| a.name.cmp(&b.name));
    match s.output {
        Output::Json => s.json(&ws),
        Output::Table => s.text(&workers_table(&ws, now_ms())),
    }
}

/// `recordings`: with `limit`, one page and how to get the next; without,
/// every page (from `after` on), printed together as one list.
pub(super) async fn recordings(
    s: &Session,
    states: Vec<RecordingState>,
    limit: Option<u32>,
    after: Option<String>,
) -> Result<(), ConsoleError> {
    if let Some(limit) = limit {
        let page = s.client.recordings_page(&states, limit, after).await?;
        let (mut rs, next) = (page.items, page.next);
        sort_oldest_first(&mut rs);
        return match s.output {
            Output::Json => s.json(&serde_json::json!({ "recordings": rs, "next": next })),
            Output::Table => {
                let mut text = recordings_table(&rs, now_ms());
                if let Some(token) = &next {
                    let argv: Vec<String> = std::env::args_os()
                        .map(|a| a.to_string_lossy().into_owned())
                        .collect();
                    if !text.ends_with('\n') {
                        text.push('\n');
                    }
                    text.push_str(&format!("next page: {}", next_page_command(&argv, token)));
                }
                s.text(&text)
            }
        };
    }
    // Pages of the most the coordinator gives, until the last; a page
    // token that comes back is an error, not an endless loop.
    let mut rs = s.client.recordings_from(&states, after).await?;
    sort_oldest_first(&mut rs);
    match s.output {
        Output::Json => s.json(&rs),
        Output::Table => s.text(&recordings_table(&rs, now_ms())),
    }
}

fn sort_oldest_first(rs: &mut [RecordingInfo]) {
    rs.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
}

/// The command that prints the page after `token`: this command line
/// (`argv`, program first) with its `--continue` replaced by `--continue
/// TOKEN`, quoted for a POSIX shell where needed.
pub fn next_page_command(argv: &[String], token: &str) -> String {
    let mut words: Vec<&str> = Vec::with_capacity(argv.len() + 2);
    let mut args = argv.iter();
    while let Some(a) = args.next() {
        if a == "--continue" {
            args.next();
        } else if !a.starts_with("--continue=") {
            words.push(a);
        }
    }
    if words.is_empty() {
        words.push("recfleet");
    }
    words.push("--continue");
    words.push(token);
    words
        .iter()
        .map(|w| shell_quote(w))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A word as a POSIX shell reads it back: as is when it is plain, else in
/// single quotes.
fn shell_quote(w: &str) -> String {
    let plain = !w.is_empty()
        && w.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@%+".contains(c));
    if plain {
        w.to_string()
    } else {
        format!("'{}'", w.replace('\'', "'\\''"))
    }
}

pub(super) async fn whoami(s: &Session) -> Result<(), ConsoleError> {
    let Identity {
        role,
        name,
        coordinator_version,
    } = s.client.whoami().await?;
    match s.output {
        Output::Json => s.json(&serde_json::json!({
            "role": role,
            "name": name,
            "coordinator": s.addr.to_string(),
            "coordinator_version": coordinator_version,
        })),
        Output::Table => s.text(&format!(
            "{role}/{name} at {} (coordinator {coordinator_version})",
            s.addr
        )),
    }
}
