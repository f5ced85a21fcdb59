//! The guard: a small process that outlives the worker only to kill what the
//! worker leaves behind. The worker holds the write end of a pipe whose read
//! end is the guard's stdin; when the worker dies, however it dies (kill -9
//! included), the kernel closes that end, the guard reads EOF and kills every
//! process tagged with the worker's instance id. No unsafe code, no
//! PR_SET_PDEATHSIG (which would not reach Chromium's helpers anyway).

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use crate::worker::process::kill_tagged;

/// Runs the guard: blocks until stdin closes, then cleans up `tag`.
pub fn run(tag: &str) -> std::io::Result<()> {
    let mut stdin = std::io::stdin().lock();
    let mut buf = [0u8; 64];
    loop {
        match stdin.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    let killed = kill_tagged(tag);
    if killed > 0 {
        eprintln!("recfleet guard: worker gone, killed {killed} processes tagged {tag}");
    }
    Ok(())
}

/// The worker side: starts the guard for `tag` and returns the pipe's write
/// end, which must live as long as the worker.
pub fn start(
    exe: &std::path::Path,
    tag: &str,
) -> std::io::Result<(std::process::Child, std::io::PipeWriter)> {
    let (reader, writer) = std::io::pipe()?;
    let child = Command::new(exe)
        .arg("guard")
        .arg("--tag")
        .arg(tag)
        .stdin(Stdio::from(reader))
        .stdout(Stdio::null())
        // Its own group: a kill of the worker's group must not take it too.
        .process_group(0)
        .spawn()?;
    Ok((child, writer))
}
