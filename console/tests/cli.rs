//! The command line as a user meets it: parsing, `--help`, and the binary's
//! exit codes and messages for what can be checked without a coordinator.

use std::path::Path;
use std::process::{Command, Output};

use clap::{CommandFactory, Parser};
use recfleet_certs::{CertificateAuthority, Identity, Role};
use recfleet_console::cli::{Cli, Command as Cmd, ModeArg, RecordCommand};
use recfleet_console::commands::{next_page_command, spec_from_args};
use recfleet_console::context::Context;
use recfleet_protocol::RecordingState;

fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(std::iter::once("recfleet").chain(args.iter().copied()))
}

#[test]
fn record_start_takes_every_option() {
    let cli = parse(&[
        "record",
        "start",
        "https://class.example/room/1",
        "--id",
        "math-101",
        "--max-duration",
        "1h30m",
        "--label",
        "zone=eu",
        "--label",
        "gpu=no",
        "--fps",
        "30",
        "--size",
        "1920x1080",
        "--no-audio",
        "--wait",
        "-o",
        "json",
    ])
    .unwrap();
    let Some(Cmd::Record(RecordCommand::Start(args))) = cli.command else {
        panic!("not a record start");
    };
    assert!(args.wait);
    let spec = spec_from_args(&args).unwrap();
    assert_eq!(spec.id.as_str(), "math-101");
    assert_eq!(spec.stop.max_duration_secs, Some(5400));
    assert_eq!(spec.labels.len(), 2);
    assert_eq!(
        (spec.fps, spec.viewport.width, spec.audio),
        (30, 1920, false)
    );
}

#[test]
fn a_bad_spec_lists_every_problem() {
    let cli = parse(&["record", "start", "file:///etc/passwd", "--size", "7x5"]).unwrap();
    let Some(Cmd::Record(RecordCommand::Start(args))) = cli.command else {
        panic!("not a record start");
    };
    let err = spec_from_args(&args).unwrap_err();
    assert_eq!(err.exit().code(), 2);
    let fields: Vec<&str> = err
        .details()
        .iter()
        .map(|d| d.split(':').next().unwrap_or(""))
        .collect();
    assert_eq!(fields, ["url", "viewport.width", "viewport.height"]);
}

#[test]
fn drain_recordings_and_reassign_parse() {
    let cli = parse(&[
        "drain",
        "w1",
        "--mode",
        "migrate",
        "--deadline",
        "10m",
        "--force",
        "--yes",
        "--detach",
    ])
    .unwrap();
    let Some(Cmd::Drain(d)) = cli.command else {
        panic!()
    };
    assert_eq!(
        (d.mode, d.force, d.yes, d.detach),
        (ModeArg::Migrate, true, true, true)
    );
    assert_eq!(d.deadline.map(|d| d.as_secs()), Some(600));
    let cli = parse(&["recordings", "--state", "recording", "--state", "PENDING"]).unwrap();
    let Some(Cmd::Recordings {
        states,
        limit,
        after,
        ..
    }) = cli.command
    else {
        panic!()
    };
    assert_eq!(states, [RecordingState::Recording, RecordingState::Pending]);
    assert_eq!((limit, after), (None, None), "every page by default");
    let cli = parse(&["reassign", "r1", "--to", "w2"]).unwrap();
    assert!(matches!(
        cli.command,
        Some(Cmd::Reassign { to: Some(_), .. })
    ));
    assert!(parse(&["undrain", "w1", "--keep-ineligible"]).is_ok());
    assert!(
        parse(&[]).unwrap().command.is_none(),
        "no command means the TUI"
    );
}

#[test]
fn recordings_pages_parse() {
    let cli = parse(&["recordings", "--limit", "50", "--continue", "tok-1"]).unwrap();
    let Some(Cmd::Recordings { limit, after, .. }) = cli.command else {
        panic!()
    };
    assert_eq!((limit, after.as_deref()), (Some(50), Some("tok-1")));
    let cli = parse(&["recordings", "--continue=tok-2", "-o", "json"]).unwrap();
    let Some(Cmd::Recordings { limit, after, .. }) = cli.command else {
        panic!()
    };
    assert_eq!((limit, after.as_deref()), (None, Some("tok-2")));
    assert!(parse(&["recordings", "--limit", "1000"]).is_ok());
    for bad in ["0", "1001", "ten", "-3"] {
        let err = parse(&["recordings", "--limit", bad])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("is not a page size: expected a number from 1 to 1000"),
            "{bad}: {err}"
        );
    }
}

#[test]
fn the_next_page_command_repeats_the_command_line() {
    let argv = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        next_page_command(
            &argv(&[
                "recfleet",
                "recordings",
                "--state",
                "recording",
                "--limit",
                "50"
            ]),
            "AAAx_9"
        ),
        "recfleet recordings --state recording --limit 50 --continue AAAx_9"
    );
    // The previous token goes, in either spelling; other flags stay.
    assert_eq!(
        next_page_command(
            &argv(&[
                "recfleet",
                "--context",
                "prod",
                "recordings",
                "--limit",
                "5",
                "--continue",
                "old"
            ]),
            "new"
        ),
        "recfleet --context prod recordings --limit 5 --continue new"
    );
    assert_eq!(
        next_page_command(
            &argv(&["recfleet", "recordings", "--continue=old", "--limit", "5"]),
            "new"
        ),
        "recfleet recordings --limit 5 --continue new"
    );
    // Words a shell would split or expand are quoted.
    assert_eq!(
        next_page_command(
            &argv(&["/opt/my tools/recfleet", "recordings", "--limit", "5"]),
            "it's $x"
        ),
        "'/opt/my tools/recfleet' recordings --limit 5 --continue 'it'\\''s $x'"
    );
}

