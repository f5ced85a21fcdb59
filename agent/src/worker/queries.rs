//! Answers the coordinator's queries about a running recording, each on a
//! stream the coordinator opens: the latest thumbnail, the processes with
//! their CPU and memory, and the logs of the slot's parts (followed as
//! they grow). Everything is read from the slot's runtime directory and
//! /proc; nothing here touches the recording itself.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use quinn::{Connection, RecvStream, SendStream};
use recfleet_protocol::quic;
use recfleet_protocol::{
    now_ms, ErrorCode, LogLine, LogRequest, ProcessInfo, QueryFrame, RecordingId, Thumbnail,
    WireError, WorkerQuery, LOG_LINES_PER_FRAME, LOG_LINE_MAX, LOG_PROCESSES,
};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::engine::{Engine, SlotView};
use super::health::THUMBNAIL_FILE;
use super::tail::FileTail;
use super::{process, usage};

/// Queries served at once; more wait for QUIC to let them open.
pub const CONCURRENT: u32 = 8;
/// How long the coordinator may take to send the query.
const FIRST_FRAME: Duration = Duration::from_secs(5);
/// How long a frame may take to write (a console that stopped reading).
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a followed log looks for new lines.
const FOLLOW_EVERY: Duration = Duration::from_millis(250);
/// The most bytes of one log sent as its history (its end), and read from
/// it at once while following: a query holds at most a few MiB.
const HISTORY_MAX: u64 = 1024 * 1024;

/// Serves the queries the coordinator opens on `conn` until it closes.
pub async fn serve(conn: Connection, engine: Arc<Engine>, shutdown: CancellationToken) {
    let permits = Arc::new(Semaphore::new(CONCURRENT as usize));
    loop {
        let (send, recv) = tokio::select! {
            s = conn.accept_bi() => match s {
                Ok(s) => s,
                Err(_) => return,
            },
            _ = shutdown.cancelled() => return,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            // QUIC's own stream limit keeps this rare; say it rather than queue.
            let mut send = send;
            let busy = QueryFrame::Error(WireError::new(
                ErrorCode::Unavailable,
                "the worker answers too many queries at once; retry",
            ));
            let _ = quic::write_frame(&mut send, &busy).await;
            let _ = send.finish();
            continue;
        };
        let (engine, shutdown) = (engine.clone(), shutdown.clone());
        tokio::spawn(async move {
            answer(&engine, send, recv, &shutdown).await;
            drop(permit);
        });
    }
}

async fn answer(
    engine: &Engine,
    mut send: SendStream,
    mut recv: RecvStream,
    shutdown: &CancellationToken,
) {
    let query =
        match tokio::time::timeout(FIRST_FRAME, quic::read_frame::<WorkerQuery>(&mut recv)).await {
            Ok(Ok(Some(q))) => q,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "bad query from the coordinator");
                return;
            }
            _ => return,
        };
    let id = query.recording().clone();
    let Some(slot) = engine.slot_view(&id) else {
        let e = WireError::new(
            ErrorCode::NotFound,
            format!("recording {id} does not run on this worker"),
        );
        let _ = write(&mut send, &QueryFrame::Error(e)).await;
        let _ = send.finish();
        return;
    };
    let result = match query {
        WorkerQuery::Thumbnail { recording } => match thumbnail(&recording, &slot) {
            Ok(t) => write(&mut send, &QueryFrame::Thumbnail(t)).await,
            Err(e) => write(&mut send, &QueryFrame::Error(e)).await,
        },
        WorkerQuery::Processes { .. } => {
            let procs = processes(&slot.tag).await;
            write(&mut send, &QueryFrame::Processes(procs)).await
        }
        WorkerQuery::Logs(req) => logs(engine, &slot, &req, &mut send, shutdown).await,
    };
    if result.is_ok() {
        let _ = send.finish();
    }
}

async fn write(send: &mut SendStream, frame: &QueryFrame) -> Result<(), ()> {
    match tokio::time::timeout(WRITE_TIMEOUT, quic::write_frame(send, frame)).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}

/// The part directories of a slot, oldest first.
fn part_dirs(slot: &SlotView) -> Vec<(u32, PathBuf)> {
    let mut parts: Vec<(u32, PathBuf)> = std::fs::read_dir(&slot.dir)
        .map(|d| {
            d.flatten()
                .filter_map(|e| {
                    let name = e.file_name();
                    let n = name.to_str()?.strip_prefix('p')?.parse::<u32>().ok()?;
                    Some((n, e.path()))
                })
                .collect()
        })
        .unwrap_or_default();
    parts.sort();
    parts
}

