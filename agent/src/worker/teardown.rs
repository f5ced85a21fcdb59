//! Taking a part's process group down and fingerprinting its file.

use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use super::part::{PartContext, Running};
use super::process::{self, Exit, SlotProcess};

/// Takes the group down: the encoder first and gently (so it finalizes the
/// file), the browser session closed, then SIGTERM to every group, SIGKILL
/// after the grace period, and the tag swept for anything that left its group.
pub(super) async fn teardown(
    ctx: &PartContext,
    mut running: Running,
    exits: &mut mpsc::UnboundedReceiver<Exit>,
) {
    let grace = ctx.timeouts.grace;
    if let Some(mut stdin) = running.encoder_stdin.take() {
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
            let _ = tokio::time::timeout(Duration::from_secs(3), driver.quit()).await;
        }
    }
    tracing::debug!(tag = %ctx.tag, "teardown: browser session closed");
    for p in &running.procs {
        p.signal_group(Signal::SIGTERM);
    }
    let all_gone = |procs: &[SlotProcess]| procs.iter().all(|p| !process::is_alive(p.pid));
    let until = tokio::time::Instant::now() + grace;
    while !all_gone(&running.procs) && tokio::time::Instant::now() < until {
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

async fn wait_for_exit(pid: i32, within: Duration) {
    let until = tokio::time::Instant::now() + within;
    while process::is_alive(pid) && tokio::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
