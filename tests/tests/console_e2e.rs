//! The console end to end, as a user runs it: the `recfleet` binary against
//! a real coordinator (and real workers where a recording runs), its JSON
//! parsed; the TUI in a tmux pane; and the latency from a worker's state
//! change to the console (an ignored test that prints the figures).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use recfleet_agent::demo::DemoServer;
use recfleet_protocol::{now_ms, ConsoleRequest, RecordingId, RecordingState};
use recfleet_testkit::{procs, TestFleet};
use recfleet_tests::console::{line_with, tui_shell, write_context, Console, Run, Tmux};
use serde_json::Value;

/// A fleet whose coordinator answers (no workers).
async fn fleet() -> TestFleet {
    let mut fleet = TestFleet::start().await.unwrap();
    fleet
        .request(ConsoleRequest::ListWorkers)
        .await
        .expect("the coordinator did not come up");
    fleet
}

/// A small, cheap recording of `page` with `id`, started with the binary.
async fn record_start(console: &Console, url: &str, id: &str) -> Run {
    let run = console
        .run(&[
            "record",
            "start",
            url,
            "--id",
            id,
            "--size",
            "640x360",
            "--fps",
            "10",
            "--no-audio",
            "--max-duration",
            "10m",
            "-o",
            "json",
        ])
        .await;
    run.expect_code(0);
    run
}

async fn wait_recording_on(fleet: &mut TestFleet, id: &str, worker: &str) {
    let rid = RecordingId::new(id).unwrap();
    fleet
        .wait_for(&rid, 60, |d| {
            d.info.state == RecordingState::Recording
                && d.info.worker.as_ref().map(|w| w.as_str()) == Some(worker)
        })
        .await
        .unwrap_or_else(|e| panic!("{id} is not recording on {worker}: {e}"));
}

/// w1 (capacity 2) with recording `id` on it, then w2 (capacity 2) free.
async fn fleet_with_a_recording_on_w1(id: &str) -> (TestFleet, DemoServer, Console) {
    let page = DemoServer::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let mut fleet = fleet().await;
    fleet.add_worker(1, 2).unwrap();
    fleet.wait_workers(1, 30).await.unwrap();
    let console = Console::flags(&fleet, "operator");
    let run = record_start(&console, &page.url(&format!("title={id}")), id).await;
    assert_eq!(run.json()["created"], true, "{run}");
    wait_recording_on(&mut fleet, id, "w1").await;
    fleet.add_worker(2, 2).unwrap();
    fleet.wait_workers(2, 30).await.unwrap();
    (fleet, page, console)
}

