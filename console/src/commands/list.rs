//! `workers`, `recordings`, `whoami`.

use std::time::Duration;

use recfleet_client::Identity;
use recfleet_protocol::{now_ms, RecordingInfo, RecordingState, WorkerInfo};

use super::Session;
use crate::cells;
use crate::cli::Output;
use crate::error::ConsoleError;
use crate::{finished, format, sort};

/// The text of `recfleet workers` (`wide`: of `-o wide`).
pub fn workers_table(workers: &[WorkerInfo], now: u64, wide: bool) -> String {
    if wide {
        let rows: Vec<Vec<String>> = workers
            .iter()
            .map(|w| cells::worker_wide_cells(w, now))
            .collect();
        return format::table(&cells::WORKER_WIDE_COLUMNS, &rows);
    }
    let rows: Vec<Vec<String>> = workers
        .iter()
        .map(|w| cells::worker_cells(w, now))
        .collect();
    format::table(&cells::WORKER_COLUMNS, &rows)
}

/// The text of `recfleet recordings` (`wide`: of `-o wide`).
pub fn recordings_table(recordings: &[RecordingInfo], now: u64, wide: bool) -> String {
    if wide {
        let rows: Vec<Vec<String>> = recordings
            .iter()
            .map(|r| cells::recording_wide_cells(r, now))
            .collect();
        return format::table(&cells::RECORDING_WIDE_COLUMNS, &rows);
    }
    let rows: Vec<Vec<String>> = recordings
        .iter()
        .map(|r| cells::recording_cells(r, now))
        .collect();
    format::table(&cells::RECORDING_COLUMNS, &rows)
}

/// How `recordings` shows what it got: the order, and which finished
/// recordings it hides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordingsView {
    /// `--sort-by`: a column of [`sort::RECORDING_SORT_COLUMNS`]; oldest
    /// first when none.
    pub sort_by: Option<&'static str>,
    /// Hide recordings that finished longer ago than this; `None`
    /// (`--all`): hide nothing.
    pub finished_within: Option<Duration>,
}

impl RecordingsView {
    /// Sorts and filters `rs` at `now`; returns how many were hidden.
    pub fn apply(&self, rs: &mut Vec<RecordingInfo>, now: u64) -> usize {
        let before = rs.len();
        if let Some(window) = self.finished_within {
            rs.retain(|r| !finished::is_hidden(r, now, window));
        }
        match self.sort_by {
            Some(col) => rs.sort_by(|a, b| sort::compare_recordings(col, a, b, now)),
            None => sort_oldest_first(rs),
        }
        before - rs.len()
    }
}

/// The line that says finished recordings were hidden (on stderr, for
/// tables only: JSON and YAML stay a plain list).
pub fn hidden_note(hidden: usize, window: Option<Duration>) -> Option<String> {
    let window = window?;
    (hidden > 0).then(|| {
        format!(
            "# {hidden} finished recording(s) hidden (ended over {} ago); --all shows them",
            humantime::format_duration(window)
        )
    })
}

/// The text of `recfleet coordinators`.
pub fn coordinators_table(list: &[recfleet_protocol::CoordinatorInfo]) -> String {
    let rows: Vec<Vec<String>> = list.iter().map(cells::coordinator_cells).collect();
    format::table(&cells::COORDINATOR_COLUMNS, &rows)
}

pub(super) async fn coordinators(s: &Session) -> Result<(), ConsoleError> {
    let list = s.client.coordinators().await?;
    if s.output.structured() {
        s.json(&list)
    } else {
        s.text(&coordinators_table(&list))
    }
}

pub(super) async fn workers(
    s: &Session,
    sort_by: Option<&'static str>,
) -> Result<(), ConsoleError> {
    let mut ws = s.client.workers().await?;
    let col = sort_by.unwrap_or("NAME");
    ws.sort_by(|a, b| sort::compare_workers(col, a, b));
    if s.output.structured() {
        s.json(&ws)
    } else {
        s.text(&workers_table(&ws, now_ms(), s.output == Output::Wide))
    }
}

/// `recordings`: with `limit`, one page and how to get the next; without,
/// every page (from `after` on), printed together as one list.
pub(super) async fn recordings(
    s: &Session,
    states: Vec<RecordingState>,
    limit: Option<u32>,
    after: Option<String>,
    view: RecordingsView,
) -> Result<(), ConsoleError> {
    let wide = s.output == Output::Wide;
    let now = now_ms();
    if let Some(limit) = limit {
        let page = s.client.recordings_page(&states, limit, after).await?;
        let (mut rs, next) = (page.items, page.next);
        let hidden = view.apply(&mut rs, now);
        return match s.output {
            Output::Json | Output::Yaml => {
                s.json(&serde_json::json!({ "recordings": rs, "next": next }))
            }
            Output::Table | Output::Wide => {
                note(hidden_note(hidden, view.finished_within));
                let mut text = recordings_table(&rs, now, wide);
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
    let hidden = view.apply(&mut rs, now);
    if s.output.structured() {
        s.json(&rs)
    } else {
        note(hidden_note(hidden, view.finished_within));
        s.text(&recordings_table(&rs, now, wide))
    }
}

/// A line for the person on stderr, if any.
fn note(line: Option<String>) {
    if let Some(line) = line {
        eprintln!("{line}");
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
    if s.output.structured() {
        s.json(&serde_json::json!({
            "role": role,
            "name": name,
            "coordinator": s.addr.to_string(),
            "coordinator_version": coordinator_version,
        }))
    } else {
        s.text(&format!(
            "{role}/{name} at {} (coordinator {coordinator_version})",
            s.addr
        ))
    }
}

/// `recfleet audit`: the latest entries of the audit trail, oldest first.
pub(super) async fn audit(s: &Session, limit: u32) -> Result<(), ConsoleError> {
    let entries = s.client.audit(limit).await?;
    if s.output.structured() {
        return s.json(&entries);
    }
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            vec![
                format::clock(e.at),
                e.actor.clone(),
                e.action.clone(),
                e.target.clone(),
            ]
        })
        .collect();
    s.text(&format::table(&["TIME", "WHO", "ACTION", "TARGET"], &rows))
}
