//! Media health of a real recording, told from the capture: a page that is
//! silent, then still, then loses its renderer. And what an operator asks
//! of a live recording through the console: its encoder's log followed,
//! its thumbnail, `describe` with its processes and events.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use recfleet_agent::demo::DemoServer;
use recfleet_protocol::manifest::SegmentEndReason;
use recfleet_protocol::spec::{RecordingSpec, Viewport};
use recfleet_protocol::{ConsoleRequest, HealthRequest, HealthState, RecordingId};
use recfleet_testkit::procs::{descendants, tagged};
use recfleet_testkit::TestFleet;
use recfleet_tests::console::{tui_shell, write_context, Console, Tmux};
use recfleet_tests::recordings::stop_and_complete;
use tokio::io::{AsyncBufReadExt, BufReader};

fn ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

/// Waits up to `secs` for a `health_changed` event of `state`; returns when
/// it arrived (wall ms) and the health's `since`.
async fn wait_health(
    watch: &recfleet_testkit::watch::Watch,
    id: &RecordingId,
    state: HealthState,
    secs: u64,
) -> (u64, u64) {
    let until = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let found = watch.with(|seen| {
            seen.health
                .iter()
                .find(|(_, r, h)| r == id && h.state == state)
                .map(|(at, _, h)| (ms(*at), h.since))
        });
        if let Some(f) = found {
            return f;
        }
        let told: Vec<String> = watch.with(|s| {
            s.health
                .iter()
                .map(|(_, _, h)| h.state.to_string())
                .collect()
        });
        assert!(
            tokio::time::Instant::now() < until,
            "no {state} within {secs} s; health told so far: {told:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Pids of the slot's Chromium renderers (they rewrite their environment
/// with their title, so they are found as descendants of tagged processes).
fn renderers() -> Vec<i32> {
    tagged("")
        .into_iter()
        .flat_map(|(pid, _)| descendants(pid))
        .filter(|pid| {
            // One string with spaces: Chromium's children set their title.
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| {
                    String::from_utf8_lossy(&c)
                        .replace('\0', " ")
                        .split_whitespace()
                        .any(|a| a == "--type=renderer")
                })
                .unwrap_or(false)
        })
        .collect::<std::collections::BTreeSet<i32>>()
        .into_iter()
        .collect()
}

/// A one-worker fleet, a viewer's event watch, and a 640x360 10 fps
/// recording `id` of `url` with the `health` policy, once its first frame
/// is captured (its wall clock is returned).
async fn record_with_health(
    id: &RecordingId,
    url: String,
    health: HealthRequest,
) -> (TestFleet, recfleet_testkit::watch::Watch, u64) {
    let mut fleet = TestFleet::start().await.unwrap();
    fleet.add_worker(1, 1).unwrap();
    fleet.wait_workers(1, 30).await.unwrap();
    let watch = fleet.watch("viewer").await.unwrap();
    let mut spec = RecordingSpec::new(id.clone(), url);
    spec.viewport = Viewport {
        width: 640,
        height: 360,
    };
    spec.fps = 10;
    spec.stop.max_duration_secs = Some(600);
    spec.health = Box::new(health);
    fleet
        .request(ConsoleRequest::StartRecording(spec))
        .await
        .unwrap();
    let d = fleet
        .wait_for(id, 60, |d| d.info.started_at.is_some())
        .await
        .unwrap();
    let first_frame = d.info.started_at.unwrap();
    (fleet, watch, first_frame)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_silence_then_a_still_picture_then_a_crash_are_told_in_order_and_only_the_crash_restarts(
) {
    let page = DemoServer::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let id = RecordingId::new("health").unwrap();
    // Silence is told after 1 s of it (the telling itself takes about 2 s
    // more: half-second sound blocks, PulseAudio opening after the first
    // frame, the worker's 1 s telemetry).
    let health = HealthRequest {
        silent_secs: Some(1),
        frozen_secs: Some(2),
        // Still pictures are only reported here: the crash is what restarts
        // (the coordinator's default restarts after 30 s).
        restart_frozen_secs: Some(0),
        ..HealthRequest::default()
    };
    let (mut fleet, watch, first_frame) =
        record_with_health(&id, page.health_url("silent=10&frozen=10"), health).await;

    // 1. Silent from its first frame: told within 5 s of it.
    let (silent_at, _) = wait_health(&watch, &id, HealthState::Silent, 20).await;
    eprintln!(
        "silent told {} ms after the first frame",
        silent_at - first_frame
    );
    assert!(
        silent_at <= first_frame + 5_000,
        "silent told {} ms after the first frame",
        silent_at - first_frame
    );

    // 2. Still from the page's 10th second (its clock starts a little
    // before the first frame): told within 5 s of that.
    let (frozen_at, frozen_since) = wait_health(&watch, &id, HealthState::Frozen, 30).await;
    eprintln!(
        "frozen told {} ms after the first frame (since {} ms after it)",
        frozen_at - first_frame,
        frozen_since as i64 - first_frame as i64
    );
    assert!(
        frozen_at <= first_frame + 10_000 + 5_000,
        "frozen told {} ms after the first frame",
        frozen_at - first_frame
    );
    assert!(
        frozen_since + 3_000 >= first_frame + 10_000 && frozen_since <= first_frame + 11_000,
        "frozen since {} ms after the first frame, expected about 10 s",
        frozen_since as i64 - first_frame as i64
    );
    // The silence did not restart anything.
    let d = fleet.show(&id).await.unwrap();
    assert_eq!(d.info.restarts, 0, "{:?}", d.info);
    assert_eq!(d.manifest.segments.len(), 1, "{:?}", d.manifest.segments);
    assert_eq!(d.info.health.state, HealthState::Frozen, "{:?}", d.info);

    // An operator looks at the live recording: the encoder's log followed,
    // its thumbnail, describe.
    let console = Console::flags(&fleet, "viewer");
    let mut follow = console
        .command(&[
            "logs",
            id.as_str(),
            "--process",
            "ffmpeg",
            "--follow",
            "--tail",
            "1",
        ])
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(follow.stdout.take().unwrap()).lines();
    let mut got = Vec::new();
    let until = tokio::time::Instant::now() + Duration::from_secs(15);
    while got.len() < 4 && tokio::time::Instant::now() < until {
        match tokio::time::timeout_at(until, lines.next_line()).await {
            Ok(Ok(Some(l))) => got.push(l),
            _ => break,
        }
    }
    // The first line is the tail; the others were written while following
    // (the chunk muxer opens a file every 2 s).
    assert!(got.len() >= 4, "followed lines: {got:?}");
    assert!(got.iter().all(|l| l.starts_with("[ffmpeg p0] ")), "{got:?}");
    assert!(
        got.iter().skip(1).any(|l| l.contains(".m4s")),
        "no chunk opened while following: {got:?}"
    );
    let _ = follow.kill().await;

    // The page's console messages are a log too, from its first script on
    // (the hook runs before the page's scripts).
    let run = console
        .run(&["logs", id.as_str(), "--process", "page"])
        .await;
    assert!(
        run.expect_code(0).stdout.contains("[page p0]")
            && run.stdout.contains("still picture with sound"),
        "{run}"
    );

    let jpeg = fleet.dir().join("thumb.jpg");
    let run = console
        .run(&[
            "record",
            "thumbnail",
            id.as_str(),
            "-f",
            jpeg.to_str().unwrap(),
        ])
        .await;
    run.expect_code(0);
    let bytes = std::fs::read(&jpeg).unwrap();
    assert!(
        bytes.len() > 1_000 && bytes.starts_with(&[0xff, 0xd8]),
        "not a picture: {} bytes",
        bytes.len()
    );
    let run = console.run(&["describe", "recording", id.as_str()]).await;
    run.expect_code(0);
    for want in [
        "Health:",
        "frozen",
        "ffmpeg",
        "chromium (renderer)",
        "health_changed",
    ] {
        assert!(
            run.stdout.contains(want),
            "describe lacks {want}:\n{}",
            run.stdout
        );
    }

    // The same in the TUI: the live picture and meter, describe, logs.
    let ctx = write_context(&fleet, "viewer");
    let home = fleet.dir().join("console-home");
    let tmux = Tmux::start(
        &format!("health{}", fleet.addr.port()),
        160,
        44,
        &tui_shell(&console, &ctx, &home),
    );
    tmux.wait_screen("the connection line", 20, |s| s.contains("connected to"))
        .await;
    tmux.keys(&[":"]);
    tmux.type_text("rec");
    tmux.keys(&["Enter"]);
    tmux.wait_screen("the recording, frozen", 20, |s| {
        s.lines()
            .any(|l| l.contains("health") && l.contains("frozen"))
    })
    .await;
    tmux.keys(&["Enter"]);
    tmux.wait_screen("the picture and the meter", 20, |s| {
        s.matches('▀').count() > 100 && s.contains("dBFS")
    })
    .await;
    // Below them, the recording's latest events (its page loaded: a
    // navigation at least), read from the store.
    tmux.wait_screen("the latest events", 20, |s| {
        s.contains("latest events") && s.contains("browser.navigation")
    })
    .await;
    tmux.keys(&["d"]);
    tmux.wait_screen("describe with processes", 20, |s| {
        s.contains("describe health") && s.contains("ffmpeg") && s.contains("health_changed")
    })
    .await;
    tmux.keys(&["Escape"]);
    tmux.keys(&["l"]);
    tmux.wait_screen("logs of the processes", 20, |s| {
        s.contains("logs health") && s.contains("[ffmpeg p0]")
    })
    .await;
    tmux.keys(&["Escape"]);
    tmux.keys(&["q"]);
    tmux.wait_screen("the TUI quit cleanly", 10, |s| s.contains("EXIT=0"))
        .await;

    // 3. The renderer dies: page_crashed within 5 s, and a new part.
    let killed = renderers();
    assert!(!killed.is_empty(), "no renderer found");
    let kill_at = ms(SystemTime::now());
    for pid in &killed {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(*pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let (crashed_at, _) = wait_health(&watch, &id, HealthState::PageCrashed, 20).await;
    eprintln!(
        "page_crashed told {} ms after the kill",
        crashed_at - kill_at
    );
    assert!(
        crashed_at <= kill_at + 5_000,
        "page_crashed told {} ms after the kill",
        crashed_at - kill_at
    );
    let d = fleet
        .wait_for(&id, 60, |d| d.manifest.segments.len() >= 2)
        .await
        .unwrap();
    match &d.manifest.segments[0].end_reason {
        Some(SegmentEndReason::Unhealthy { state, .. }) => {
            assert_eq!(*state, HealthState::PageCrashed)
        }
        other => panic!("part 0 ended {other:?}"),
    }
    assert_eq!(d.manifest.segments[1].part, 1);

    // In order: silent, then frozen, then page_crashed (ok may come between).
    let order: Vec<HealthState> = watch.with(|s| {
        s.health
            .iter()
            .filter(|(_, r, _)| r == &id)
            .map(|(_, _, h)| h.state)
            .filter(|s| *s != HealthState::Ok)
            .collect()
    });
    let pos = |s| order.iter().position(|x| *x == s).unwrap();
    assert!(
        pos(HealthState::Silent) < pos(HealthState::Frozen)
            && pos(HealthState::Frozen) < pos(HealthState::PageCrashed),
        "{order:?}"
    );

    stop_and_complete(&mut fleet, &id).await;
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_a_black_picture_a_page_gone_elsewhere_and_a_hung_page_are_told_in_order() {
    let page = DemoServer::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    // Black for 6 s, then to another site (localhost is not 127.0.0.1's
    // origin), whose script stops returning after 3 s.
    let elsewhere = format!("http://localhost:{}/health.html?hang=3", page.addr().port());
    let encoded: String = elsewhere
        .chars()
        .map(|c| match c {
            ':' => "%3A".to_string(),
            '/' => "%2F".to_string(),
            '?' => "%3F".to_string(),
            '=' => "%3D".to_string(),
            c => c.to_string(),
        })
        .collect();
    let id = RecordingId::new("black-elsewhere-hung").unwrap();
    let health = HealthRequest {
        black_secs: Some(2),
        // Neither silence nor stillness is the point here.
        silent_secs: Some(600),
        frozen_secs: Some(600),
        restart_frozen_secs: Some(0),
        restart_black_secs: Some(0),
        ..HealthRequest::default()
    };
    let (mut fleet, watch, first_frame) = record_with_health(
        &id,
        page.health_url(&format!("black=6&goto={encoded}")),
        health,
    )
    .await;

    let (black_at, _) = wait_health(&watch, &id, HealthState::Black, 20).await;
    eprintln!(
        "black told {} ms after the first frame",
        black_at - first_frame
    );
    assert!(
        black_at <= first_frame + 5_000,
        "{}",
        black_at - first_frame
    );
    let (wrong_at, _) = wait_health(&watch, &id, HealthState::WrongPage, 30).await;
    eprintln!(
        "wrong_page told {} ms after the first frame",
        wrong_at - first_frame
    );
    let (hung_at, _) = wait_health(&watch, &id, HealthState::Unresponsive, 40).await;
    eprintln!(
        "unresponsive told {} ms after the first frame",
        hung_at - first_frame
    );
    assert!(black_at < wrong_at && wrong_at < hung_at);
    // The hung page is restarted by the stall rule (10 s without an
    // answer): a new part, on the page asked for.
    let d = fleet
        .wait_for(&id, 60, |d| d.manifest.segments.len() >= 2)
        .await
        .unwrap();
    match &d.manifest.segments[0].end_reason {
        Some(SegmentEndReason::Stalled { what }) => {
            assert!(what.contains("the page did not answer"), "{what}")
        }
        other => panic!("part 0 ended {other:?}"),
    }
    stop_and_complete(&mut fleet, &id).await;
    fleet.shutdown().await;
}
