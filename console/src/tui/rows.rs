//! The rows a view shows: the state, filtered and sorted as the UI says.
//! Pure functions of (state, ui), shared by drawing and key handling.

use recfleet_protocol::{CoordinatorInfo, RecordingInfo, WorkerInfo};

use super::state::{LogLine, State};
use super::ui::{Filter, Ui, View, ViewState};
use crate::cells::{coordinator_cells, recording_cells, worker_cells};
use crate::{finished, sort};

/// Workers shown, in order.
pub fn workers<'a>(state: &'a State, vs: &ViewState, filter: &Filter) -> Vec<&'a WorkerInfo> {
    let mut rows: Vec<&WorkerInfo> = state
        .workers
        .values()
        .filter(|w| filter.keeps(&worker_cells(w, state.now).join(" ")))
        .collect();
    rows.sort_by(|a, b| sort::compare_workers(vs.sort, a, b));
    if vs.reverse {
        rows.reverse();
    }
    rows
}

/// Recordings shown, in order: finished ones only while they ended within
/// [`finished::DEFAULT_WINDOW`], unless `all`.
pub fn recordings<'a>(
    state: &'a State,
    vs: &ViewState,
    filter: &Filter,
    all: bool,
) -> Vec<&'a RecordingInfo> {
    let mut rows: Vec<&RecordingInfo> = state
        .recordings
        .values()
        .filter(|r| all || !finished::is_hidden(r, state.now, finished::DEFAULT_WINDOW))
        .filter(|r| filter.keeps(&recording_cells(r, state.now).join(" ")))
        .collect();
    rows.sort_by(|a, b| sort::compare_recordings(vs.sort, a, b, state.now));
    if vs.reverse {
        rows.reverse();
    }
    rows
}

/// How many finished recordings the recordings view hides (0 with `all`).
pub fn hidden_recordings(state: &State, all: bool) -> usize {
    if all {
        return 0;
    }
    state
        .recordings
        .values()
        .filter(|r| finished::is_hidden(r, state.now, finished::DEFAULT_WINDOW))
        .count()
}

/// Event log lines shown: oldest first by TIME (the log's order; the
/// default is reversed: newest first), or by another column.
pub fn events<'a>(state: &'a State, vs: &ViewState, filter: &Filter) -> Vec<&'a LogLine> {
    let mut rows: Vec<&LogLine> = state
        .events
        .iter()
        .filter(|l| filter.keeps(&format!("{} {}", l.kind, l.text)))
        .collect();
    match vs.sort {
        "SEQ" => rows.sort_by_key(|l| l.seq),
        "KIND" => rows.sort_by(|a, b| a.kind.cmp(b.kind)),
        "WHAT" => rows.sort_by(|a, b| a.text.cmp(&b.text)),
        _ => {}
    }
    if vs.reverse {
        rows.reverse();
    }
    rows
}

/// Coordinators shown, by name (as the leader lists them).
pub fn coordinators<'a>(state: &'a State, filter: &Filter) -> Vec<&'a CoordinatorInfo> {
    state
        .coordinators
        .iter()
        .filter(|c| filter.keeps(&coordinator_cells(c).join(" ")))
        .collect()
}

/// How many rows the current view shows.
pub fn count(state: &State, ui: &Ui) -> usize {
    match ui.view {
        View::Workers => workers(state, ui.current(), &ui.filter).len(),
        View::Recordings => recordings(state, ui.current(), &ui.filter, ui.all_recordings).len(),
        View::Events => events(state, ui.current(), &ui.filter).len(),
        View::Coordinators => coordinators(state, &ui.filter).len(),
    }
}

/// The selected row index, kept within the rows there are.
pub fn selected(state: &State, ui: &Ui) -> usize {
    ui.current()
        .selected
        .min(count(state, ui).saturating_sub(1))
}

/// The selected worker (workers view).
pub fn selected_worker<'a>(state: &'a State, ui: &Ui) -> Option<&'a WorkerInfo> {
    (ui.view == View::Workers)
        .then(|| {
            workers(state, ui.current(), &ui.filter)
                .get(selected(state, ui))
                .copied()
        })
        .flatten()
}

/// The selected recording (recordings view).
pub fn selected_recording<'a>(state: &'a State, ui: &Ui) -> Option<&'a RecordingInfo> {
    (ui.view == View::Recordings)
        .then(|| {
            recordings(state, ui.current(), &ui.filter, ui.all_recordings)
                .get(selected(state, ui))
                .copied()
        })
        .flatten()
}
