//! Every view, the help, a dialog, the reconnecting banner and read-only
//! mode, drawn on a TestBackend and compared with the snapshot files in
//! tests/snapshots/ (review changes with `cargo insta review`, or delete the
//! file and rerun with INSTA_UPDATE=always).

mod common;

use common::{app, render, NOW};
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use recfleet_console::tui::app::App;
use recfleet_console::tui::state::ConnEvent;
use recfleet_protocol::{EventKind, RecordingState};

const W: u16 = 120;
const H: u16 = 20;

fn key(app: &mut App, code: KeyCode) {
    let _ = app.on_key(KeyEvent::new(code, KeyModifiers::NONE));
}

fn keys(app: &mut App, text: &str) {
    for c in text.chars() {
        key(app, KeyCode::Char(c));
    }
}

#[test]
fn workers_view() {
    insta::assert_snapshot!("workers", render(&app("operator", false), W, H));
}

#[test]
fn recordings_view_sorted_by_state() {
    let mut a = app("operator", false);
    keys(&mut a, ":recordings");
    key(&mut a, KeyCode::Enter);
    keys(&mut a, "S");
    insta::assert_snapshot!("recordings", render(&a, W, H));
}

#[test]
fn events_view() {
    let mut a = app("operator", false);
    keys(&mut a, ":events");
    key(&mut a, KeyCode::Enter);
    insta::assert_snapshot!("events", render(&a, W, H));
}

#[test]
fn worker_detail_pane() {
    let mut a = app("operator", false);
    key(&mut a, KeyCode::Down);
    key(&mut a, KeyCode::Enter);
    insta::assert_snapshot!("worker_detail", render(&a, W, 24));
}

#[test]
fn filtered_recordings_with_the_filter_prompt_open() {
    let mut a = app("operator", false);
    keys(&mut a, ":rec");
    key(&mut a, KeyCode::Enter);
    keys(&mut a, "/!recording");
    insta::assert_snapshot!("recordings_filter_inverted", render(&a, W, H));
}

#[test]
fn help() {
    let mut a = app("operator", false);
    keys(&mut a, "?");
    insta::assert_snapshot!("help", render(&a, W, 32));
}

#[test]
fn drain_confirmation_dialog() {
    let mut a = app("operator", false);
    keys(&mut a, "d");
    key(&mut a, KeyCode::Right); // mode: migrate
    key(&mut a, KeyCode::Tab);
    keys(&mut a, "10m");
    insta::assert_snapshot!("drain_dialog", render(&a, W, H));
}

#[test]
fn reconnecting_banner() {
    let mut a = app("operator", false);
    a.on_conn(ConnEvent::Disconnected {
        reason: "connection lost: timed out: the peer stopped answering".into(),
        retry_at: NOW + 3_500,
    });
    insta::assert_snapshot!("reconnecting", render(&a, W, H));
}

#[test]
fn refused() {
    let mut a = app("operator", false);
    a.on_conn(ConnEvent::Refused {
        reason: "the peer refused the TLS handshake: unknown CA".into(),
        retry_at: NOW + 30_000,
    });
    let screen = render(&a, W, H);
    assert!(
        screen.contains("refused: the peer refused the TLS handshake: unknown CA (retry in 30s)"),
        "{screen}"
    );
}

#[test]
fn viewer_is_read_only_and_says_why() {
    let mut a = app("viewer", false);
    keys(&mut a, "d");
    insta::assert_snapshot!("viewer_readonly", render(&a, W, H));
    keys(&mut a, "?");
    let help = render(&a, W, 28);
    assert!(
        help.contains("hidden — read-only: this certificate is a viewer's"),
        "{help}"
    );
    assert!(!help.contains("drain the selected worker"), "{help}");
}

#[test]
fn readonly_flag_hides_actions_for_an_operator_too() {
    let mut a = app("operator", true);
    keys(&mut a, "d");
    let screen = render(&a, W, H);
    assert!(
        screen.contains("read-only: started with --readonly"),
        "{screen}"
    );
    assert!(screen.contains("READ-ONLY"), "{screen}");
}

