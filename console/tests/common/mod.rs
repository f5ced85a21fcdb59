//! A small fleet at a fixed time, and rendering into a `TestBackend`.

#![allow(dead_code)]

use std::collections::BTreeMap;

use ratatui::backend::TestBackend;
use ratatui::Terminal;
use recfleet_console::tui::app::App;
use recfleet_console::tui::state::{ConnEvent, State};
use recfleet_console::tui::view;
use recfleet_protocol::{
    Epoch, Event, EventKind, RecordingId, RecordingInfo, RecordingState, SubscriptionFrame,
    WorkerInfo, WorkerName, WorkerState,
};

/// 2026-11-24 10:00:00 UTC.
pub const NOW: u64 = 1_795_514_400_000;

pub fn worker(name: &str, state: WorkerState, used: u32, recs: &[&str]) -> WorkerInfo {
    WorkerInfo {
        name: WorkerName::new(name).unwrap(),
        state,
        address: format!("10.0.0.{}:4433", name.len()),
        version: "0.1.0".into(),
        capacity: 4,
        used,
        labels: BTreeMap::from([("zone".to_string(), "eu-1".to_string())]),
        cpu_millicores: 1250,
        rss_bytes: 3 * 1024 * 1024 * 1024,
        rtt_us: 420,
        connected_at: NOW - 3_600_000,
        last_seen: NOW - 500,
        recordings: recs.iter().map(|r| RecordingId::new(*r).unwrap()).collect(),
        upload_buffer_bytes: 0,
        upload_buffer_full: false,
        ready: Default::default(),
        admission: recfleet_protocol::Admission {
            measured: true,
            cpu_capacity_millicores: 4000,
            cpu_used_millicores: 1250,
            cpu_headroom_millicores: 2350,
            memory_available_bytes: 6 << 30,
            estimate_millicores: 600,
            takes: 4u32.saturating_sub(used).min(3),
            limit: String::new(),
        },
        host: format!("host-{name}"),
    }
}

pub fn recording(
    id: &str,
    state: RecordingState,
    worker: Option<&str>,
    age_s: u64,
) -> RecordingInfo {
    let started = matches!(state, RecordingState::Recording | RecordingState::Completed)
        .then_some(NOW - age_s * 1000);
    RecordingInfo {
        id: RecordingId::new(id).unwrap(),
        state,
        url: format!("https://class.example/{id}"),
        worker: worker.map(|w| WorkerName::new(w).unwrap()),
        epoch: Epoch(1),
        created_at: NOW - age_s * 1000 - 2000,
        started_at: started,
        ended_at: (state == RecordingState::Completed).then_some(NOW - 1000),
        bytes: if started.is_some() {
            age_s * 250_000
        } else {
            0
        },
        fps_milli: if state == RecordingState::Recording {
            14_900
        } else {
            0
        },
        repeated_permille: 0,
        restarts: 0,
        segments: u32::from(started.is_some()),
        reason: None,
        upload_lag_ms: 0,
        health: if state == RecordingState::Recording {
            recfleet_protocol::Health::new(
                recfleet_protocol::HealthState::Ok,
                NOW - age_s * 1000,
                "",
            )
        } else {
            recfleet_protocol::Health::default()
        },
        level_db: (state == RecordingState::Recording).then_some(-18),
        copy: None,
    }
}

pub fn snapshot() -> SubscriptionFrame {
    SubscriptionFrame::Snapshot {
        seq: 10,
        workers: vec![
            worker("w1", WorkerState::Ready, 2, &["math-101", "bio-7"]),
            worker("w2", WorkerState::Draining, 1, &["chem-3"]),
            worker("w3-lost", WorkerState::Lost, 0, &[]),
        ],
        recordings: vec![
            recording("math-101", RecordingState::Recording, Some("w1"), 754),
            recording("bio-7", RecordingState::Starting, Some("w1"), 4),
            recording("chem-3", RecordingState::Recording, Some("w2"), 3_000),
            recording("hist-2", RecordingState::Pending, None, 30),
            recording("art-1", RecordingState::Completed, Some("w2"), 5_400),
        ],
    }
}

pub fn event(seq: u64, kind: EventKind) -> ConnEvent {
    ConnEvent::frame(SubscriptionFrame::Event(Event {
        seq,
        at: NOW - 1000 * (20 - seq),
        kind,
        by: None,
    }))
}

/// An app connected as `role/name`, with the fleet and a few events.
pub fn app(role: &str, readonly: bool) -> App {
    let mut state = State::new("127.0.0.1:7800", readonly, NOW - 5000);
    state.update(ConnEvent::Connected {
        addr: "127.0.0.1:7800".into(),
        role: role.into(),
        name: "alice".into(),
    });
    state.update(ConnEvent::frame(snapshot()));
    state.update(event(
        11,
        EventKind::RecordingChanged(recording("bio-7", RecordingState::Recording, Some("w1"), 3)),
    ));
    state.update(event(
        12,
        EventKind::DrainProgress {
            worker: WorkerName::new("w2").unwrap(),
            remaining: vec![RecordingId::new("chem-3").unwrap()],
            message: "waiting for 1 recording to end (deadline in 9m)".into(),
            complete: false,
        },
    ));
    state.update(event(
        13,
        EventKind::Notice {
            recording: Some(RecordingId::new("hist-2").unwrap()),
            worker: None,
            message: "no worker has free capacity with label zone=us".into(),
        },
    ));
    state.update(ConnEvent::Tick(NOW));
    App::new(state)
}

/// Draws `app` on a `w` x `h` TestBackend and returns the screen as text.
pub fn render(app: &App, w: u16, h: u16) -> String {
    let mut terminal = Terminal::new(TestBackend::new(w, h)).unwrap();
    terminal.draw(|f| view::draw(f, app)).unwrap();
    screen(terminal.backend())
}

pub fn screen(backend: &TestBackend) -> String {
    let buf = backend.buffer();
    let mut out = String::new();
    for y in 0..buf.area.height {
        let mut line = String::new();
        for x in 0..buf.area.width {
            line.push_str(buf[(x, y)].symbol());
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}
