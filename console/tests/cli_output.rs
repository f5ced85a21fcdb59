//! Output formats, --sort-by, the finished-recordings window, watch
//! filters, shell completions and the man page: what a user sees, without a
//! coordinator (tables from fixed data, the binary where no connection is
//! needed).

mod common;

use std::process::{Command, Output};
use std::time::Duration;

use clap::Parser;
use common::{recording, worker, NOW};
use recfleet_console::cli::{Cli, Command as Cmd};
use recfleet_console::commands::list::{hidden_note, RecordingsView};
use recfleet_console::commands::{recordings_table, workers_table};
use recfleet_protocol::{RecordingState, WorkerState};

fn recfleet(args: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_recfleet"));
    for (k, _) in std::env::vars() {
        if k.starts_with("RECFLEET_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("XDG_CONFIG_HOME", dir.path())
        .args(args)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(std::iter::once("recfleet").chain(args.iter().copied()))
}

#[test]
fn wide_tables_add_columns() {
    let ws = [worker("w1", WorkerState::Ready, 1, &["math-101"])];
    let t = workers_table(&ws, NOW, true);
    let header = t.lines().next().unwrap_or_default();
    assert!(
        header.ends_with("UPLOADS  ADDRESS        SEEN    RECORDINGS  LABELS"),
        "{t}"
    );
    assert!(t.contains("10.0.0.2:4433  0s ago  math-101"), "{t}");
    assert!(!workers_table(&ws, NOW, false).contains("ADDRESS"));

    let mut failed = recording("r1", RecordingState::Failed, Some("w1"), 60);
    failed.reason = Some("page unreachable".into());
    failed.ended_at = Some(NOW - 30_000);
    let t = recordings_table(&[failed], NOW, true);
    let header = t.lines().next().unwrap_or_default();
    assert!(
        header.ends_with("LAG  SOUND  EPOCH  AGE    ENDED     URL                       REASON"),
        "{t}"
    );
    assert!(
        t.contains("-      1      1m02s  09:59:30  https://class.example/r1  page unreachable"),
        "{t}"
    );
}

#[test]
fn yaml_errors_are_documents_on_stdout() {
    let out = recfleet(&["workers", "-o", "yaml"]);
    assert_eq!(out.status.code(), Some(64), "{}", text(&out.stderr));
    let doc = text(&out.stdout);
    assert!(doc.starts_with("---\nerror:\n"), "{doc}");
    assert!(doc.contains("\n  exit_code: 64\n"), "{doc}");
    assert!(doc.contains("\n  kind: config\n"), "{doc}");
}

#[test]
fn sort_by_takes_header_names_in_any_case() {
    let cli = parse(&["workers", "--sort-by", "cpu"]).unwrap();
    assert!(matches!(
        cli.command,
        Some(Cmd::Workers {
            sort_by: Some("CPU")
        })
    ));
    let cli = parse(&["recordings", "--sort-by", "Size"]).unwrap();
    assert!(matches!(
        cli.command,
        Some(Cmd::Recordings {
            sort_by: Some("SIZE"),
            ..
        })
    ));
    let out = recfleet(&["workers", "--sort-by", "colour"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains(
            "\"colour\" is not a column: expected one of NAME, STATE, SLOTS, HEADROOM, READY, CPU, MEM, RTT, \
             VERSION, UPTIME, UPLOADS, ADDRESS, SEEN, RECORDINGS, LABELS"
        ),
        "{}",
        text(&out.stderr)
    );
    let out = recfleet(&["recordings", "--sort-by", "name"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("expected one of ID, STATE,"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn recordings_hide_what_finished_over_the_window_ago_unless_all() {
    let cli = parse(&["recordings"]).unwrap();
    let Some(Cmd::Recordings {
        finished_within,
        all,
        ..
    }) = cli.command
    else {
        panic!()
    };
    assert_eq!((finished_within, all), (Duration::from_secs(3600), false));
    let cli = parse(&["recordings", "--finished-within", "1d"]).unwrap();
    assert!(
        matches!(cli.command, Some(Cmd::Recordings { finished_within, .. }) if finished_within.as_secs() == 86_400)
    );
    assert!(parse(&["recordings", "--all"]).is_ok());
    assert!(parse(&["recordings", "--finished-within", "2h", "--all"]).is_err());

    let mut old = recording("old", RecordingState::Completed, Some("w1"), 9000);
    old.ended_at = Some(NOW - 2 * 3_600_000);
    let recent = recording("recent", RecordingState::Completed, Some("w1"), 600);
    let live = recording("live", RecordingState::Recording, Some("w1"), 9000);
    let all = vec![old, recent, live];
    let ids = |rs: &[recfleet_protocol::RecordingInfo]| -> Vec<String> {
        rs.iter().map(|r| r.id.to_string()).collect()
    };
    let window = RecordingsView {
        sort_by: None,
        finished_within: Some(Duration::from_secs(3600)),
    };
    let mut rs = all.clone();
    assert_eq!(window.apply(&mut rs, NOW), 1);
    assert_eq!(ids(&rs), ["live", "recent"], "oldest first");
    assert_eq!(
        hidden_note(1, window.finished_within).as_deref(),
        Some("# 1 finished recording(s) hidden (ended over 1h ago); --all shows them")
    );
    let everything = RecordingsView {
        sort_by: Some("SIZE"),
        finished_within: None,
    };
    let mut rs = all.clone();
    assert_eq!(everything.apply(&mut rs, NOW), 0);
    assert_eq!(ids(&rs), ["recent", "live", "old"], "smallest first");
    assert_eq!(hidden_note(0, None), None);
}

#[test]
fn watch_filters_are_repeatable_or_comma_lists() {
    let cli = parse(&[
        "watch",
        "--worker",
        "w1,w2",
        "--worker",
        "w3",
        "--type",
        "notice,worker_lost",
        "--recording",
        "math-101",
    ])
    .unwrap();
    let Some(Cmd::Watch(args)) = cli.command else {
        panic!()
    };
    let f = args.filter();
    let names: Vec<&str> = f.workers.iter().map(|w| w.as_str()).collect();
    assert_eq!(names, ["w1", "w2", "w3"]);
    assert_eq!(f.types, ["notice", "worker_lost"]);
    assert_eq!(f.recordings.len(), 1);
    let out = recfleet(&["watch", "--type", "lost"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("\"lost\" is not an event type: expected one of worker_up"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn completions_name_the_commands() {
    for shell in ["bash", "zsh", "fish"] {
        let out = recfleet(&["completion", shell]);
        assert_eq!(out.status.code(), Some(0), "{shell}: {}", text(&out.stderr));
        let script = text(&out.stdout);
        assert!(script.len() > 500, "{shell}: {script}");
        for word in ["recordings", "drain", "context", "--sort-by"] {
            assert!(script.contains(word), "{shell} lacks {word}");
        }
    }
    let out = recfleet(&["completion", "tcsh"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn the_man_page_is_roff_naming_the_commands() {
    let out = recfleet(&["man"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let page = text(&out.stdout);
    assert!(page.starts_with(".ie \\n(.g .ds Aq"), "{page}");
    assert!(page.contains(".TH recfleet 1"), "{page}");
    for word in ["recordings", "drain", "\\-\\-context\\-name", "Exit codes"] {
        assert!(page.contains(word), "man page lacks {word}: {page}");
    }
}

#[test]
fn a_recording_with_two_copies_shows_both_workers_and_parses_its_redundancy() {
    let mut r = recording("r1", RecordingState::Recording, Some("w1"), 60);
    r.copy = Some(Box::new(recfleet_protocol::CopyInfo {
        worker: recfleet_protocol::WorkerName::new("w2").unwrap(),
        epoch: recfleet_protocol::Epoch(2),
        capturing: false,
    }));
    let t = recordings_table(std::slice::from_ref(&r), NOW, false);
    assert!(t.contains(" w1+(w2) "), "the copy starting: {t}");
    if let Some(c) = r.copy.as_mut() {
        c.capturing = true;
    }
    let t = recordings_table(&[r], NOW, false);
    assert!(t.contains(" w1+w2 "), "the copy capturing: {t}");

    let cli = parse(&[
        "record",
        "start",
        "https://class.example/a",
        "--redundancy",
        "2",
    ])
    .unwrap();
    let Some(Cmd::Record(recfleet_console::cli::RecordCommand::Start(args))) = cli.command else {
        panic!("not a start: {:?}", cli.command);
    };
    let spec = recfleet_console::commands::spec_from_args(&args).unwrap();
    assert_eq!(spec.redundancy, 2);
    let e = parse(&[
        "record",
        "start",
        "https://class.example/a",
        "--redundancy",
        "3",
    ])
    .unwrap_err();
    assert!(e.to_string().contains("3 is not in 1..=2"), "{e}");
}
