//! Metrics, health and readiness of real processes, and systemd readiness.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use recfleet_agent::demo::DemoServer;
use recfleet_protocol::spec::{RecordingSpec, Viewport};
use recfleet_protocol::{
    ConsoleRequest, ConsoleResponse, DrainMode, RecordingId, RecordingState, WorkerName,
};
use recfleet_testkit::{http_get, workspace_bin, TestFleet};

/// The value of one sample line, e.g. `recfleet_workers{state="ready"}`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        l.strip_prefix(series)
            .and_then(|rest| rest.trim().parse().ok())
    })
}

async fn wait_http(addr: std::net::SocketAddr, path: &str, status: u16, secs: u64) -> String {
    let until = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let got = tokio::task::spawn_blocking({
            let path = path.to_string();
            move || http_get(addr, &path)
        })
        .await
        .unwrap();
        if let Ok((s, body)) = &got {
            if *s == status {
                return body.clone();
            }
        }
        assert!(
            tokio::time::Instant::now() < until,
            "{addr}{path} never answered {status}: {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_metrics_and_readiness_of_a_recording_fleet() {
    let page = DemoServer::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let mut fleet = TestFleet::start().await.unwrap();
    // systemd's side of sd_notify: a datagram socket the worker writes to.
    let notify_path = fleet.dir().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    fleet
        .add_worker_with(1, 2, &[("NOTIFY_SOCKET", notify_path.to_str().unwrap())])
        .unwrap();
    let mut buf = [0u8; 256];
    let n = tokio::task::spawn_blocking(move || {
        notify
            .recv(&mut buf)
            .map(|n| String::from_utf8_lossy(&buf[..n]).to_string())
    })
    .await
    .unwrap()
    .expect("the worker never notified systemd");
    assert!(n.contains("READY=1"), "{n}");
    // READY is sent once connected: the coordinator knows the worker by now.
    fleet.wait_workers(1, 10).await.unwrap();

    let mut spec = RecordingSpec::new(
        RecordingId::new("observed").unwrap(),
        page.url("title=observed"),
    );
    spec.viewport = Viewport {
        width: 640,
        height: 360,
    };
    spec.fps = 10;
    spec.stop.max_duration_secs = Some(600);
    fleet
        .request(ConsoleRequest::StartRecording(spec))
        .await
        .unwrap();
    let id = RecordingId::new("observed").unwrap();
    fleet
        .wait_for(&id, 60, |d| d.info.state == RecordingState::Recording)
        .await
        .unwrap();

    let c = wait_http(fleet.coordinator_http, "/metrics", 200, 10).await;
    assert_eq!(
        sample(&c, "recfleet_recordings{state=\"recording\"}"),
        Some(1.0),
        "{c}"
    );
    assert_eq!(
        sample(&c, "recfleet_workers{state=\"ready\"}"),
        Some(1.0),
        "{c}"
    );
    assert_eq!(
        sample(&c, "recfleet_worker_slots_used{worker=\"w1\"}"),
        Some(1.0),
        "{c}"
    );
    assert_eq!(sample(&c, "recfleet_capacity_units"), Some(2.0), "{c}");
    assert_eq!(sample(&c, "recfleet_capacity_free_units"), Some(1.0), "{c}");
    assert_eq!(sample(&c, "recfleet_recordings_pending"), Some(0.0), "{c}");
    assert_eq!(
        sample(&c, "recfleet_placement_latency_seconds_count"),
        Some(1.0),
        "{c}"
    );
    assert_eq!(
        sample(&c, "recfleet_recording_start_latency_seconds_count"),
        Some(1.0),
        "{c}"
    );
    // The recording's media health, once its worker has measured it: one
    // running recording, in one known state (the demo page moves and
    // beeps: ok).
    let until = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let m = wait_http(fleet.coordinator_http, "/metrics", 200, 10).await;
        if sample(&m, "recfleet_recording_health{health=\"ok\"}") == Some(1.0) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "no recording counted ok by health within 20 s:\n{}",
            m.lines()
                .filter(|l| l.contains("recording_health"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for name in [
        "recfleet_failovers_total",
        "recfleet_reassigns_total",
        "recfleet_drains_total",
        "recfleet_bytes_written_total",
    ] {
        assert!(sample(&c, name).is_some(), "{name} missing:\n{c}");
    }
    let w_http = fleet.worker_http["w1"];
    let w = wait_http(w_http, "/metrics", 200, 10).await;
    assert_eq!(sample(&w, "recfleet_worker_slots_used"), Some(1.0), "{w}");
    assert_eq!(sample(&w, "recfleet_worker_connected"), Some(1.0), "{w}");
    wait_http(w_http, "/readyz", 200, 10).await;
    wait_http(fleet.coordinator_http, "/readyz", 200, 10).await;

    // A draining worker is not ready, and says why.
    let drain = ConsoleRequest::Drain {
        worker: WorkerName::new("w1").unwrap(),
        mode: DrainMode::Wait,
        deadline_secs: None,
        force: false,
    };
    assert!(matches!(
        fleet.request(drain).await.unwrap(),
        ConsoleResponse::Accepted { .. }
    ));
    let why = wait_http(w_http, "/readyz", 503, 10).await;
    assert!(why.contains("draining"), "{why}");
    let c = wait_http(fleet.coordinator_http, "/metrics", 200, 10).await;
    assert_eq!(sample(&c, "recfleet_drains_total"), Some(1.0), "{c}");
    assert_eq!(
        sample(&c, "recfleet_workers{state=\"draining\"}"),
        Some(1.0),
        "{c}"
    );
}

#[tokio::test]
async fn a_coordinator_whose_store_cannot_be_opened_is_alive_but_not_ready() {
    let fleet_certs = TestFleet::start().await.unwrap();
    let data = fleet_certs.dir().join("broken");
    // A directory where the database file should be: SQLite cannot open it.
    std::fs::create_dir_all(data.join("store.db")).unwrap();
    let http = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let tls = fleet_certs.tls();
    let mut child = tokio::process::Command::new(workspace_bin("recfleet-agent"))
        .arg("coordinator")
        .args([
            "--listen",
            "127.0.0.1:0",
            "--metrics-addr",
            &http.to_string(),
        ])
        .arg("--data-dir")
        .arg(&data)
        .arg("--ca")
        .arg(tls.join("ca.pem"))
        .arg("--cert")
        .arg(tls.join("coordinator.pem"))
        .arg("--key")
        .arg(tls.join("coordinator-key.pem"))
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let why = wait_http(http, "/readyz", 503, 15).await;
    assert!(why.contains("store"), "{why}");
    wait_http(http, "/healthz", 200, 5).await;
    // SIGTERM ends it cleanly even while it waits for its store.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id().unwrap() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(
        status.code().is_some(),
        "killed by a signal instead of exiting: {status:?}"
    );
}
