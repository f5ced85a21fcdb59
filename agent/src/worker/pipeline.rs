//! One part of a placement: bring the slot's process group up, watch it, and
//! take it down. A part ends in a stop (no restart) or a crash (the
//! supervisor restarts the whole group into a new part: one-for-all).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use recfleet_protocol::manifest::SegmentEndReason;
use recfleet_protocol::spec::CaptureMode;
use recfleet_protocol::{now_ms, HealthState, SlotProgress};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{ChildStdin, Command};
use tokio::sync::{mpsc, watch};

use super::browser;
use super::display;
use super::encoder::{self, ProgressParser};
use super::event_track::EventTrack;
use super::external::start_external;
use super::health::PageHealth;
use super::health_watch::HealthWatch;
use super::part::{count_frames, Frames, PageStatus, Running};
pub use super::part::{PartContext, StartError};
use super::process::{Exit, SlotProcess};
use super::rate::FrameRate;
use super::ready::ReadyParts;
use super::teardown::{self, teardown};

/// Things a part tells its supervisor as they happen.
#[derive(Debug, Clone)]
pub enum PartEvent {
    /// The processes are up and the file is open.
    Started {
        /// Wall clock.
        at: u64,
    },
    /// The first frame is encoded.
    FirstFrame {
        /// Wall clock.
        at: u64,
    },
}

/// How a part ended.
#[derive(Debug, Clone)]
pub struct PartResult {
    /// Why.
    pub reason: SegmentEndReason,
    /// True if the group should be restarted into a new part.
    pub crashed: bool,
    /// Wall clock of the start.
    pub started_at: u64,
    /// Wall clock of the end.
    pub ended_at: u64,
    /// First frame, if any.
    pub first_frame_at: Option<u64>,
    /// Last frame, if any.
    pub last_frame_at: Option<u64>,
}

/// Runs one part to its end. `stop` carries a requested stop reason;
/// `deadline` is the wall-clock max-duration end; `shared` is updated for
/// telemetry; `events` gets Started and FirstFrame.
pub async fn run_part(
    ctx: PartContext,
    ready: Option<ReadyParts>,
    mut exits: mpsc::UnboundedReceiver<Exit>,
    stop: &mut watch::Receiver<Option<SegmentEndReason>>,
    deadline: &mut Option<u64>,
    shared: Arc<Mutex<SlotProgress>>,
    events: mpsc::UnboundedSender<PartEvent>,
) -> PartResult {
    let started_at = now_ms();
    let mut procs = Vec::new();
    let mut track = EventTrack::new(&ctx.chunk_dir, ctx.epoch.0, ctx.part);
    let up = tokio::select! {
        r = bring_up(&ctx, ready, &mut procs, &events, started_at) => r,
        _ = stop.changed() => Err(StartError::msg("slot", "stopped while starting")),
    };
    let (reason, crashed, frames) = match up {
        Err(e) => {
            tracing::warn!(process = e.process, error = %e.message, "slot did not start");
            let stopped = stop.borrow().clone();
            let reason = match stopped {
                Some(r) => r,
                None => SegmentEndReason::StartFailed {
                    reason: e.to_string(),
                },
            };
            let crashed = stop.borrow().is_none();
            let running = Running {
                procs,
                encoder_stdin: None,
                capture_pid: None,
                page: None,
                progress: watch::channel(Frames::default()).1,
            };
            if let Some(last) = teardown(&ctx, running, &mut exits).await {
                track.take(last);
            }
            (reason, crashed, Frames::default())
        }
        Ok(mut running) => {
            let (reason, crashed) = monitor(
                &ctx,
                &mut running,
                &mut exits,
                stop,
                deadline,
                &shared,
                &events,
                &mut track,
            )
            .await;
            let frames = *running.progress.borrow();
            if let Some(last) = teardown(&ctx, running, &mut exits).await {
                track.take(last);
            }
            (reason, crashed, frames)
        }
    };
    // Before the part is reported ended: its uploader stores this last chunk.
    if let Err(e) = track.flush() {
        tracing::warn!(error = %e, "the part's last events could not be written");
    }
    let _ = std::fs::remove_dir_all(ctx.dir.join("profile"));
    ctx.append_log(
        "worker",
        &[format!(
            "part {} ended: {}{}",
            ctx.part,
            reason.describe(),
            if crashed { " (the slot restarts)" } else { "" }
        )],
    );
    PartResult {
        reason,
        crashed,
        started_at,
        ended_at: now_ms(),
        first_frame_at: frames.first_at,
        last_frame_at: frames.last_at,
    }
}