#[test]
fn bad_values_are_quoted_with_what_is_expected() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["recordings", "--state", "runing"],
            "\"runing\" is not a state: expected one of pending",
        ),
        (
            &["drain", "w1", "--deadline", "soon"],
            "\"soon\" is not a duration",
        ),
        (
            &["record", "start", "https://x", "--label", "zone"],
            "\"zone\" is not a label: expected KEY=VALUE",
        ),
        (
            &["record", "start", "https://x", "--size", "big"],
            "\"big\" is not a size",
        ),
        (&["drain", "-bad"], "unexpected argument"),
        (
            &["record", "stop", "a/b"],
            "recording id \"a/b\" contains '/'",
        ),
    ];
    for (args, expected) in cases {
        let err = parse(args).unwrap_err().to_string();
        assert!(err.contains(expected), "{args:?}: {err}");
    }
}

#[test]
fn help_texts() {
    let mut cmd = Cli::command();
    cmd.build();
    insta::assert_snapshot!("help_top", cmd.render_help().to_string());
    let start = cmd
        .find_subcommand_mut("record")
        .and_then(|r| r.find_subcommand_mut("start"))
        .map(|s| s.render_help().to_string())
        .unwrap_or_default();
    insta::assert_snapshot!("help_record_start", start);
    let drain = cmd
        .find_subcommand_mut("drain")
        .map(|s| s.render_help().to_string())
        .unwrap_or_default();
    insta::assert_snapshot!("help_drain", drain);
}

/// The binary with a clean environment: no RECFLEET_* variables and an
/// empty config directory.
fn recfleet(config: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_recfleet"));
    for (k, _) in std::env::vars() {
        if k.starts_with("RECFLEET_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("XDG_CONFIG_HOME", config)
        .args(args)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn without_a_context_the_console_says_how_to_get_one() {
    let dir = tempfile::tempdir().unwrap();
    let out = recfleet(dir.path(), &["workers"]);
    assert_eq!(out.status.code(), Some(64), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.starts_with("error: no --coordinator, --ca, --cert, --key given"),
        "{err}"
    );
    assert!(err.contains("recfleet/context.toml (absent)"), "{err}");
    assert!(err.contains("hint: run `recfleet-agent dev`"), "{err}");
}

#[test]
fn json_errors_are_documented_objects_on_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let out = recfleet(dir.path(), &["workers", "-o", "json"]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["error"]["kind"], "config");
    assert_eq!(doc["error"]["exit_code"], 64);
    assert!(doc["error"]["hint"].is_string());
}

#[test]
fn usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = recfleet(dir.path(), &["record", "start", "https://x", "--fps", "0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("0 is not in 1..=60"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn drain_without_yes_and_without_a_terminal_is_refused_before_connecting() {
    let dir = tempfile::tempdir().unwrap();
    let out = recfleet(dir.path(), &["drain", "w1"]);
    assert_eq!(out.status.code(), Some(9), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("hint: pass --yes"),
        "{}",
        text(&out.stderr)
    );
}

/// A real context (CA, operator certificate) pointing at a port where no
/// coordinator listens.
fn dead_context(dir: &Path) -> std::path::PathBuf {
    let ca = CertificateAuthority::generate().unwrap();
    let issued = ca
        .issue_for_days(Identity::new(Role::Operator, "op").unwrap(), Vec::new(), 1)
        .unwrap();
    std::fs::write(dir.join("ca.pem"), ca.cert_pem()).unwrap();
    std::fs::write(dir.join("op.pem"), &issued.cert_pem).unwrap();
    std::fs::write(dir.join("op-key.pem"), &issued.key_pem).unwrap();
    // A port just bound and released: nothing answers there.
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let ctx = Context {
        coordinator: format!("127.0.0.1:{port}"),
        server_name: "localhost".into(),
        ca: dir.join("ca.pem"),
        cert: dir.join("op.pem"),
        key: dir.join("op-key.pem"),
    };
    let path = dir.join("recfleet/context.toml");
    ctx.write(&path).unwrap();
    path
}

#[test]
fn an_unreachable_coordinator_is_a_connection_failure() {
    let dir = tempfile::tempdir().unwrap();
    dead_context(dir.path());
    // Found through XDG_CONFIG_HOME, as `recfleet-agent dev` would leave it.
    let out = recfleet(dir.path(), &["whoami", "-o", "json"]);
    assert_eq!(out.status.code(), Some(7), "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["error"]["kind"], "connection");
    // Worded as a failed attempt naming the address, not as a lost connection.
    let message = doc["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("cannot connect to the coordinator at 127.0.0.1:"),
        "{message}"
    );
    assert!(
        text(&out.stderr).contains("hint: is the coordinator running"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_missing_certificate_file_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = dead_context(dir.path());
    let ctx = ctx.to_str().unwrap();
    let out = recfleet(
        dir.path(),
        &["--context", ctx, "--cert", "/nonexistent.pem", "workers"],
    );
    assert_eq!(out.status.code(), Some(64), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("cannot load certificates"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn the_tui_without_a_terminal_points_to_the_commands() {
    let dir = tempfile::tempdir().unwrap();
    let out = recfleet(dir.path(), &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("the TUI needs a terminal"),
        "{}",
        text(&out.stderr)
    );
}
