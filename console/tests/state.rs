//! `State::update` from connection events, rows from state and UI (filters,
//! sorting), and the main loop driven on a TestBackend through its channels.

mod common;

use common::{app, event, recording, snapshot, worker, NOW};
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use recfleet_console::tui::conn::ToConn;
use recfleet_console::tui::state::{ConnEvent, ConnStatus, Readonly, State};
use recfleet_console::tui::ui::{Filter, ViewState};
use recfleet_console::tui::{rows, run_loop, Input};
use recfleet_protocol::{
    ConsoleRequest, DrainMode, EventKind, RecordingState, SubscriptionFrame, WorkerName,
    WorkerState,
};
use tokio::sync::mpsc;

fn w(n: &str) -> WorkerName {
    WorkerName::new(n).unwrap()
}

#[test]
fn a_snapshot_then_events_builds_the_fleet() {
    let a = app("operator", false);
    let s = &a.state;
    assert_eq!(s.workers.len(), 3);
    assert_eq!(s.recordings.len(), 5);
    assert_eq!(s.last_seq, Some(13));
    let bio = &s.recordings[&recfleet_protocol::RecordingId::new("bio-7").unwrap()];
    assert_eq!(bio.state, RecordingState::Recording);
    assert_eq!(s.drains[&w("w2")].remaining.len(), 1);
    let t = s.totals();
    assert_eq!((t.ready, t.draining, t.lost, t.free), (1, 1, 1, 2));
    assert_eq!(t.by_state[&RecordingState::Recording], 3);
    assert!(matches!(&s.connection, ConnStatus::Connected { role, .. } if role == "operator"));
}

#[test]
fn events_already_in_the_snapshot_are_ignored() {
    let mut s = State::new("c:1", false, NOW);
    s.update(ConnEvent::frame(snapshot()));
    // seq 10 is the snapshot's own number: already applied.
    s.update(event(10, EventKind::WorkerLost { name: w("w1") }));
    assert_eq!(s.workers[&w("w1")].state, WorkerState::Ready);
    s.update(event(11, EventKind::WorkerLost { name: w("w1") }));
    assert_eq!(s.workers[&w("w1")].state, WorkerState::Lost);
    assert_eq!(s.workers[&w("w1")].used, 0);
}

#[test]
fn lagged_marks_resync_and_the_next_snapshot_replaces_everything() {
    let mut s = State::new("c:1", false, NOW);
    s.update(ConnEvent::frame(snapshot()));
    s.update(ConnEvent::frame(SubscriptionFrame::Lagged { missed: 42 }));
    assert!(s.resyncing);
    let fresh = SubscriptionFrame::Snapshot {
        seq: 99,
        workers: vec![worker("w9", WorkerState::Ready, 0, &[])],
        recordings: vec![recording("new-1", RecordingState::Pending, None, 1)],
    };
    s.update(ConnEvent::frame(fresh));
    assert!(!s.resyncing);
    assert_eq!(s.last_seq, Some(99));
    assert_eq!(
        s.workers.keys().map(|k| k.as_str()).collect::<Vec<_>>(),
        ["w9"]
    );
    assert_eq!(s.recordings.len(), 1);
    let log: Vec<&str> = s.events.iter().map(|l| l.text.as_str()).collect();
    assert!(
        log.iter().any(|l| l.contains("42 events missed")),
        "{log:?}"
    );
    assert!(
        log.iter()
            .any(|l| l.contains("snapshot #99") && l.contains("resynced")),
        "{log:?}"
    );
}

#[test]
fn a_snapshot_in_parts_is_the_union_of_its_parts() {
    let mut s = State::new("c:1", false, NOW);
    s.update(ConnEvent::frame(SubscriptionFrame::Snapshot {
        seq: 15,
        workers: vec![worker("w1", WorkerState::Ready, 1, &["a-1"])],
        recordings: vec![recording("a-1", RecordingState::Recording, Some("w1"), 10)],
    }));
    s.update(ConnEvent::frame(SubscriptionFrame::SnapshotMore {
        workers: vec![worker("w2", WorkerState::Draining, 1, &["b-2"])],
        recordings: vec![
            recording("b-2", RecordingState::Recording, Some("w2"), 20),
            recording("c-3", RecordingState::Pending, None, 5),
        ],
    }));
    s.update(ConnEvent::frame(SubscriptionFrame::SnapshotMore {
        workers: vec![],
        recordings: vec![recording("d-4", RecordingState::Completed, Some("w1"), 90)],
    }));
    assert_eq!(
        s.workers.keys().map(|k| k.as_str()).collect::<Vec<_>>(),
        ["w1", "w2"]
    );
    assert_eq!(
        s.recordings.keys().map(|k| k.as_str()).collect::<Vec<_>>(),
        ["a-1", "b-2", "c-3", "d-4"]
    );
    // The parts carry no number: events after the last part apply as usual.
    assert_eq!(s.last_seq, Some(15));
    s.update(event(15, EventKind::WorkerLost { name: w("w2") }));
    assert_eq!(s.workers[&w("w2")].state, WorkerState::Draining);
    s.update(event(16, EventKind::WorkerLost { name: w("w2") }));
    assert_eq!(s.workers[&w("w2")].state, WorkerState::Lost);
    // One log line for the whole snapshot, with the totals of every part.
    let snapshots: Vec<&str> = s
        .events
        .iter()
        .filter(|l| l.kind == "snapshot")
        .map(|l| l.text.as_str())
        .collect();
    assert_eq!(snapshots, ["snapshot #15: 2 workers, 4 recordings"]);
}

