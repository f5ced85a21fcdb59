//! The slot's virtual display (Xvfb) and audio sink (a PulseAudio instance of
//! its own with one null sink): each recording sees and hears only itself.

use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use super::part::{PartContext, StartError};
use super::process::SlotProcess;

/// Starts Xvfb on a display number it picks itself (`-displayfd`), so slots
/// never race for numbers. Returns the process and the display (":N").
pub async fn start_xvfb(ctx: &PartContext) -> Result<(SlotProcess, String), StartError> {
    let v = ctx.spec.viewport;
    let mut cmd = Command::new(&ctx.bins.xvfb);
    cmd.args(["-displayfd", "1", "-screen", "0"])
        .arg(format!("{}x{}x24", v.width, v.height))
        .args(["-nolisten", "tcp", "-noreset"]);
    let spawned = ctx
        .spawn("xvfb", cmd, "xvfb", false, true)
        .map_err(|e| StartError::new("xvfb", e))?;
    let stdout = spawned
        .stdout
        .ok_or_else(|| StartError::msg("xvfb", "no stdout"))?;
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .map_err(|_| StartError::msg("xvfb", "did not report a display within 10 s"))?
        .map_err(|e| StartError::new("xvfb", e))?
        .ok_or_else(|| {
            StartError::msg("xvfb", "exited before reporting a display (see xvfb.log)")
        })?;
    let n: u32 = line.trim().parse().map_err(|_| {
        StartError::msg(
            "xvfb",
            format!("reported \"{line}\" instead of a display number"),
        )
    })?;
    Ok((spawned.process, format!(":{n}")))
}

/// The PulseAudio side of a slot.
#[derive(Debug)]
pub struct AudioSink {
    /// The PulseAudio process.
    pub process: SlotProcess,
    /// `unix:/path/to/socket`, for `PULSE_SERVER`.
    pub server: String,
    /// The sink Chromium plays into (`PULSE_SINK`).
    pub sink: String,
    /// Its monitor, which ffmpeg records.
    pub monitor: String,
}

/// Starts the display and, when the spec has sound, the sound server,
/// together. Whatever started is pushed on `procs` before an error is
/// looked at, so that teardown sees it.
pub async fn start_display_and_sound(
    ctx: &PartContext,
    procs: &mut Vec<SlotProcess>,
) -> Result<(String, Option<AudioSink>), StartError> {
    let (xvfb, audio) = tokio::join!(start_xvfb(ctx), async {
        if ctx.spec.audio {
            start_pulse(ctx).await.map(Some)
        } else {
            Ok(None)
        }
    });
    if let Ok((p, _)) = &xvfb {
        procs.push(p.clone());
    }
    if let Ok(Some(a)) = &audio {
        procs.push(a.process.clone());
    }
    let (_, display) = xvfb?;
    Ok((display, audio?))
}

/// Starts a PulseAudio instance for the slot with one null sink, and waits
/// until its socket accepts connections.
pub async fn start_pulse(ctx: &PartContext) -> Result<AudioSink, StartError> {
    let dir = ctx.dir.join("pulse");
    std::fs::create_dir_all(&dir).map_err(|e| StartError::new("pulseaudio", e))?;
    let socket = dir.join("native");
    let sink = "recfleet".to_string();
    let config = format!(
        "load-module module-native-protocol-unix socket={} auth-anonymous=1\n\
         load-module module-null-sink sink_name={sink} rate=48000\n\
         set-default-sink {sink}\n",
        socket.display()
    );
    let config_path = dir.join("default.pa");
    std::fs::write(&config_path, config).map_err(|e| StartError::new("pulseaudio", e))?;
    let mut cmd = Command::new(&ctx.bins.pulseaudio);
    cmd.arg("-n")
        .arg("-F")
        .arg(&config_path)
        .args([
            "--daemonize=no",
            "--exit-idle-time=-1",
            "--disallow-exit",
            "--use-pid-file=no",
        ])
        .args(["--disable-shm=yes", "--log-target=stderr"])
        // Its own home and runtime dir: no state shared with other slots.
        .env("HOME", &dir)
        .env("XDG_RUNTIME_DIR", &dir)
        .env("XDG_CONFIG_HOME", &dir);
    let spawned = ctx
        .spawn("pulseaudio", cmd, "pulseaudio", false, false)
        .map_err(|e| StartError::new("pulseaudio", e))?;
    wait_for_socket(&socket, Duration::from_secs(10))
        .await
        .map_err(|_| {
            StartError::msg(
                "pulseaudio",
                "its socket did not come up within 10 s (see pulseaudio.log)",
            )
        })?;
    Ok(AudioSink {
        process: spawned.process,
        server: format!("unix:{}", socket.display()),
        monitor: format!("{sink}.monitor"),
        sink,
    })
}

async fn wait_for_socket(path: &Path, within: Duration) -> Result<(), ()> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if tokio::net::UnixStream::connect(path).await.is_ok() {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