fn thumbnail(id: &RecordingId, slot: &SlotView) -> Result<Thumbnail, WireError> {
    // The current part's picture, or the last part's while a new one starts.
    for (_, dir) in part_dirs(slot).into_iter().rev() {
        let path = dir.join(THUMBNAIL_FILE);
        if let Ok(jpeg) = std::fs::read(&path) {
            let taken_at = std::fs::metadata(&path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_millis() as u64);
            return Ok(Thumbnail {
                recording: id.clone(),
                taken_at,
                jpeg,
                level_db: slot.progress.level_db,
                health: slot.progress.health.clone(),
            });
        }
    }
    Err(WireError::new(
        ErrorCode::NotFound,
        format!("recording {id} has no picture yet (the first comes 2 s after its first frame; an external capture makes none)"),
    ))
}

/// The slot's processes, their CPU measured over 200 ms.
async fn processes(tag: &str) -> Vec<ProcessInfo> {
    let pids = process::with_descendants(&process::tagged_pids(tag));
    let before: Vec<_> = pids.iter().map(|p| usage::sample(*p)).collect();
    let t0 = std::time::Instant::now();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let secs = t0.elapsed().as_secs_f64().max(0.001);
    let mut out: Vec<ProcessInfo> = pids
        .iter()
        .zip(before)
        .filter_map(|(pid, before)| {
            let (ticks, rss) = usage::sample(*pid)?;
            let cpu = before.map_or(0, |(b, _)| {
                (ticks.saturating_sub(b) as f64 / usage::TICKS_PER_SEC as f64 / secs * 1000.0)
                    as u32
            });
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .unwrap_or_default()
                .trim()
                .to_string();
            Some(ProcessInfo {
                name: role(*pid, &comm),
                pid: *pid,
                comm,
                cpu_millicores: cpu,
                rss_bytes: rss,
            })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name).then(a.pid.cmp(&b.pid)));
    out
}

/// What a process is in the slot, from its command line.
fn role(pid: i32, comm: &str) -> String {
    // Chromium's children rewrite their command line as one string with
    // spaces (their title), others keep NUL-separated arguments.
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    let kind = cmdline
        .split_whitespace()
        .find_map(|a| a.strip_prefix("--type="))
        .map(str::to_string);
    let c = comm.to_ascii_lowercase();
    let base = if c.starts_with("xvfb") {
        "xvfb"
    } else if c.starts_with("pulseaudio") {
        "pulseaudio"
    } else if c.starts_with("chromedriver") {
        "chromedriver"
    } else if c.starts_with("ffmpeg") {
        "ffmpeg"
    } else if c.contains("chrom") {
        "chromium"
    } else {
        return comm.to_string();
    };
    match kind {
        Some(k) if base == "chromium" => format!("chromium ({k})"),
        _ => base.to_string(),
    }
}

/// The log files of a part for a process filter.
fn log_files(dir: &Path, process: Option<&str>) -> Vec<(String, PathBuf)> {
    LOG_PROCESSES
        .iter()
        .filter(|p| process.is_none_or(|want| want == **p))
        .map(|p| (p.to_string(), dir.join(format!("{p}.log"))))
        .collect()
}

/// The time a line states of itself: our own logs start with an RFC 3339
/// stamp, ChromeDriver's with `[<unix secs>.<ms>]`.
fn line_time(line: &str) -> Option<u64> {
    if let Some(first) = line.split_whitespace().next() {
        if let Ok(t) = humantime::parse_rfc3339_weak(first.trim_end_matches('Z')) {
            return t
                .duration_since(std::time::UNIX_EPOCH)
                .ok()
                .map(|d| d.as_millis() as u64);
        }
    }
    let inner = line.strip_prefix('[')?.split(']').next()?;
    let secs: f64 = inner.parse().ok()?;
    (secs > 1e9).then_some((secs * 1000.0) as u64)
}

fn cut(mut text: String) -> String {
    if text.len() > LOG_LINE_MAX {
        let mut end = LOG_LINE_MAX;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str(" [cut]");
    }
    text
}

/// One log file being read, and whose it is.
struct Tail {
    process: String,
    part: u32,
    file: FileTail,
}

