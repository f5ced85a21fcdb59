//! The rows a view shows: the state, filtered and sorted as the UI says.
//! Pure functions of (state, ui), shared by drawing and key handling.

use recfleet_protocol::{CoordinatorInfo, RecordingInfo, WorkerInfo, WorkerState};

use super::state::{LogLine, State};
use super::ui::{Filter, SortKey, Ui, View, ViewState};
use crate::cells::{coordinator_cells, recording_cells, worker_cells};

fn worker_state_rank(s: WorkerState) -> u8 {
    match s {
        WorkerState::Ready => 0,
        WorkerState::Draining => 1,
        WorkerState::Ineligible => 2,
        WorkerState::Lost => 3,
        WorkerState::Gone => 4,
    }
}

/// Workers shown, in order.
pub fn workers<'a>(state: &'a State, vs: &ViewState, filter: &Filter) -> Vec<&'a WorkerInfo> {
    let mut rows: Vec<&WorkerInfo> = state
        .workers
        .values()
        .filter(|w| filter.keeps(&worker_cells(w, state.now).join(" ")))
        .collect();
    match vs.sort {
        SortKey::Name => rows.sort_by(|a, b| a.name.cmp(&b.name)),
        SortKey::State => rows.sort_by(|a, b| {
            worker_state_rank(a.state)
                .cmp(&worker_state_rank(b.state))
                .then(a.name.cmp(&b.name))
        }),
        // Newest first.
        SortKey::Age => rows.sort_by(|a, b| {
            b.connected_at
                .cmp(&a.connected_at)
                .then(a.name.cmp(&b.name))
        }),
    }
    if vs.reverse {
        rows.reverse();
    }
    rows
}

/// Recordings shown, in order.
pub fn recordings<'a>(state: &'a State, vs: &ViewState, filter: &Filter) -> Vec<&'a RecordingInfo> {
    let mut rows: Vec<&RecordingInfo> = state
        .recordings
        .values()
        .filter(|r| filter.keeps(&recording_cells(r, state.now).join(" ")))
        .collect();
    match vs.sort {
        SortKey::Name => rows.sort_by(|a, b| a.id.cmp(&b.id)),
        SortKey::State => rows.sort_by(|a, b| a.state.cmp(&b.state).then(a.id.cmp(&b.id))),
        SortKey::Age => rows.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id))),
    }
    if vs.reverse {
        rows.reverse();
    }
    rows
}

/// Event log lines shown: by age, oldest first (reversed by default: newest first).
pub fn events<'a>(state: &'a State, vs: &ViewState, filter: &Filter) -> Vec<&'a LogLine> {
    let mut rows: Vec<&LogLine> = state
        .events
        .iter()
        .filter(|l| filter.keeps(&format!("{} {}", l.kind, l.text)))
        .collect();
    match vs.sort {
        SortKey::Age => {}
        SortKey::Name | SortKey::State => rows.sort_by(|a, b| a.kind.cmp(b.kind)),
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
        View::Recordings => recordings(state, ui.current(), &ui.filter).len(),
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
            recordings(state, ui.current(), &ui.filter)
                .get(selected(state, ui))
                .copied()
        })
        .flatten()
}
