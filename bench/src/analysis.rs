//! What media health costs (benchmark 8): the worker's encoder with and without its
//! analysis branch (a 320-pixel copy of the picture through freezedetect
//! and blackdetect twice a second, the sound through astats and
//! silencedetect) and its thumbnail, on the same synthetic 720p15 input
//! with sound, alternating in one run. The figure is ffmpeg's CPU (user +
//! system) per second of media, which is its share of a core when it
//! records in real time.

use std::path::Path;

use anyhow::{bail, Context};
use recfleet_agent::worker::encoder::{output_args, Analysis};
use recfleet_protocol::spec::RecordingSpec;
use recfleet_protocol::RecordingId;
use serde_json::{json, Value};

use crate::Opts;

/// CPU seconds of this process's waited-for children (`cutime + cstime`).
fn children_cpu_secs() -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    let after = stat.rsplit(')').next().context("/proc/self/stat")?;
    let f: Vec<&str> = after.split_whitespace().collect();
    // After the command: state(0) ... cutime(13) cstime(14), in ticks.
    let ticks: u64 = f.get(13).context("cutime")?.parse::<u64>()?
        + f.get(14).context("cstime")?.parse::<u64>()?;
    Ok(ticks as f64 / 100.0)
}

/// One encoder run of `secs` of media; its CPU seconds.
async fn encode(dir: &Path, secs: u32, analysis: Analysis) -> anyhow::Result<f64> {
    let _ = std::fs::remove_dir_all(dir);
    let chunks = dir.join("chunks");
    std::fs::create_dir_all(&chunks)?;
    let spec = RecordingSpec::new(RecordingId::new("bench")?, "http://127.0.0.1/");
    let t = secs.to_string();
    let mut args: Vec<String> = [
        "-hide_banner",
        "-loglevel",
        "error",
        "-nostdin",
        "-t",
        &t,
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=1280x720:rate=15",
        "-t",
        &t,
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=48000,aformat=channel_layouts=stereo",
    ]
    .map(String::from)
    .to_vec();
    args.extend(output_args(&spec, &chunks, analysis));
    let before = children_cpu_secs()?;
    let out = tokio::process::Command::new("ffmpeg")
        .args(&args)
        .current_dir(dir)
        .output()
        .await
        .context("ffmpeg")?;
    if !out.status.success() {
        bail!("ffmpeg: {}", String::from_utf8_lossy(&out.stderr));
    }
    if analysis == Analysis::On && !dir.join("thumb.jpg").exists() {
        bail!("the analysed run wrote no thumbnail");
    }
    Ok(children_cpu_secs()? - before)
}

/// Runs the comparison.
pub async fn run(opts: &Opts, dir: &Path) -> anyhow::Result<Value> {
    let secs: u32 = opts.pick(6, 60);
    let rounds = opts.pick(1, 3);
    let (mut off, mut on) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        off.push(encode(&dir.join("off"), secs, Analysis::Off).await? / f64::from(secs));
        on.push(encode(&dir.join("on"), secs, Analysis::On).await? / f64::from(secs));
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (off_m, on_m) = (median(&mut off), median(&mut on));
    println!(
        "  encoder alone {off_m:.3} cores, with analysis and thumbnail {on_m:.3} cores ({:.2}x)",
        on_m / off_m
    );
    Ok(json!({
        "media_secs": secs,
        "rounds": rounds,
        "encoder_cores": off,
        "with_analysis_cores": on,
        "encoder_cores_median": off_m,
        "with_analysis_cores_median": on_m,
        "ratio": on_m / off_m,
    }))
}
