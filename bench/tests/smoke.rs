//! A few seconds of the benchmarks that need no browser: the control round
//! trip against every peer and a fleet of 20 simulated workers, through the
//! built `recfleet-bench` and `recfleet-agent`. It keeps the benchmark's
//! simulated worker and peers working as the protocol and the agent change;
//! the figures of a smoke run mean nothing.

use std::process::Command;

#[test]
fn quick_round_trip_and_scale_run_and_write_json() {
    let bench = env!("CARGO_BIN_EXE_recfleet-bench");
    let agent = std::path::Path::new(bench)
        .parent()
        .unwrap()
        .join("recfleet-agent");
    assert!(
        agent.is_file(),
        "{} is missing: build the workspace binaries first (cargo build --workspace --bins)",
        agent.display()
    );
    let out_dir = tempfile::tempdir().unwrap();
    let json = out_dir.path().join("results.json");
    let out = Command::new(bench)
        .args(["--quick", "--only", "rtt,scale", "--sizes", "20", "--out"])
        .arg(&json)
        .arg("--agent")
        .arg(&agent)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    for system in [
        "recfleet_ping_worker_2hop",
        "recfleet_ping_coordinator_1hop",
        "quinn_echo_1hop",
        "http1_keepalive_json_1hop",
    ] {
        let p50 = v["rtt"]["systems"][system]["p50_us"].as_f64();
        assert!(p50.is_some_and(|p| p > 0.0), "{system}: {v:#}");
    }
    let fleet = &v["scale"]["sizes"][0];
    assert_eq!(fleet["connected"], 20, "{fleet:#}");
    assert_eq!(fleet["placement"]["reached_recording"], 20, "{fleet:#}");
    assert!(stdout.contains("1. Control round trip"), "{stdout}");
}