#[test]
fn reconnecting_counts_down_to_now() {
    let mut a = app("operator", false);
    a.on_conn(ConnEvent::Disconnected {
        reason: "connection lost".into(),
        retry_at: NOW,
    });
    let screen = render(&a, W, H);
    assert!(
        screen.contains("reconnecting now (connection lost)"),
        "{screen}"
    );
}

#[test]
fn sort_keys_cycle_the_column_and_mark_it_in_the_header() {
    let mut a = app("operator", false);
    keys(&mut a, ">");
    let screen = render(&a, W, H);
    assert!(screen.contains("workers (3) sort:state↑"), "{screen}");
    assert!(screen.contains("│NAME     STATE↑ "), "{screen}");
    keys(&mut a, "R");
    let screen = render(&a, W, H);
    assert!(screen.contains("sort:state↓"), "{screen}");
    let rows: Vec<&str> = screen
        .lines()
        .filter(|l| l.starts_with("│w"))
        .map(|l| l.split_whitespace().next().unwrap_or_default())
        .collect();
    assert_eq!(rows, ["│w3-lost", "│w2", "│w1"], "{screen}");
    keys(&mut a, "<<");
    let screen = render(&a, W, H);
    assert!(screen.contains("sort:labels↑"), "{screen}");
}

#[test]
fn finished_recordings_over_an_hour_ago_are_hidden_until_a() {
    let mut a = app("operator", false);
    let mut old = common::recording("old-1", RecordingState::Completed, Some("w1"), 9000);
    old.ended_at = Some(NOW - 2 * 3_600_000);
    a.on_conn(common::event(14, EventKind::RecordingChanged(old)));
    keys(&mut a, ":rec");
    key(&mut a, KeyCode::Enter);
    let screen = render(&a, W, H);
    assert!(
        screen.contains("recordings (5) sort:id↑ +1 finished over 1h ago (a: show)"),
        "{screen}"
    );
    assert!(!screen.contains("old-1"), "{screen}");
    keys(&mut a, "a");
    let screen = render(&a, W, H);
    assert!(
        screen.contains("recordings (6) sort:id↑ all (a: recent only)"),
        "{screen}"
    );
    assert!(screen.contains("old-1"), "{screen}");
}

/// Left half red, right half blue, a green band at the bottom.
fn picture() -> recfleet_console::tui::picture::Picture {
    let (w, h) = (64u32, 36u32);
    let mut rgb = Vec::new();
    for y in 0..h {
        for x in 0..w {
            rgb.extend_from_slice(match (x < w / 2, y >= h * 3 / 4) {
                (_, true) => &[0, 200, 0],
                (true, false) => &[200, 0, 0],
                (false, false) => &[0, 0, 200],
            });
        }
    }
    recfleet_console::tui::picture::Picture {
        width: w,
        height: h,
        rgb,
    }
}

/// The recordings view with math-101 selected and its detail pane open.
fn math_detail() -> App {
    let mut a = app("operator", false);
    keys(&mut a, ":rec");
    key(&mut a, KeyCode::Enter);
    keys(&mut a, "/math");
    key(&mut a, KeyCode::Enter);
    key(&mut a, KeyCode::Enter);
    a
}