/// Starts display and sink, then the browser and its page, then the
/// encoder: the first frame of every segment shows the loaded page, never
/// the empty screen before it (which cost about 1.8 s of black at every
/// segment start when both started together). A ready slot has all but the
/// page and the encoder up already. Every process started is pushed on
/// `procs` at once so that a failure half-way still tears everything down.
async fn bring_up(
    ctx: &PartContext,
    ready: Option<ReadyParts>,
    procs: &mut Vec<SlotProcess>,
    events: &mpsc::UnboundedSender<PartEvent>,
    started_at: u64,
) -> Result<Running, StartError> {
    std::fs::create_dir_all(&ctx.dir).map_err(|e| StartError::new("slot", e))?;
    std::fs::create_dir_all(&ctx.chunk_dir).map_err(|e| {
        StartError::new(
            "slot",
            format!("chunk directory {}: {e}", ctx.chunk_dir.display()),
        )
    })?;
    if let Some(ready) = ready {
        procs.extend(ready.procs.iter().cloned());
        let driver = browser::load_page(ctx, ready.driver).await?;
        let (server, monitor) = match &ready.audio {
            Some(a) => (Some(a.server.as_str()), a.monitor.as_str()),
            None => (None, ""),
        };
        return start_capture(
            ctx,
            driver,
            &ready.display,
            server,
            monitor,
            procs,
            events,
            started_at,
        )
        .await;
    }
    let (display, audio) = display::start_display_and_sound(ctx, procs).await?;
    let (server, sink, monitor) = match &audio {
        Some(a) => (
            Some(a.server.clone()),
            Some(a.sink.clone()),
            a.monitor.clone(),
        ),
        None => (None, None, String::new()),
    };
    let (progress_tx, progress_rx) = watch::channel(Frames::default());
    match &ctx.spec.capture {
        CaptureMode::Builtin => {
            let (drv_proc, port) =
                browser::start_chromedriver(ctx, &display, server.as_deref(), sink.as_deref())
                    .await?;
            procs.push(drv_proc);
            let driver = browser::open_page(ctx, port).await?;
            start_capture(
                ctx,
                driver,
                &display,
                server.as_deref(),
                &monitor,
                procs,
                events,
                started_at,
            )
            .await
        }
        CaptureMode::External { command } => {
            let pid = start_external(ctx, command, &display, audio.as_ref(), progress_tx).await?;
            let _ = events.send(PartEvent::Started { at: started_at });
            procs.push(SlotProcess {
                name: "capture",
                pid,
            });
            Ok(Running {
                procs: std::mem::take(procs),
                encoder_stdin: None,
                capture_pid: Some(pid),
                page: None,
                progress: progress_rx,
            })
        }
    }
}

/// With the page loaded: the encoder, then the page watcher.
#[allow(clippy::too_many_arguments)]
async fn start_capture(
    ctx: &PartContext,
    driver: thirtyfour::WebDriver,
    display: &str,
    server: Option<&str>,
    monitor: &str,
    procs: &mut Vec<SlotProcess>,
    events: &mpsc::UnboundedSender<PartEvent>,
    started_at: u64,
) -> Result<Running, StartError> {
    let (progress_tx, progress_rx) = watch::channel(Frames::default());
    let enc = start_encoder(ctx, display, server, monitor, progress_tx).await;
    if let Ok((p, _)) = &enc {
        procs.push(p.clone());
    }
    let (_, stdin) = match enc {
        Ok(e) => e,
        Err(e) => {
            teardown::quit_driver(driver).await;
            return Err(e);
        }
    };
    // The processes are up and the chunks are being written: the part has
    // started. Same `at` as the final report's start.
    let _ = events.send(PartEvent::Started { at: started_at });
    tracing::debug!(
        part = ctx.part,
        up_after_ms = now_ms().saturating_sub(started_at),
        "the part is up: page loaded, encoder started"
    );
    ctx.append_log(
        "worker",
        &[format!(
            "part {} started: {} on display {display}",
            ctx.part, ctx.spec.url
        )],
    );
    let page = browser::spawn_page_watch(
        driver,
        ctx.spec.stop.page_signal.clone(),
        browser::track_install(&ctx.spec),
        ctx.timeouts.page_check,
        ctx.timeouts.page_answer,
    );
    Ok(Running {
        procs: std::mem::take(procs),
        encoder_stdin: stdin,
        capture_pid: None,
        page: Some(page),
        progress: progress_rx,
    })
}