async fn logs(
    engine: &Engine,
    slot: &SlotView,
    req: &LogRequest,
    send: &mut SendStream,
    shutdown: &CancellationToken,
) -> Result<(), ()> {
    if let Some(p) = &req.process {
        if !LOG_PROCESSES.contains(&p.as_str()) {
            let e = WireError::new(
                ErrorCode::InvalidInput,
                format!(
                    "\"{p}\" is not a process: expected one of {}",
                    LOG_PROCESSES.join(", ")
                ),
            );
            return write(send, &QueryFrame::Error(e)).await;
        }
    }
    let mut tails: Vec<Tail> = Vec::new();
    let mut history: Vec<LogLine> = Vec::new();
    let mut known_parts = 0u32;
    let add_parts = |tails: &mut Vec<Tail>, known: &mut u32| {
        for (part, dir) in part_dirs(slot) {
            if part < *known {
                continue;
            }
            for (process, path) in log_files(&dir, req.process.as_deref()) {
                tails.push(Tail {
                    process,
                    part,
                    file: FileTail::new(path),
                });
            }
            *known = part + 1;
        }
    };
    add_parts(&mut tails, &mut known_parts);
    for t in &mut tails {
        let modified = std::fs::metadata(t.file.path())
            .and_then(|m| m.modified())
            .ok()
            .and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_millis() as u64);
        let size = std::fs::metadata(t.file.path()).map_or(0, |m| m.len());
        // A file last written before --since holds nothing newer: follow
        // from its end.
        if let (Some(since), Some(m)) = (req.since, modified) {
            if m < since {
                t.file.seek(size);
                continue;
            }
        }
        // Only the end of a long log (a partial first line is dropped).
        if size > HISTORY_MAX {
            t.file.seek(size - HISTORY_MAX);
        }
        for text in t.file.lines(HISTORY_MAX) {
            let at = line_time(&text);
            if let (Some(since), Some(at)) = (req.since, at) {
                if at < since {
                    continue;
                }
            }
            history.push(LogLine {
                process: t.process.clone(),
                part: t.part,
                at,
                text: cut(text),
            });
        }
    }
    if let Some(n) = req.tail {
        let n = n as usize;
        if history.len() > n {
            history.drain(..history.len() - n);
        }
    }
    for chunk in history.chunks(LOG_LINES_PER_FRAME) {
        write(send, &QueryFrame::Logs(chunk.to_vec())).await?;
    }
    if history.is_empty() || !req.follow {
        // One frame at least: the coordinator relays the first frame as
        // the sign that the worker answered.
        if history.is_empty() {
            write(send, &QueryFrame::Logs(Vec::new())).await?;
        }
        if !req.follow {
            return Ok(());
        }
    }
    let mut tick = tokio::time::interval(FOLLOW_EVERY);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => {
                return write(send, &QueryFrame::End { reason: "the worker is shutting down".into() }).await;
            }
            _ = send.stopped() => return Err(()),
        }
        let alive = engine
            .slot_view(&req.recording)
            .is_some_and(|s| s.epoch == slot.epoch);
        add_parts(&mut tails, &mut known_parts);
        let now = now_ms();
        let mut lines = Vec::new();
        for t in &mut tails {
            for text in t.file.lines(HISTORY_MAX) {
                lines.push(LogLine {
                    process: t.process.clone(),
                    part: t.part,
                    at: line_time(&text).or(Some(now)),
                    text: cut(text),
                });
            }
        }
        for chunk in lines.chunks(LOG_LINES_PER_FRAME) {
            write(send, &QueryFrame::Logs(chunk.to_vec())).await?;
        }
        if !alive {
            return write(
                send,
                &QueryFrame::End {
                    reason: format!("recording {} left this worker", req.recording),
                },
            )
            .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_tell_their_own_time() {
        assert_eq!(
            line_time("2026-12-02T03:45:01.123Z health silent: no sound"),
            Some(1_796_183_101_123)
        );
        assert_eq!(
            line_time("[1796183101.500][INFO]: Waiting for pending navigations..."),
            Some(1_796_183_101_500)
        );
        assert_eq!(line_time("frame=  45 fps= 15"), None);
        assert_eq!(line_time(""), None);
    }

    #[test]
    fn long_lines_are_cut_on_a_character() {
        let long = "é".repeat(LOG_LINE_MAX);
        let c = cut(long);
        assert!(c.len() <= LOG_LINE_MAX + 6 && c.ends_with(" [cut]"));
    }
}