#[test]
fn a_fresh_snapshot_in_parts_replaces_everything_after_a_lag() {
    let mut s = State::new("c:1", false, NOW);
    s.update(ConnEvent::frame(snapshot()));
    s.update(ConnEvent::frame(SubscriptionFrame::Lagged { missed: 3 }));
    s.update(ConnEvent::frame(SubscriptionFrame::Snapshot {
        seq: 50,
        workers: vec![worker("w9", WorkerState::Ready, 0, &[])],
        recordings: vec![],
    }));
    s.update(ConnEvent::frame(SubscriptionFrame::SnapshotMore {
        workers: vec![worker("w8", WorkerState::Ready, 0, &[])],
        recordings: vec![recording("new-1", RecordingState::Pending, None, 1)],
    }));
    assert!(!s.resyncing);
    assert_eq!(
        s.workers.keys().map(|k| k.as_str()).collect::<Vec<_>>(),
        ["w8", "w9"]
    );
    assert_eq!(
        s.recordings.keys().map(|k| k.as_str()).collect::<Vec<_>>(),
        ["new-1"]
    );
    assert_eq!(
        s.events.back().map(|l| l.text.as_str()),
        Some("snapshot #50: 2 workers, 1 recordings (resynced)")
    );
}

#[test]
fn a_refused_subscription_and_a_viewer_role_are_visible() {
    let mut s = State::new("c:1", false, NOW);
    s.update(ConnEvent::Connected {
        addr: "c:1".into(),
        role: "viewer".into(),
        name: "v".into(),
    });
    assert_eq!(s.readonly(), Some(Readonly::Role));
    s.update(ConnEvent::frame(SubscriptionFrame::Refused(
        recfleet_protocol::WireError::new(
            recfleet_protocol::ErrorCode::Forbidden,
            "agents may not subscribe",
        ),
    )));
    assert!(
        matches!(&s.connection, ConnStatus::Refused { reason, .. } if reason == "agents may not subscribe")
    );
}

#[test]
fn the_event_log_is_bounded() {
    let mut s = State::new("c:1", false, NOW);
    s.update(ConnEvent::frame(snapshot()));
    for seq in 11..2000 {
        s.update(ConnEvent::frame(SubscriptionFrame::Event(
            recfleet_protocol::Event {
                seq,
                at: NOW,
                kind: EventKind::Notice {
                    recording: None,
                    worker: None,
                    message: format!("n{seq}"),
                },
                by: None,
            },
        )));
    }
    assert_eq!(s.events.len(), recfleet_console::tui::state::EVENT_LOG_LEN);
    assert_eq!(
        s.events.back().map(|l| l.text.as_str()),
        Some("notice: n1999")
    );
}

#[test]
fn filters_and_sorts_select_rows() {
    let a = app("operator", false);
    let by_state = ViewState {
        sort: "STATE",
        ..ViewState::default()
    };
    let names = |f: &str, vs: &ViewState| -> Vec<String> {
        rows::workers(&a.state, vs, &Filter::parse(f))
            .iter()
            .map(|w| w.name.to_string())
            .collect()
    };
    assert_eq!(names("", &ViewState::default()), ["w1", "w2", "w3-lost"]);
    assert_eq!(names("drain", &ViewState::default()), ["w2"]);
    assert_eq!(names("!lost", &ViewState::default()), ["w1", "w2"]);
    assert_eq!(
        names(
            "",
            &ViewState {
                reverse: true,
                ..by_state
            }
        ),
        ["w3-lost", "w2", "w1"]
    );
    let recs: Vec<String> = rows::recordings(
        &a.state,
        &ViewState {
            sort: "AGE",
            ..ViewState::default()
        },
        &Filter::default(),
        false,
    )
    .iter()
    .map(|r| r.id.to_string())
    .collect();
    assert_eq!(recs, ["bio-7", "hist-2", "math-101", "chem-3", "art-1"]);
}

fn press(c: char) -> Input {
    Input::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE))
}

#[tokio::test]
async fn the_main_loop_draws_state_and_sends_a_confirmed_drain() {
    let mut terminal = Terminal::new(TestBackend::new(120, 20)).unwrap();
    let (ev_tx, ev_rx) = mpsc::unbounded_channel();
    let (key_tx, key_rx) = mpsc::unbounded_channel();
    let (cmd_tx, mut cmd_rx) = mpsc::unbounded_channel();
    let a = recfleet_console::tui::app::App::new(State::new("127.0.0.1:7800", false, NOW));
    ev_tx
        .send(ConnEvent::Connected {
            addr: "127.0.0.1:7800".into(),
            role: "operator".into(),
            name: "alice".into(),
        })
        .unwrap();
    ev_tx.send(ConnEvent::frame(snapshot())).unwrap();
    // Down to w2, drain it in migrate mode, confirm, then quit.
    for input in [
        press('j'),
        press('d'),
        Input::Key(KeyEvent::new(KeyCode::Right, KeyModifiers::NONE)),
        Input::Key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE)),
        press('q'),
    ] {
        key_tx.send(input).unwrap();
    }
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let result = run_loop(&mut terminal, a, ev_rx, key_rx, cmd_tx, async {
        let _ = done_rx.await;
    })
    .await;
    drop(done_tx);
    result.unwrap();
    assert_eq!(
        cmd_rx.recv().await,
        Some(ToConn::Send {
            what: "drain w2".into(),
            request: Box::new(ConsoleRequest::Drain {
                worker: w("w2"),
                mode: DrainMode::Migrate,
                deadline_secs: None,
                force: false
            })
        })
    );
    let screen = common::screen(terminal.backend());
    assert!(
        screen.contains("connected to 127.0.0.1:7800 as operator/alice"),
        "{screen}"
    );
}
