//! Taking a part's process group down and fingerprinting its file.

use std::time::Duration;

use nix::sys::signal::Signal;
use recfleet_protocol::now_ms;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use super::event_track::PageDrain;
use super::part::{PartContext, Running};
use super::process::{self, Exit, SlotProcess};

/// Takes the group down: the encoder first and gently (so it finalizes the
/// file), the browser session closed, then SIGTERM to every group, SIGKILL
/// after the grace period, and the tag swept for anything that left its group.
/// Returns the page's last events (drained before the session closes).
pub(super) async fn teardown(
    ctx: &PartContext,
    mut running: Running,
    exits: &mut mpsc::UnboundedReceiver<Exit>,
) -> Option<PageDrain> {
    let mut last_events = None;
    let grace = ctx.timeouts.grace;
    let stopped_encoder = running
        .procs
        .iter()
        .any(|p| p.name == "ffmpeg" && process::is_stopped(p.pid));
    if stopped_encoder {
        // Nothing it holds can be saved; the kill below ends it.
        tracing::warn!(tag = %ctx.tag, "teardown: the encoder is stopped (SIGSTOP): killed without finishing its file");
        running.encoder_stdin = None;
    }
    if let Some(mut stdin) = running.encoder_stdin.take() {
        catch_up(&running).await;
        let _ = stdin.write_all(b"q").await;
        let _ = stdin.flush().await;
        drop(stdin);
        if let Some(enc) = running.procs.iter().find(|p| p.name == "ffmpeg") {
            // "q" is not read while ffmpeg waits on a slow input; SIGINT is
            // handled the same way (finish the file, then exit) at once.
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(enc.pid), Signal::SIGINT);
            wait_for_exit(enc.pid, grace).await;
        }
    }
    tracing::debug!(tag = %ctx.tag, "teardown: encoder done");
    if let Some(pid) = running.capture_pid {
        // The contract: SIGTERM, then the capture finishes its file.
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGTERM);
        wait_for_exit(pid, grace.max(Duration::from_secs(10))).await;
    }
    if let Some((rx, handle)) = running.page.take() {
        drop(rx);
        if let Ok(driver) = handle.await {
            // What the page emitted since the last probe, up to the stop.
            last_events = final_drain(&driver).await;
            quit_driver(driver).await;
        }
    }
    tracing::debug!(tag = %ctx.tag, "teardown: browser session closed");
    kill_group(ctx, running, exits).await;
    last_events
}

/// Closes a browser session, bounded.
pub(super) async fn quit_driver(driver: thirtyfour::WebDriver) {
    // A hung page makes ChromeDriver's quit hang too; a WebDriver
    // dropped before its quit ended then quits synchronously,
    // blocking the thread it is dropped on (thirtyfour). On a
    // runtime thread that starved the worker's link until the
    // coordinator declared it lost. So the quit and that drop run
    // on the blocking pool; killing the group ends them.
    let rt = tokio::runtime::Handle::current();
    let quit = tokio::task::spawn_blocking(move || {
        rt.block_on(async move {
            let _ = tokio::time::timeout(Duration::from_secs(3), driver.quit()).await;
        })
    });
    let _ = tokio::time::timeout(Duration::from_secs(4), quit).await;
}

/// SIGTERM to every process group of the part, SIGKILL after the grace
/// period (at once for stopped ones), the tag swept, and every exit reaped.
pub(super) async fn kill_group(
    ctx: &PartContext,
    mut running: Running,
    exits: &mut mpsc::UnboundedReceiver<Exit>,
) {
    let grace = ctx.timeouts.grace;
    for p in &running.procs {
        p.signal_group(Signal::SIGTERM);
    }
    let all_gone = |procs: &[SlotProcess]| procs.iter().all(|p| !process::is_alive(p.pid));
    // A stopped process never acts on SIGTERM: no use waiting for it.
    let only_stopped_left = |procs: &[SlotProcess]| {
        procs
            .iter()
            .filter(|p| process::is_alive(p.pid))
            .all(|p| process::is_stopped(p.pid))
    };
    let until = tokio::time::Instant::now() + grace;
    while !all_gone(&running.procs)
        && !only_stopped_left(&running.procs)
        && tokio::time::Instant::now() < until
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let left: Vec<&str> = running
        .procs
        .iter()
        .filter(|p| process::is_alive(p.pid))
        .map(|p| p.name)
        .collect();
    if !left.is_empty() {
        tracing::debug!(tag = %ctx.tag, ?left, "teardown: SIGKILL after the grace period");
    }
    for p in &running.procs {
        p.signal_group(Signal::SIGKILL);
    }
    let tag = ctx.tag.clone();
    let _ = tokio::task::spawn_blocking(move || process::kill_tagged(&tag)).await;
    // Drain exit reports so no waiter task is left behind.
    let until = tokio::time::Instant::now() + Duration::from_secs(5);
    while !all_gone(&running.procs) && tokio::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    while exits.try_recv().is_ok() {}
    running.procs.clear();
}

/// An encoder that falls behind (a busy machine) holds captured frames in
/// its input queue, and "q" drops them: the segment would end before the
/// moment it was stopped, and a make-before-break move would leave a gap
/// where both workers were capturing. So the encoder is given until what
/// it has encoded reaches the moment of the stop (at most [`CATCH_UP`]).
async fn catch_up(running: &Running) {
    let Some(enc) = running.procs.iter().find(|p| p.name == "ffmpeg") else {
        return;
    };
    let asked = now_ms();
    let start = tokio::time::Instant::now();
    let last_at = || running.progress.borrow().last_at;
    let behind_ms = || last_at().map_or(0, |last| asked.saturating_sub(last));
    let (mut seen, mut moved_at) = (last_at(), start);
    while process::is_alive(enc.pid) && behind_ms() > 0 {
        let now = tokio::time::Instant::now();
        if last_at() != seen {
            (seen, moved_at) = (last_at(), now);
        }
        // Wait while it makes headway; give up on one that is stuck.
        if now - start >= CATCH_UP || now - moved_at >= CATCH_UP_STALLED {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if behind_ms() > 0 && process::is_alive(enc.pid) {
        tracing::warn!(
            behind_ms = behind_ms(),
            waited_ms = start.elapsed().as_millis() as u64,
            "the encoder did not catch up with the stop: the end of the segment is lost"
        );
    }
}

/// See [`catch_up`]. Long enough for an encoder starved while other slots
/// started (measured: 14 s behind during a two-recording drain on two
/// cores, and still 4 s behind after 20 s when other work shared the
/// machine), bounded so that a stop always ends.
const CATCH_UP: Duration = Duration::from_secs(60);

/// An encoder whose progress has not moved for this long is not catching up.
const CATCH_UP_STALLED: Duration = Duration::from_secs(5);

async fn wait_for_exit(pid: i32, within: Duration) {
    let until = tokio::time::Instant::now() + within;
    while process::is_alive(pid) && tokio::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The page's events not drained yet; a page that does not answer within a
/// second keeps them (it is being torn down).
async fn final_drain(driver: &thirtyfour::WebDriver) -> Option<PageDrain> {
    const DRAIN: &str = "return window.__recfleetTrack ? window.__recfleetTrack.drain() : null;";
    let answer = tokio::time::timeout(Duration::from_secs(1), driver.execute(DRAIN, Vec::new()))
        .await
        .ok()?
        .ok()?;
    answer.convert::<Option<PageDrain>>().ok().flatten()
}