#[test]
fn recording_detail_shows_its_live_picture_and_sound_meter() {
    let mut a = math_detail();
    a.on_conn(ConnEvent::Thumbnail(Box::new(
        recfleet_console::tui::state::Thumb {
            id: recfleet_protocol::RecordingId::new("math-101").unwrap(),
            taken_at: NOW - 1000,
            picture: Some(picture()),
            missing: None,
            level_db: Some(-21),
        },
    )));
    let mut terminal = ratatui::Terminal::new(ratatui::backend::TestBackend::new(W, 30)).unwrap();
    terminal
        .draw(|f| recfleet_console::tui::view::draw(f, &a))
        .unwrap();
    insta::assert_snapshot!(
        "recording_detail_picture",
        common::screen(terminal.backend())
    );
    // The half-blocks carry the picture's colours: red top-left, blue
    // top-right, green under the bottom-left.
    let buf = terminal.backend().buffer();
    let cells: Vec<(u16, u16)> = (0..W)
        .flat_map(|x| (0..30).map(move |y| (x, y)))
        .filter(|p| buf[*p].symbol() == "▀")
        .collect();
    assert!(cells.len() > 100, "{} half-blocks", cells.len());
    let (x0, y0) = cells.iter().min().copied().unwrap();
    let (x1, y1) = cells.iter().max().copied().unwrap();
    use ratatui::style::Color;
    assert_eq!(buf[(x0, y0)].fg, Color::Rgb(200, 0, 0));
    assert_eq!(buf[(x1, y0)].fg, Color::Rgb(0, 0, 200));
    assert_eq!(buf[(x0, y1)].bg, Color::Rgb(0, 200, 0));
}

#[test]
fn recording_detail_shows_its_latest_events_on_the_video_clock() {
    let mut a = math_detail();
    let id = recfleet_protocol::RecordingId::new("math-101").unwrap();
    let ev = |media_ms: i64, kind: &str, data: &str| recfleet_protocol::TrackEvent {
        media_ms: Some(media_ms),
        wall_ms: NOW - 5000,
        segment: "e1-p0".into(),
        seq: 0,
        source: recfleet_protocol::EventSource::Page,
        kind: kind.into(),
        data: data.into(),
    };
    a.on_conn(ConnEvent::Track {
        id,
        events: vec![
            ev(
                -300,
                "browser.navigation",
                r#"{"url":"https://class.example/room/1"}"#,
            ),
            ev(247_250, "slide", r#"{"n":7,"title":"Fractions"}"#),
        ],
    });
    let screen = render(&a, W, 40);
    assert!(screen.contains("latest events"), "{screen}");
    assert!(screen.contains("0:04:07.250  slide"), "{screen}");
    assert!(
        screen.contains(r#"{"n":7,"title":"Fractions"}"#),
        "{screen}"
    );
    assert!(
        screen.contains("-0:00:00.300  browser.navigation"),
        "{screen}"
    );
}

#[test]
fn recording_detail_says_why_there_is_no_picture() {
    let mut a = math_detail();
    a.on_conn(ConnEvent::NoThumbnail {
        id: recfleet_protocol::RecordingId::new("math-101").unwrap(),
        reason: "worker w1 is not connected".into(),
    });
    let screen = render(&a, W, 30);
    assert!(
        screen.contains("no picture: worker w1 is not connected"),
        "{screen}"
    );
}

#[test]
fn describe_and_logs_pages_open_over_the_view() {
    let mut a = math_detail();
    key(&mut a, KeyCode::Esc);
    keys(&mut a, "d");
    assert!(render(&a, W, H).contains("describe math-101"));
    a.on_conn(ConnEvent::Described {
        id: recfleet_protocol::RecordingId::new("math-101").unwrap(),
        text: "Recording:  math-101\nHealth:     frozen for 12s\nProcesses:\n  ffmpeg  4242".into(),
    });
    insta::assert_snapshot!("describe_page", render(&a, W, 12));
    key(&mut a, KeyCode::Esc);
    keys(&mut a, "l");
    a.on_conn(ConnEvent::Logs {
        id: recfleet_protocol::RecordingId::new("math-101").unwrap(),
        lines: (0..30).map(|i| format!("[ffmpeg p0] line {i}")).collect(),
    });
    let screen = render(&a, W, 12);
    // The newest lines at the bottom.
    assert!(
        screen.contains("line 29") && !screen.contains("line 5\n"),
        "{screen}"
    );
    insta::assert_snapshot!("logs_page", screen);
    key(&mut a, KeyCode::Up);
    assert!(render(&a, W, 12).contains("line 28") && !render(&a, W, 12).contains("line 29"));
}