async fn start_encoder(
    ctx: &PartContext,
    display: &str,
    pulse_server: Option<&str>,
    monitor: &str,
    progress: watch::Sender<Frames>,
) -> Result<(SlotProcess, Option<ChildStdin>), StartError> {
    let mut cmd = Command::new(&ctx.bins.ffmpeg);
    // The analysis and thumbnail files are named relative to the part's
    // directory (see `encoder`).
    cmd.current_dir(&ctx.dir);
    cmd.args(encoder::ffmpeg_args(
        &ctx.spec,
        display,
        monitor,
        &ctx.chunk_dir,
    ));
    if let Some(server) = pulse_server {
        cmd.env("PULSE_SERVER", server);
    }
    let spawned = ctx
        .spawn("ffmpeg", cmd, "ffmpeg", true, true)
        .map_err(|e| StartError::new("ffmpeg", e))?;
    if let Some(stdout) = spawned.stdout {
        let log = ctx.log("ffmpeg");
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            let mut parser = ProgressParser::default();
            let mut rate = FrameRate::default();
            let began = std::time::Instant::now();
            let mut anchor = None;
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(p) = parser.line(&line) {
                    if anchor.is_none() && p.frames > 0 {
                        anchor = std::fs::read_to_string(&log)
                            .ok()
                            .and_then(|text| encoder::first_frame_at(&text));
                    }
                    let r = rate.push(began.elapsed().as_millis() as u64, p.frames, p.dup_frames);
                    progress.send_modify(|f| count_frames(f, p.frames, r, p.out_time_ms, anchor));
                }
            }
        });
    }
    Ok((spawned.process, spawned.stdin))
}

