//! `recfleet context list|use|current` and `--context-name`, run as a user
//! runs them: the binary, a context file in a temporary config directory,
//! no coordinator.

use std::path::Path;
use std::process::{Command, Output};

use recfleet_console::context::{Context, ContextFile};

/// The binary with no RECFLEET_* variables and `config` as XDG_CONFIG_HOME.
fn recfleet(config: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_recfleet"));
    for (k, _) in std::env::vars() {
        if k.starts_with("RECFLEET_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("XDG_CONFIG_HOME", config)
        .envs(env.iter().copied())
        .args(args)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn ctx(coordinator: &str) -> Context {
    Context {
        coordinator: coordinator.into(),
        server_name: "coordinator.example".into(),
        ca: "/etc/recfleet/ca.pem".into(),
        cert: "/etc/recfleet/alice.pem".into(),
        key: "/etc/recfleet/alice-key.pem".into(),
    }
}

fn default_file(config: &Path) -> std::path::PathBuf {
    config.join("recfleet/context.toml")
}

#[test]
fn list_shows_every_context_and_marks_the_current_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = default_file(dir.path());
    ContextFile::save_current(&path, "prod", &ctx("prod.example:7800")).unwrap();
    // What the dev fleet does: its context beside prod, made current.
    ContextFile::save_current(&path, "dev", &ctx("127.0.0.1:7800")).unwrap();
    let out = recfleet(dir.path(), &[], &["context", "list"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines[0], "CURRENT  NAME  COORDINATOR        SERVER NAME");
    assert_eq!(
        lines[1],
        "*        dev   127.0.0.1:7800     coordinator.example"
    );
    assert_eq!(
        lines[2],
        "         prod  prod.example:7800  coordinator.example"
    );
    let out = recfleet(dir.path(), &[], &["context", "list", "-o", "json"]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        doc,
        serde_json::json!([
            {"name": "dev", "coordinator": "127.0.0.1:7800", "server_name": "coordinator.example", "current": true},
            {"name": "prod", "coordinator": "prod.example:7800", "server_name": "coordinator.example", "current": false},
        ])
    );
}

#[test]
fn use_switches_the_current_context_and_an_unknown_name_is_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let path = default_file(dir.path());
    ContextFile::save_current(&path, "prod", &ctx("prod.example:7800")).unwrap();
    ContextFile::save_current(&path, "dev", &ctx("127.0.0.1:7800")).unwrap();
    let out = recfleet(dir.path(), &[], &["context", "current"]);
    assert_eq!(text(&out.stdout), "dev\n");
    let out = recfleet(dir.path(), &[], &["context", "use", "prod"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = recfleet(dir.path(), &[], &["context", "current"]);
    assert_eq!(text(&out.stdout), "prod\n");
    assert_eq!(Context::load(&path).unwrap(), ctx("prod.example:7800"));

    let out = recfleet(dir.path(), &[], &["context", "use", "staging"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("no context named \"staging\"") && err.contains("(it has: dev, prod)"),
        "{err}"
    );
    assert!(err.contains("hint: `recfleet context list`"), "{err}");
    // Nothing changed.
    let out = recfleet(dir.path(), &[], &["context", "current"]);
    assert_eq!(text(&out.stdout), "prod\n");
}

#[test]
fn an_old_single_context_file_lists_as_default_and_is_kept_until_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = default_file(dir.path());
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let old =
        "# mine\ncoordinator = \"h:7800\"\nca = \"ca.pem\"\ncert = \"c.pem\"\nkey = \"k.pem\"\n";
    std::fs::write(&path, old).unwrap();
    let out = recfleet(dir.path(), &[], &["context", "list"]);
    assert!(
        text(&out.stdout).contains("*        default  h:7800"),
        "{}",
        text(&out.stdout)
    );
    let out = recfleet(dir.path(), &[], &["context", "current"]);
    assert_eq!(text(&out.stdout), "default\n");
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        old,
        "not rewritten"
    );
    // A command that writes converts it, with everything it had.
    let out = recfleet(dir.path(), &[], &["context", "use", "default"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let f = ContextFile::load(&path).unwrap();
    assert!(!f.legacy);
    let e = &f.contexts["default"];
    assert_eq!(e.coordinator.as_deref(), Some("h:7800"));
    assert_eq!(e.ca.as_deref(), Some(Path::new("ca.pem")), "still relative");
}

#[test]
fn context_name_picks_a_context_for_one_command() {
    let dir = tempfile::tempdir().unwrap();
    let path = default_file(dir.path());
    ContextFile::save_current(&path, "prod", &ctx("prod.example:7800")).unwrap();
    // The flag and the variable: an unknown name is not found (3), before
    // any connection is tried.
    let out = recfleet(dir.path(), &[], &["--context-name", "nope", "workers"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("no context named \"nope\""),
        "{}",
        text(&out.stderr)
    );
    let out = recfleet(
        dir.path(),
        &[("RECFLEET_CONTEXT_NAME", "nope")],
        &["workers", "-o", "json"],
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["error"]["kind"], "not_found");
    // A known name is used: its certificate paths do not exist here, which
    // is a bad context (64) naming prod's path.
    let out = recfleet(dir.path(), &[], &["--context-name", "prod", "workers"]);
    assert_eq!(out.status.code(), Some(64), "{}", text(&out.stderr));
    // --context still names the file.
    let other = dir.path().join("other.toml");
    ContextFile::save_current(&other, "lab", &ctx("lab.example:7800")).unwrap();
    let out = recfleet(
        dir.path(),
        &[],
        &["--context", other.to_str().unwrap(), "context", "current"],
    );
    assert_eq!(text(&out.stdout), "lab\n");
}

#[test]
fn without_a_file_list_is_empty_and_current_is_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let out = recfleet(dir.path(), &[], &["context", "list", "-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "[]\n");
    let out = recfleet(dir.path(), &[], &["context", "current"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("no context in"),
        "{}",
        text(&out.stderr)
    );
}
