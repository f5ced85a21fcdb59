//! The external capture contract: a command started in the slot that writes
//! JSON lines on stdout (see examples/capture/README.md).

use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio::sync::watch;

use super::display;
use super::part::{count_frames, Frames, PartContext, StartError};

/// One line of the contract.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ContractEvent {
    /// The page is open and capture has begun.
    Ready,
    /// About every second.
    Progress {
        /// Frames encoded.
        #[serde(default)]
        frames: u64,
        /// Media time, ms.
        #[serde(default)]
        out_time_ms: u64,
        /// Bytes written.
        #[serde(default)]
        bytes: u64,
    },
    /// A fatal error; the command exits non-zero after it.
    Error {
        /// What went wrong.
        message: String,
    },
    /// A clean stop finished the file.
    Done {
        /// The file written.
        #[serde(default)]
        file: Option<String>,
        /// Its size.
        #[serde(default)]
        bytes: Option<u64>,
    },
}

/// Parses one stdout line; lines that are not contract events are returned
/// as an error text so the caller can log them and carry on.
pub fn parse_line(line: &str) -> Result<ContractEvent, String> {
    serde_json::from_str(line.trim()).map_err(|e| format!("not a contract event ({e}): {line}"))
}

/// Starts the external capture command and waits for its `ready` line.
pub(super) async fn start_external(
    ctx: &PartContext,
    command: &[String],
    display: &str,
    audio: Option<&display::AudioSink>,
    progress: watch::Sender<Frames>,
) -> Result<i32, StartError> {
    let (program, args) = command
        .split_first()
        .ok_or_else(|| StartError::msg("capture", "empty command"))?;
    let profile = ctx.dir.join("profile");
    let home = ctx.dir.join("home");
    for d in [&profile, &home] {
        std::fs::create_dir_all(d).map_err(|e| StartError::new("capture", e))?;
    }
    let mut cmd = Command::new(program);
    let v = ctx.spec.viewport;
    cmd.args(args)
        .env("DISPLAY", display)
        .env("HOME", &home)
        .env("RECFLEET_URL", &ctx.spec.url)
        .env("RECFLEET_OUTPUT", ctx.capture_file())
        .env("RECFLEET_WIDTH", v.width.to_string())
        .env("RECFLEET_HEIGHT", v.height.to_string())
        .env("RECFLEET_FPS", ctx.spec.fps.to_string())
        .env("RECFLEET_AUDIO", if ctx.spec.audio { "1" } else { "0" })
        .env("RECFLEET_RECORDING_ID", ctx.spec.id.as_str())
        .env("RECFLEET_EPOCH", ctx.epoch.to_string())
        .env("RECFLEET_PROFILE_DIR", &profile)
        .env("RECFLEET_CHROMEDRIVER", &ctx.bins.chromedriver)
        .env("RECFLEET_CHROMIUM", &ctx.bins.chromium)
        // The part's egress proxy: a capture command that drives its own
        // browser passes it on (examples/capture/ does), or its page goes
        // wherever it likes.
        .env(
            "RECFLEET_PROXY",
            format!("http://127.0.0.1:{}", ctx.egress.port),
        );
    if let Some(a) = audio {
        cmd.env("PULSE_SERVER", &a.server)
            .env("PULSE_SINK", &a.sink)
            .env("RECFLEET_AUDIO_SOURCE", &a.monitor);
    }
    let spawned = ctx
        .spawn("capture", cmd, "capture", false, true)
        .map_err(|e| StartError::new("capture", e))?;
    let stdout = spawned
        .stdout
        .ok_or_else(|| StartError::msg("capture", "no stdout"))?;
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<Result<(), String>>();
    tokio::spawn(async move {
        let mut ready_tx = Some(ready_tx);
        let mut lines = BufReader::new(stdout).lines();
        let mut rate = super::rate::FrameRate::default();
        let began = std::time::Instant::now();
        while let Ok(Some(line)) = lines.next_line().await {
            match parse_line(&line) {
                Ok(ContractEvent::Ready) => {
                    if let Some(tx) = ready_tx.take() {
                        let _ = tx.send(Ok(()));
                    }
                }
                Ok(ContractEvent::Progress {
                    frames,
                    out_time_ms,
                    ..
                }) => {
                    let r = rate.push(began.elapsed().as_millis() as u64, frames, 0);
                    progress.send_modify(|f| count_frames(f, frames, r, out_time_ms, None));
                }
                Ok(ContractEvent::Error { message }) => {
                    tracing::warn!(%message, "external capture reported an error");
                    if let Some(tx) = ready_tx.take() {
                        let _ = tx.send(Err(message));
                    }
                }
                Ok(ContractEvent::Done { .. }) => {}
                Err(e) => tracing::debug!(line = %e, "external capture said something else"),
            }
        }
    });
    let pid = spawned.process.pid;
    match tokio::time::timeout(ctx.timeouts.start, ready_rx).await {
        Ok(Ok(Ok(()))) => Ok(pid),
        Ok(Ok(Err(message))) => Err(StartError::msg("capture", message)),
        Ok(Err(_)) => Err(StartError::msg(
            "capture",
            "exited before it was ready (see capture.log)",
        )),
        Err(_) => Err(StartError::msg(
            "capture",
            format!("not ready within {} s", ctx.timeouts.start.as_secs()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_event() {
        assert_eq!(parse_line(r#"{"event":"ready"}"#), Ok(ContractEvent::Ready));
        assert_eq!(
            parse_line(r#"{"event":"progress","frames":30,"out_time_ms":2000,"bytes":4096}"#),
            Ok(ContractEvent::Progress {
                frames: 30,
                out_time_ms: 2000,
                bytes: 4096
            })
        );
        assert_eq!(
            parse_line(r#"{"event":"error","message":"no page"}"#),
            Ok(ContractEvent::Error {
                message: "no page".into()
            })
        );
        assert_eq!(
            parse_line(r#"{"event":"done","file":"/o/x.mp4","bytes":9}"#),
            Ok(ContractEvent::Done {
                file: Some("/o/x.mp4".into()),
                bytes: Some(9)
            })
        );
        assert!(parse_line("hello").is_err());
        assert!(parse_line(r#"{"event":"dance"}"#).is_err());
    }
}