/// Watches the running part until a stop or a crash.
#[allow(clippy::too_many_arguments)]
async fn monitor(
    ctx: &PartContext,
    running: &mut Running,
    exits: &mut mpsc::UnboundedReceiver<Exit>,
    stop: &mut watch::Receiver<Option<SegmentEndReason>>,
    deadline: &mut Option<u64>,
    shared: &Arc<Mutex<SlotProgress>>,
    events: &mpsc::UnboundedSender<PartEvent>,
    track: &mut EventTrack,
) -> (SegmentEndReason, bool) {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut last_growth = tokio::time::Instant::now();
    let mut last_frames = 0u64;
    let mut last_size = 0u64;
    let mut first_frame_told = false;
    let mut page_silent_since: Option<tokio::time::Instant> = None;
    let mut empty_since: Option<tokio::time::Instant> = None;
    let mut watch = HealthWatch::new(ctx);
    loop {
        // The max duration counts from the recording's first frame; the
        // deadline is set then and carried over to later parts.
        let deadline_sleep = async {
            match *deadline {
                Some(d) => {
                    tokio::time::sleep(Duration::from_millis(d.saturating_sub(now_ms()))).await
                }
                None => std::future::pending().await,
            }
        };
        let page_status = async {
            match running.page.as_mut() {
                Some((rx, _)) => rx.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            Some(exit) = exits.recv() => {
                return (SegmentEndReason::ChildExited { process: exit.name.to_string(), status: exit.status }, true);
            }
            _ = stop.changed() => {
                let reason = stop.borrow().clone().unwrap_or(SegmentEndReason::Stopped);
                return (reason, false);
            }
            _ = deadline_sleep => return (SegmentEndReason::MaxDuration, false),
            Some(status) = page_status => match status {
                PageStatus::BrowserGone(why) => {
                    watch.page(ctx, shared, PageHealth::Crashed { at: now_ms(), what: format!("the browser is gone: {why}") });
                    return (SegmentEndReason::ChildExited { process: "chromium".into(), status: why }, true);
                }
                PageStatus::Crashed(why) => {
                    let what = format!("the page crashed: {why}");
                    track.worker_event("browser.crashed", serde_json::json!({ "what": what }));
                    watch.page(ctx, shared, PageHealth::Crashed { at: now_ms(), what: what.clone() });
                    if ctx.spec.health.resolve().restart_crashed {
                        return (SegmentEndReason::Unhealthy { state: HealthState::PageCrashed, what }, true);
                    }
                }
                PageStatus::NoAnswer(why) => {
                    let first = page_silent_since.is_none();
                    let since = *page_silent_since.get_or_insert_with(tokio::time::Instant::now);
                    if first {
                        watch.page(ctx, shared, PageHealth::Unanswered { since: now_ms() });
                    }
                    if since.elapsed() >= ctx.timeouts.stall {
                        return (SegmentEndReason::Stalled { what: format!("the page did not answer for {} s ({why})", ctx.timeouts.stall.as_secs()) }, true);
                    }
                }
                PageStatus::Alive { ended, participants, location, console, track: drained } => {
                    page_silent_since = None;
                    ctx.append_log("page", &console);
                    // No room: no live remote WebRTC media, or the page's
                    // own participant count says so.
                    let empty = participants.map_or(drained.remote_media == 0, |n| n == 0);
                    track.take(drained);
                    report_blocked(ctx, track);
                    if let Err(e) = track.flush() {
                        tracing::warn!(error = %e, "events could not be written; they are dropped");
                    }
                    let page = match location.problem(&ctx.spec.url) {
                        Some(what) => {
                            // An error page the policy caused says so.
                            let what = match (location.error_page, ctx.egress.blocked_reason()) {
                                (true, Some(why)) => format!("{what}: {why}"),
                                _ => what,
                            };
                            PageHealth::Wrong { since: watch.wrong_since(now_ms()), what }
                        }
                        None => PageHealth::Fine,
                    };
                    watch.page(ctx, shared, page);
                    if ended || track.stop_asked {
                        return (SegmentEndReason::PageEnded, false);
                    }
                    match (empty, ctx.spec.stop.empty_room_timeout_secs) {
                        (true, Some(limit)) => {
                            let since = *empty_since.get_or_insert_with(tokio::time::Instant::now);
                            if since.elapsed() >= Duration::from_secs(u64::from(limit)) {
                                return (SegmentEndReason::EmptyRoom, false);
                            }
                        }
                        _ => empty_since = None,
                    }
                }
            },
            _ = tick.tick() => {
                let f = *running.progress.borrow();
                let size = ctx.bytes();
                if f.frames > last_frames || size > last_size {
                    last_growth = tokio::time::Instant::now();
                }
                if f.frames > last_frames && !first_frame_told && f.first_at.is_some() {
                    first_frame_told = true;
                    let at = f.first_at.unwrap_or_else(now_ms);
                    if let (None, Some(max)) = (*deadline, ctx.spec.stop.max_duration_secs) {
                        *deadline = Some(at + u64::from(max) * 1000);
                    }
                    let _ = events.send(PartEvent::FirstFrame { at });
                }
                last_frames = f.frames;
                last_size = size;
                if let Ok(mut s) = shared.lock() {
                    s.frames = f.frames;
                    s.fps_milli = f.fps_milli;
                    s.repeated_permille = f.repeated_permille;
                    s.media_ms = f.media_ms;
                    s.last_frame_at = f.last_at;
                    s.part = ctx.part;
                    s.bytes = size;
                }
                if let Some(what) = watch.tick(ctx, shared, f.first_at) {
                    return what;
                }
                if last_growth.elapsed() >= ctx.timeouts.stall {
                    let what = if f.frames == 0 { "no frame was encoded" } else { "the encoder and the output file made no progress" };
                    return (SegmentEndReason::Stalled { what: format!("{what} for {} s", ctx.timeouts.stall.as_secs()) }, true);
                }
            }
        }
    }
}

/// The page's requests the egress policy refused since the last probe:
/// each one a `browser.blocked` event and a line of the page's log.
fn report_blocked(ctx: &PartContext, track: &mut EventTrack) {
    let (blocked, more) = ctx.egress.log.take_unread();
    let mut lines = Vec::with_capacity(blocked.len() + 1);
    for b in blocked {
        lines.push(format!(
            "blocked by the egress policy: {}: {}",
            b.target, b.why
        ));
        track.worker_event(
            "browser.blocked",
            serde_json::json!({ "target": b.target, "why": b.why }),
        );
    }
    if more > 0 {
        lines.push(format!("{more} more requests blocked by the egress policy"));
        track.worker_event("browser.blocked", serde_json::json!({ "more": more }));
    }
    if !lines.is_empty() {
        ctx.append_log("page", &lines);
    }
}
