//! A `recfleet watch` that stops reading (suspended with SIGSTOP, as Ctrl-Z
//! does) must not make the coordinator hold its events without end: the
//! coordinator cuts it (a suspended process sends no keep-alives, so its
//! connection passes the idle timeout; a reader alive but too slow is cut by
//! the event write timeout instead, see server/subscription.rs), and once
//! resumed the watch subscribes again and starts over from a fresh
//! snapshot. No browser: simulated workers over real QUIC keep events
//! flowing.

use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use recfleet_protocol::spec::RecordingSpec;
use recfleet_protocol::{ConsoleRequest, ConsoleResponse, RecordingId, RecordingState};
use recfleet_testkit::TestFleet;
use recfleet_tests::console::Console;
use tokio::io::AsyncBufReadExt;

const WORKERS: usize = 50;
const CAPACITY: u32 = 4;
const RECORDINGS: usize = WORKERS * CAPACITY as usize;

/// Lines of the watch with the time each was read.
type Lines = tokio::sync::mpsc::UnboundedReceiver<(Instant, serde_json::Value)>;

async fn next_matching(
    lines: &mut Lines,
    until: Instant,
    what: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> (Instant, serde_json::Value) {
    loop {
        let left = until.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, lines.recv()).await {
            Ok(Some((at, v))) if pred(&v) => return (at, v),
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the watch ended before {what}"),
            Err(_) => panic!("no {what} in time"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspended_watch_is_cut_and_resyncs_when_resumed() {
    let mut fleet = TestFleet::start().await.unwrap();
    fleet
        .add_sim_workers("sim", WORKERS, CAPACITY)
        .await
        .unwrap();
    fleet.wait_workers(WORKERS, 30).await.unwrap();
    // Recordings with 2 KB URLs: each telemetry second brings RecordingChanged
    // events of about 0.5 MB, which fill a stopped reader's windows fast.
    let url = format!("https://school.example/room?{}", "a".repeat(2000));
    for i in 0..RECORDINGS {
        let spec = RecordingSpec::new(RecordingId::new(format!("r{i:03}")).unwrap(), url.clone());
        let r = fleet
            .request(ConsoleRequest::StartRecording(spec))
            .await
            .unwrap();
        assert!(matches!(r, ConsoleResponse::Started { .. }), "{r:?}");
    }
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let recording = fleet
            .recordings_paged(&[RecordingState::Recording])
            .await
            .unwrap()
            .len();
        if recording == RECORDINGS {
            break;
        }
        assert!(
            Instant::now() < until,
            "{recording} of {RECORDINGS} recording"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let op = Console::flags(&fleet, "viewer");
    let mut watch = op.command(&["watch", "-o", "json"]).spawn().unwrap();
    let pid = Pid::from_raw(watch.id().expect("watch pid") as i32);
    let stdout = watch.stdout.take().unwrap();
    let (tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut reader = tokio::io::BufReader::new(stdout).lines();
        while let Ok(Some(line)) = reader.next_line().await {
            let v: serde_json::Value =
                serde_json::from_str(&line).unwrap_or(serde_json::Value::String(line));
            if tx.send((Instant::now(), v)).is_err() {
                return;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    next_matching(&mut lines, deadline, "first snapshot", |v| {
        v.get("snapshot").is_some()
    })
    .await;
    next_matching(&mut lines, deadline, "event", |v| v.get("seq").is_some()).await;

    // Suspended long past the idle timeout (2 s) and the event write
    // timeout (5 s).
    kill(pid, Signal::SIGSTOP).unwrap();
    tokio::time::sleep(Duration::from_secs(15)).await;
    let resumed = Instant::now();
    kill(pid, Signal::SIGCONT).unwrap();

    // It reads what was in flight, finds its stream cut, says so, and
    // starts over: a fresh snapshot, then live events again.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (_, cut) = next_matching(&mut lines, deadline, "disconnect line", |v| {
        v.get("disconnected").is_some()
    })
    .await;
    let (snap_at, snap) = next_matching(&mut lines, deadline, "fresh snapshot", |v| {
        v.get("snapshot").is_some()
    })
    .await;
    assert_eq!(
        snap["snapshot"]["workers"], WORKERS,
        "the fresh snapshot holds the fleet: {snap}"
    );
    next_matching(&mut lines, deadline, "event after the resync", |v| {
        v.get("seq").is_some()
    })
    .await;
    eprintln!(
        "cut: {cut}; resynced {} ms after SIGCONT",
        snap_at.duration_since(resumed).as_millis()
    );
    let log = std::fs::read_to_string(fleet.log_path("coordinator")).unwrap_or_default();
    assert!(
        !log.contains("panicked"),
        "the coordinator panicked; logs in {}",
        fleet.dir().display()
    );
    let _ = watch.kill().await;
}
