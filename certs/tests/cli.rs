//! The `recfleet-certs` binary, run the way a user runs it.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_recfleet-certs"))
        .args(args)
        .output()
        .expect("spawn recfleet-certs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[track_caller]
fn ok(args: &[&str]) -> String {
    let o = run(args);
    assert!(
        o.status.success(),
        "{args:?} failed: {}{}",
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

#[track_caller]
fn fails(args: &[&str], code: i32) -> String {
    let o = run(args);
    assert_eq!(
        o.status.code(),
        Some(code),
        "{args:?}: {}{}",
        stdout(&o),
        stderr(&o)
    );
    stderr(&o)
}

#[test]
fn init_issue_show() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pki");
    let d = dir.to_str().unwrap();

    let out = ok(&["init", "--dir", d]);
    assert!(
        out.contains("ca.pem") && out.contains("ca-key.pem"),
        "{out}"
    );
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("ca-key.pem")), 0o600);

    // A second init must not destroy the CA.
    let ca_before = fs::read(dir.join("ca.pem")).unwrap();
    let err = fails(&["init", "--dir", d], 1);
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.contains("ca.pem") && err.contains("--force"), "{err}");
    assert_eq!(fs::read(dir.join("ca.pem")).unwrap(), ca_before);

    let out = ok(&["issue", "--dir", d, "--role", "operator", "--name", "alice"]);
    assert!(out.contains("operator/alice"), "{out}");
    let cert = dir.join("operator-alice.pem");
    let key = dir.join("operator-alice-key.pem");
    assert!(out.contains(cert.to_str().unwrap()), "{out}");
    assert_eq!(mode(&key), 0o600);

    // No silent overwrite of an issued certificate either.
    let cert_before = fs::read(&cert).unwrap();
    let err = fails(
        &["issue", "--dir", d, "--role", "operator", "--name", "alice"],
        1,
    );
    assert!(
        err.contains("operator-alice") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(fs::read(&cert).unwrap(), cert_before);
    ok(&[
        "issue", "--dir", d, "--role", "operator", "--name", "alice", "--force",
    ]);
    assert_ne!(fs::read(&cert).unwrap(), cert_before);

    let show = ok(&["show", cert.to_str().unwrap()]);
    for want in [
        "role:       operator",
        "name:       alice",
        "CN=operator/alice",
        "CN=recfleet CA",
        "URI:spiffe://recfleet/operator/alice",
        "status:     valid",
    ] {
        assert!(show.contains(want), "missing {want:?} in\n{show}");
    }
    assert!(!show.contains("EXPIRED"), "{show}");
}

#[test]
fn coordinator_sans_out_dir_and_json() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().to_str().unwrap();
    let out_dir = tmp.path().join("server");
    ok(&["init", "--dir", d]);
    ok(&[
        "issue",
        "--dir",
        d,
        "--role",
        "coordinator",
        "--name",
        "main",
        "--san",
        "fleet.example.com",
        "--san",
        "10.1.2.3",
        "--days",
        "7",
        "--out-dir",
        out_dir.to_str().unwrap(),
    ]);
    let cert = out_dir.join("coordinator-main.pem");
    assert_eq!(mode(&out_dir.join("coordinator-main-key.pem")), 0o600);
    let json = ok(&["show", cert.to_str().unwrap(), "--output", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["role"], "coordinator");
    assert_eq!(v["name"], "main");
    assert_eq!(v["identity"], "coordinator/main");
    assert_eq!(v["is_ca"], false);
    assert_eq!(v["status"], "valid");
    assert_eq!(
        v["sans"],
        serde_json::json!([
            "URI:spiffe://recfleet/coordinator/main",
            "DNS:fleet.example.com",
            "IP:10.1.2.3"
        ])
    );
    // RFC 3339
    let na = v["not_after"].as_str().unwrap();
    assert!(na.ends_with('Z') && na.contains('T'), "{na}");

    let ca = ok(&["show", tmp.path().join("ca.pem").to_str().unwrap()]);
    assert!(ca.contains("ca:         yes"), "{ca}");
}

#[test]
fn bad_values_exit_64_with_the_value_quoted() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().to_str().unwrap();
    ok(&["init", "--dir", d]);

    let err = fails(&["issue", "--dir", d, "--role", "admin", "--name", "x"], 64);
    assert!(err.contains("\"admin\""), "{err}");
    assert!(
        err.contains("coordinator, agent, operator, viewer"),
        "{err}"
    );

    let err = fails(
        &["issue", "--dir", d, "--role", "agent", "--name", "-x"],
        64,
    );
    assert!(err.contains("\"-x\""), "{err}");
    let err = fails(
        &["issue", "--dir", d, "--role", "agent", "--name", "a/b"],
        64,
    );
    assert!(err.contains("\"a/b\""), "{err}");

    let err = fails(
        &[
            "issue", "--dir", d, "--role", "agent", "--name", "x", "--days", "0",
        ],
        64,
    );
    assert!(err.contains("--days"), "{err}");

    let err = fails(
        &[
            "issue",
            "--dir",
            d,
            "--role",
            "coordinator",
            "--name",
            "c",
            "--san",
            "no way",
        ],
        64,
    );
    assert!(err.contains("\"no way\""), "{err}");

    // Nothing was written by the refused commands.
    let names: Vec<_> = fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

#[test]
fn usage_errors_exit_2_and_runtime_errors_exit_1() {
    fails(&["issue", "--role", "agent"], 2);
    fails(&["frobnicate"], 2);
    fails(
        &[
            "issue", "--dir", "x", "--role", "agent", "--name", "a", "--days", "ten",
        ],
        2,
    );

    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nope");
    let err = fails(
        &[
            "issue",
            "--dir",
            missing.to_str().unwrap(),
            "--role",
            "agent",
            "--name",
            "a",
        ],
        1,
    );
    assert!(err.contains("ca.pem"), "{err}");

    let err = fails(&["show", missing.to_str().unwrap()], 1);
    assert!(err.starts_with("error: ") && err.contains("nope"), "{err}");

    ok(&["init", "--dir", tmp.path().to_str().unwrap()]);
    let err = fails(
        &["show", tmp.path().join("ca-key.pem").to_str().unwrap()],
        1,
    );
    assert!(err.contains("no certificate"), "{err}");
}

#[test]
fn show_flags_expired_certificates() {
    use recfleet_certs::{CertificateAuthority, Identity, IssueRequest, Role};
    use time::{Duration, OffsetDateTime};

    let tmp = tempfile::tempdir().unwrap();
    let ca = CertificateAuthority::init(tmp.path(), false).unwrap();
    let now = OffsetDateTime::now_utc();
    let issued = ca
        .issue(&IssueRequest {
            identity: Identity::new(Role::Viewer, "old").unwrap(),
            sans: vec![],
            not_before: now - Duration::days(30),
            not_after: now - Duration::days(1),
        })
        .unwrap();
    let paths = recfleet_certs::write_cert_files(tmp.path(), "old", &issued, false).unwrap();
    let out = ok(&["show", paths.cert.to_str().unwrap()]);
    assert!(out.contains("EXPIRED"), "{out}");
    let json = ok(&["show", paths.cert.to_str().unwrap(), "--output", "json"]);
    assert!(json.contains("\"EXPIRED\""), "{json}");
}