fn recording<'a>(list: &'a Value, id: &str) -> &'a Value {
    list.as_array()
        .unwrap_or_else(|| panic!("not an array: {list}"))
        .iter()
        .find(|r| r["id"] == id)
        .unwrap_or_else(|| panic!("{id} is not listed: {list}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripted_commands_against_a_real_coordinator() {
    let fleet = fleet().await;
    let addr = fleet.addr.to_string();
    let op = Console::flags(&fleet, "operator");

    // whoami: the coordinator sees the certificate's role and name.
    let run = op.run(&["whoami", "-o", "json"]).await;
    let who = run.expect_code(0).json();
    assert_eq!(who["role"], "operator", "{run}");
    assert_eq!(who["name"], "tester", "{run}");
    assert_eq!(who["coordinator"], addr.as_str(), "{run}");
    assert!(who["coordinator_version"].is_string(), "{run}");

    // Empty lists are empty arrays, not errors.
    let run = op.run(&["workers", "-o", "json"]).await;
    assert_eq!(run.expect_code(0).json(), serde_json::json!([]), "{run}");
    let run = op.run(&["recordings", "-o", "json"]).await;
    assert_eq!(run.expect_code(0).json(), serde_json::json!([]), "{run}");

    // record start: created; the same again: not created, the same id.
    // Nothing listens at the URL and no worker exists: it stays pending.
    let url = "http://127.0.0.1:9/class";
    let first = op
        .run(&["record", "start", url, "--id", "e2e-1", "-o", "json"])
        .await;
    let doc = first.expect_code(0).json();
    assert_eq!(doc["created"], true, "{first}");
    assert_eq!(doc["recording"]["id"], "e2e-1", "{first}");
    assert_eq!(doc["recording"]["url"], url, "{first}");
    assert_eq!(doc["recording"]["state"], "pending", "{first}");
    let again = op
        .run(&["record", "start", url, "--id", "e2e-1", "-o", "json"])
        .await;
    let doc = again.expect_code(0).json();
    assert_eq!(doc["created"], false, "{again}");
    assert_eq!(doc["recording"]["id"], "e2e-1", "{again}");
    let listed = op.run(&["recordings", "-o", "json"]).await;
    let list = listed.expect_code(0).json();
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(recording(&list, "e2e-1")["state"], "pending");
    // One page: an object with the page and the next page's token.
    let paged = op.run(&["recordings", "--limit", "1", "-o", "json"]).await;
    let page = paged.expect_code(0).json();
    assert_eq!(page["recordings"][0]["id"], "e2e-1", "{paged}");
    assert!(
        page.get("next")
            .is_some_and(|n| n.is_null() || n.is_string()),
        "{paged}"
    );
    // The table says the same for a person.
    let table = op.run(&["record", "start", url, "--id", "e2e-1"]).await;
    assert!(
        table.expect_code(0).stdout.contains("already exists"),
        "{table}"
    );

    // A bad request: exit 2, every problem listed, nothing created.
    let bad = op
        .run(&[
            "record",
            "start",
            "file:///etc/passwd",
            "--size",
            "7x5",
            "--id",
            "e2e-bad",
            "-o",
            "json",
        ])
        .await;
    let err = bad.expect_code(2).json();
    assert_eq!(err["error"]["kind"], "invalid_input", "{bad}");
    assert_eq!(err["error"]["exit_code"], 2, "{bad}");
    let details: Vec<&str> = err["error"]["details"]
        .as_array()
        .unwrap_or_else(|| panic!("no details: {bad}"))
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for field in ["url", "viewport.width", "viewport.height"] {
        assert!(
            details.iter().any(|d| d.starts_with(field)),
            "{field} is not among the problems: {bad}"
        );
        assert!(bad.stderr.contains(&format!("  - {field}")), "{bad}");
    }
    let shown = op.run(&["record", "show", "e2e-bad"]).await;
    shown.expect_code(3);

    // Unknown recording and worker: not found (3), with a hint.
    let missing = op
        .run(&["record", "show", "no-such-rec", "-o", "json"])
        .await;
    let err = missing.expect_code(3).json();
    assert_eq!(err["error"]["kind"], "not_found", "{missing}");
    assert!(missing.stderr.contains("hint: "), "{missing}");
    let missing = op.run(&["undrain", "w9", "-o", "json"]).await;
    assert_eq!(
        missing.expect_code(3).json()["error"]["kind"],
        "not_found",
        "{missing}"
    );

    // record show: info, spec and manifest.
    let show = op.run(&["record", "show", "e2e-1", "-o", "json"]).await;
    let doc = show.expect_code(0).json();
    assert_eq!(doc["info"]["id"], "e2e-1", "{show}");
    assert_eq!(doc["spec"]["url"], url, "{show}");
    assert!(doc["manifest"]["segments"].is_array(), "{show}");

    // record stop: accepted; the recording ends.
    let stop = op.run(&["record", "stop", "e2e-1", "-o", "json"]).await;
    let doc = stop.expect_code(0).json();
    assert_eq!(doc["accepted"], true, "{stop}");
    assert!(doc["message"].as_str().is_some_and(|m| !m.is_empty()));
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let show = op.run(&["record", "show", "e2e-1", "-o", "json"]).await;
        let state = show.expect_code(0).json()["info"]["state"].clone();
        if state == "cancelled" || state == "completed" {
            break;
        }
        assert!(
            Instant::now() < until,
            "e2e-1 did not end after stop: {show}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The same through a context file: --context FILE, and RECFLEET_CONTEXT.
    let ctx = write_context(&fleet, "operator");
    let by_flag =
        Console::bare(fleet.dir()).with_conn(vec!["--context".into(), ctx.clone().into()]);
    let run = by_flag.run(&["whoami", "-o", "json"]).await;
    assert_eq!(run.expect_code(0).json()["name"], "tester", "{run}");
    let by_env = Console::bare(fleet.dir()).with_env("RECFLEET_CONTEXT", &ctx);
    let run = by_env.run(&["recordings", "-o", "json"]).await;
    recording(&run.expect_code(0).json(), "e2e-1");
    let table = by_env.run(&["whoami"]).await;
    assert!(
        table.expect_code(0).stdout.contains("operator/tester"),
        "{table}"
    );

    // Nothing listens: connection failure (7) with a message to act on.
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let nowhere = format!("127.0.0.1:{port}");
    let tls = fleet.tls();
    let down = Console::bare(fleet.dir()).with_conn(vec![
        "--coordinator".into(),
        nowhere.clone().into(),
        "--ca".into(),
        tls.join("ca.pem").into(),
        "--cert".into(),
        tls.join("operator.pem").into(),
        "--key".into(),
        tls.join("operator-key.pem").into(),
    ]);
    let started = Instant::now();
    let run = down.run(&["workers", "-o", "json"]).await;
    let took = started.elapsed();
    let err = run.expect_code(7).json();
    assert_eq!(err["error"]["kind"], "connection", "{run}");
    assert!(run.stderr.contains(&nowhere), "the address is named: {run}");
    assert!(
        run.stderr.contains("hint: is the coordinator running"),
        "{run}"
    );
    assert!(
        took < Duration::from_secs(15),
        "failing took {took:?}: {run}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_drain_is_refused_by_the_coordinator() {
    let mut fleet = fleet().await;
    fleet.add_worker(1, 2).unwrap();
    fleet.wait_workers(1, 30).await.unwrap();
    let viewer = Console::flags(&fleet, "viewer");

    let run = viewer.run(&["whoami", "-o", "json"]).await;
    assert_eq!(run.expect_code(0).json()["role"], "viewer", "{run}");
    // A viewer may watch...
    let run = viewer.run(&["workers", "-o", "json"]).await;
    let workers = run.expect_code(0).json();
    assert_eq!(workers[0]["name"], "w1", "{run}");
    assert_eq!(workers[0]["state"], "ready", "{run}");

    // ...but its drain is refused by the coordinator: exit 4, the
    // coordinator's words on stderr and in the JSON error.
    for args in [
        &["drain", "w1", "--yes", "-o", "json"][..],
        &["drain", "w1", "--yes", "--detach", "-o", "json"][..],
    ] {
        let run = viewer.run(args).await;
        let err = run.expect_code(4).json();
        assert_eq!(err["error"]["kind"], "forbidden", "{run}");
        let message = err["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("viewer/watcher may not change the fleet"),
            "not the coordinator's refusal: {run}"
        );
        assert!(run.stderr.contains("may not change the fleet"), "{run}");
        assert!(run.stderr.contains("operator certificate"), "{run}");
        assert!(
            !run.stdout.contains("\"accepted\""),
            "something was accepted: {run}"
        );
    }
    // The other actions too.
    let run = viewer.run(&["undrain", "w1"]).await;
    run.expect_code(4);
    let run = viewer
        .run(&["record", "start", "http://127.0.0.1:9/", "--id", "v-1"])
        .await;
    run.expect_code(4);

    // Nothing changed: w1 is still ready, nothing was created.
    let op = Console::flags(&fleet, "operator");
    let run = op.run(&["workers", "-o", "json"]).await;
    assert_eq!(run.expect_code(0).json()[0]["state"], "ready", "{run}");
    let run = op.run(&["recordings", "-o", "json"]).await;
    assert_eq!(run.expect_code(0).json(), serde_json::json!([]), "{run}");

    // Every refusal is in the audit trail, which only operators read (the
    // viewer's try is refused, and audited too).
    viewer.run(&["audit"]).await.expect_code(4);
    let run = op.run(&["audit", "-o", "json"]).await;
    let trail = run.expect_code(0).json();
    let refused: Vec<(String, String)> = trail
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "refused")
        .map(|e| {
            (
                e["actor"].as_str().unwrap_or_default().to_string(),
                e["target"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    for what in [
        "drain a worker",
        "undrain a worker",
        "start a recording",
        "read the audit trail",
    ] {
        assert!(
            refused
                .iter()
                .any(|(who, t)| who == "viewer/watcher" && t == what),
            "{what} not audited: {run}"
        );
    }

    // An operator's drain: its events say who acted, and describe shows it.
    op.run(&["drain", "w1", "--yes", "--detach"])
        .await
        .expect_code(0);
    let until = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let run = op.run(&["describe", "worker", "w1"]).await;
        let text = run.expect_code(0).stdout.clone();
        if text.contains("(by operator/") && text.contains("State:      draining") {
            break;
        }
        assert!(std::time::Instant::now() < until, "{text}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let run = op.run(&["audit"]).await;
    assert!(
        run.expect_code(0)
            .stdout
            .lines()
            .any(|l| l.contains("operator/") && l.contains("drain") && l.contains("w1")),
        "{run}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_drain_migrate_from_the_command_line_follows_it_to_complete() {
    let (fleet, _page, op) = fleet_with_a_recording_on_w1("cli-move").await;
    let w1_tag = format!("{}-", fleet.worker_pid("w1").unwrap());

    let started = Instant::now();
    let run = op
        .run_for(
            &["drain", "w1", "--mode", "migrate", "--yes", "-o", "json"],
            Duration::from_secs(120),
        )
        .await;
    let took = started.elapsed();
    let lines = run.expect_code(0).json_lines();
    assert_eq!(lines[0]["accepted"], true, "{run}");
    let last = lines.last().unwrap();
    assert_eq!(last["worker"], "w1", "{run}");
    assert_eq!(
        last["complete"], true,
        "the last line is not complete: {run}"
    );
    assert_eq!(last["remaining"], serde_json::json!([]), "{run}");
    let completes = lines.iter().filter(|l| l["complete"] == true).count();
    assert_eq!(completes, 1, "{run}");
    println!(
        "drain --mode migrate of 1 recording: {:.1} s, {} progress lines",
        took.as_secs_f64(),
        lines.len() - 1
    );
    // Complete means w1's slot processes are reaped.
    let left = procs::tagged(&w1_tag);
    assert!(left.is_empty(), "complete, but w1 still runs {left:?}");

    let run = op.run(&["recordings", "-o", "json"]).await;
    let list = run.expect_code(0).json();
    let r = recording(&list, "cli-move");
    assert_eq!(r["worker"], "w2", "{run}");
    assert_eq!(r["state"], "recording", "{run}");
    let run = op.run(&["workers", "-o", "json"]).await;
    let workers = run.expect_code(0).json();
    let w1 = workers
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == "w1")
        .unwrap();
    assert_eq!(w1["state"], "draining", "{run}");
    assert_eq!(w1["recordings"], serde_json::json!([]), "{run}");

    let run = op.run(&["record", "stop", "cli-move"]).await;
    run.expect_code(0);
}

/// `sh -c` text that runs the TUI with `context`, then prints how it ended
/// and whether the terminal is back in cooked mode.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_tui_in_a_terminal_sees_a_recording_and_migrates_it_through_the_dialog() {
    let (mut fleet, _page, op) = fleet_with_a_recording_on_w1("tui-1").await;
    let ctx = write_context(&fleet, "operator");
    let home = fleet.dir().join("console-home");
    let name = format!("tui{}", fleet.addr.port());
    let tmux = Tmux::start(&name, 160, 40, &tui_shell(&op, &ctx, &home));

    let connected = format!("connected to {} as operator/tester", fleet.addr);
    tmux.wait_screen("the connection line", 20, |s| s.contains(&connected))
        .await;

    // The recordings view shows the recording on w1.
    tmux.keys(&[":"]);
    tmux.type_text("rec");
    tmux.keys(&["Enter"]);
    tmux.wait_screen("tui-1 recording on w1", 20, |s| {
        line_with(s, &["tui-1", "recording", "w1"]).is_some()
    })
    .await;

    // Workers: w1 is selected first (sorted by name); drain it in migrate
    // mode through the dialog.
    tmux.keys(&[":"]);
    tmux.type_text("wo");
    tmux.keys(&["Enter"]);
    tmux.wait_screen("w1 and w2 ready", 20, |s| {
        line_with(s, &["w1", "ready"]).is_some() && line_with(s, &["w2", "ready"]).is_some()
    })
    .await;
    tmux.keys(&["d"]);
    tmux.wait_screen("the drain dialog", 10, |s| s.contains("Drain worker w1?"))
        .await;
    tmux.keys(&["Right"]);
    tmux.wait_screen("mode migrate", 10, |s| s.contains("‹ migrate ›"))
        .await;
    tmux.keys(&["Enter"]);
    let screen = tmux
        .wait_screen("w1 draining", 30, |s| {
            line_with(s, &["w1", "draining"]).is_some()
        })
        .await;
    assert!(
        !screen.contains("Drain worker w1?"),
        "the dialog stayed:\n{screen}"
    );

    // The recording moves to w2 (make-before-break): the screen says so.
    tmux.keys(&[":"]);
    tmux.type_text("rec");
    tmux.keys(&["Enter"]);
    tmux.wait_screen("tui-1 recording on w2", 90, |s| {
        line_with(s, &["tui-1", "recording", "w2"]).is_some()
    })
    .await;
    // The coordinator agrees.
    let d = fleet
        .show(&RecordingId::new("tui-1").unwrap())
        .await
        .unwrap();
    assert_eq!(d.info.worker.as_ref().map(|w| w.as_str()), Some("w2"));

    // q quits with 0 and gives the terminal back.
    tmux.keys(&["q"]);
    let screen = tmux
        .wait_screen("the exit marker", 15, |s| s.contains("TTY="))
        .await;
    assert!(
        screen.contains("EXIT=0"),
        "the TUI did not exit 0:\n{screen}"
    );
    assert!(
        screen.contains("TTY=cooked"),
        "the terminal was left in raw mode:\n{screen}"
    );
    assert!(
        !screen.contains("recordings ("),
        "the TUI is still on screen (alternate screen not left):\n{screen}"
    );
    op.run(&["record", "stop", "tui-1"]).await.expect_code(0);
}

/// The 1-minute load average.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".to_string())
}

/// Latencies of one kind of transition, ms.
#[derive(Debug, Default)]
struct Samples {
    /// Worker stamp to the `recfleet watch` line.
    watch: Vec<i64>,
    /// Worker stamp to the TUI screen.
    screen: Vec<i64>,
    /// Transitions with a worker stamp.
    transitions: usize,
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn summary(name: &str, mut v: Vec<i64>) -> String {
    v.sort_unstable();
    format!(
        "{name:<48} n={:<3} median {:>4} ms  p99 {:>4} ms  min {:>4} ms  max {:>4} ms",
        v.len(),
        percentile(&v, 50.0),
        percentile(&v, 99.0),
        v.first().copied().unwrap_or(0),
        v.last().copied().unwrap_or(0),
    )
}

/// Latency from a recording's state change on the worker to the console.
///
/// Starts LATENCY_N (default 15) short recordings one after another on one
/// worker. The worker stamps its reports with its wall clock
/// (`SegmentStarted.at` -> state `starting`, `FirstFrame.at` -> `recording`,
/// `SegmentEnded.ended_at` -> `completed`), which the manifest shows. The console side is `recfleet watch -o json` (stamped when its
/// line is read) and the TUI in tmux (stamped when a poll of the screen,
/// every 20 ms, first shows the row in the new state). One machine, one
/// clock. Run with:
///
/// `cargo nextest run -p recfleet-tests --run-ignored only -E 'test(latency)' --no-capture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement (about 3 minutes), not a check; prints figures"]
async fn browser_latency_from_worker_state_change_to_console() {
    use tokio::io::AsyncBufReadExt;

    let n: usize = std::env::var("LATENCY_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(15);
    let page = DemoServer::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let mut fleet = fleet().await;
    fleet.add_worker(1, 1).unwrap();
    fleet.wait_workers(1, 30).await.unwrap();
    let op = Console::flags(&fleet, "operator");

    // The subscription path: `recfleet watch -o json`, each line stamped.
    let mut watch = op.command(&["watch", "-o", "json"]).spawn().unwrap();
    let stdout = watch.stdout.take().unwrap();
    let (line_tx, mut line_rx) = tokio::sync::mpsc::unbounded_channel::<(u64, String)>();
    tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if line_tx.send((now_ms(), line)).is_err() {
                return;
            }
        }
    });

    // The display path: the TUI on the recordings view, its screen polled.
    let ctx = write_context(&fleet, "operator");
    let home = fleet.dir().join("console-home");
    let name = format!("lat{}", fleet.addr.port());
    let tmux = Tmux::start(&name, 200, 20 + n as u16, &tui_shell(&op, &ctx, &home));
    tmux.wait_screen("the connection line", 20, |s| s.contains("connected to"))
        .await;
    tmux.keys(&[":"]);
    tmux.type_text("rec");
    tmux.keys(&["Enter"]);
    tmux.wait_screen("the recordings view", 10, |s| s.contains("recordings ("))
        .await;
    let stop_poll = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let poller = {
        let stop = stop_poll.clone();
        let target = tmux.target.clone();
        let socket = tmux.socket().to_string();
        std::thread::spawn(move || {
            let mut seen: BTreeMap<(String, String), u64> = BTreeMap::new();
            let mut polls = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let out = std::process::Command::new("tmux")
                    .args(["-L", &socket, "capture-pane", "-p", "-t", &target])
                    .output();
                let at = now_ms();
                polls += 1;
                if let Ok(out) = out {
                    for line in String::from_utf8_lossy(&out.stdout).lines() {
                        let tokens: Vec<&str> = line
                            .split(|c: char| c.is_whitespace() || c == '│')
                            .filter(|t| !t.is_empty())
                            .collect();
                        if let [id, state, ..] = tokens[..] {
                            if id.starts_with("lat-") {
                                seen.entry((id.to_string(), state.to_string()))
                                    .or_insert(at);
                            }
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            (seen, polls)
        })
    };

    let load_before = loadavg();
    let ids: Vec<String> = (0..n).map(|i| format!("lat-{i:02}")).collect();
    let begun = Instant::now();
    // SegmentStarted.at is in the manifest only while the part runs: the
    // final report replaces it with the part's start before bring-up.
    let mut segment_started: BTreeMap<String, u64> = BTreeMap::new();
    for id in &ids {
        record_start(&op, &page.url(&format!("title={id}")), id).await;
        wait_recording_on(&mut fleet, id, "w1").await;
        let live = fleet
            .show(&RecordingId::new(id.as_str()).unwrap())
            .await
            .unwrap();
        if let Some(seg) = live.manifest.segments.first() {
            segment_started.insert(id.clone(), seg.started_at);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        op.run(&["record", "stop", id]).await.expect_code(0);
        let rid = RecordingId::new(id.as_str()).unwrap();
        fleet
            .wait_for(&rid, 60, |d| d.info.state.is_terminal())
            .await
            .unwrap();
    }
    // Let the last display catch up before stopping the poller.
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop_poll.store(true, std::sync::atomic::Ordering::Relaxed);
    let (screen_seen, polls) = poller.join().unwrap();
    let _ = watch.kill().await;
    let mut watch_seen: BTreeMap<(String, String), (u64, u64)> = BTreeMap::new();
    let trace = std::env::var_os("LATENCY_TRACE").is_some();
    while let Ok((at, line)) = line_rx.try_recv() {
        if trace {
            println!("{at} {line}");
        }
        let v: Value = serde_json::from_str(&line).unwrap();
        if v["type"] != "recording_changed" {
            continue;
        }
        let info = &v["event"]["recording_changed"];
        let (Some(id), Some(state)) = (info["id"].as_str(), info["state"].as_str()) else {
            continue;
        };
        let coordinator_at = v["at"].as_u64().unwrap_or(0);
        watch_seen
            .entry((id.to_string(), state.to_string()))
            .or_insert((at, coordinator_at));
    }

    // Worker stamps, from the manifest.
    let mut by_kind: BTreeMap<&str, Samples> = BTreeMap::new();
    let mut hop_worker_coord = Vec::new();
    let mut hop_coord_console = Vec::new();
    for id in &ids {
        let d = fleet
            .show(&RecordingId::new(id.as_str()).unwrap())
            .await
            .unwrap();
        assert_eq!(
            d.info.state,
            RecordingState::Completed,
            "{id}: {:?}",
            d.info
        );
        let seg = &d.manifest.segments[0];
        if trace {
            println!("{id}: {seg:?}");
        }
        let stamps = [
            (
                "starting (SegmentStarted.at)",
                "starting",
                segment_started.get(id).copied(),
            ),
            (
                "recording (FirstFrame.at, media clock)",
                "recording",
                seg.first_frame_at,
            ),
            (
                "completed (SegmentEnded.ended_at)",
                "completed",
                seg.ended_at,
            ),
        ];
        for (kind, state, worker_at) in stamps {
            let Some(worker_at) = worker_at else { continue };
            let key = (id.clone(), state.to_string());
            let entry = by_kind.entry(kind).or_default();
            if let Some((console_at, coord_at)) = watch_seen.get(&key) {
                entry.watch.push(*console_at as i64 - worker_at as i64);
                if state != "recording" {
                    hop_worker_coord.push(*coord_at as i64 - worker_at as i64);
                    hop_coord_console.push(*console_at as i64 - *coord_at as i64);
                }
            }
            if let Some(screen_at) = screen_seen.get(&key) {
                entry.screen.push(*screen_at as i64 - worker_at as i64);
            }
            entry.transitions += 1;
        }
    }
    println!(
        "\nlatency, worker state change -> console: {n} recordings in {:.0} s, {polls} screen polls; \
         load average {load_before} before, {} after; {} cores",
        begun.elapsed().as_secs_f64(),
        loadavg(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    let mut watch_all = Vec::new();
    let mut screen_all = Vec::new();
    for (
        kind,
        Samples {
            watch: watch_ms,
            screen: screen_ms,
            transitions,
        },
    ) in &by_kind
    {
        println!("{kind} ({transitions} transitions):");
        println!(
            "  {}",
            summary("recfleet watch -o json (line read)", watch_ms.clone())
        );
        println!(
            "  {}",
            summary("TUI screen (tmux poll, 20 ms)", screen_ms.clone())
        );
        if !kind.starts_with("recording") {
            watch_all.extend(watch_ms);
            screen_all.extend(screen_ms);
        }
    }
    println!("worker-stamped at send (starting + completed):");
    println!("  {}", summary("recfleet watch -o json", watch_all));
    println!("  {}", summary("TUI screen", screen_all));
    println!(
        "  {}",
        summary("hop: worker -> coordinator event.at", hop_worker_coord)
    );
    println!(
        "  {}",
        summary("hop: coordinator event.at -> watch", hop_coord_console)
    );
    drop(tmux);
}
