//! The guard: a small process that outlives the worker only to kill what the
//! worker leaves behind. The worker holds the write end of a pipe whose read
//! end is the guard's stdin; when the worker dies, however it dies (kill -9
//! included), the kernel closes that end, the guard reads EOF and kills every
//! process tagged with the worker's instance id. No unsafe code, no
//! PR_SET_PDEATHSIG (which would not reach Chromium's helpers anyway).

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use std::sync::{Arc, Mutex};

use crate::worker::process::{is_alive, kill_tagged};

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

/// The worker side of a running guard: its process and the pipe's write
/// end, which must live as long as the worker.
#[derive(Debug)]
pub struct Guard {
    child: std::process::Child,
    _pipe: std::io::PipeWriter,
}

impl Guard {
    /// Starts the guard for `tag`.
    pub fn start(exe: &std::path::Path, tag: &str) -> std::io::Result<Guard> {
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
        Ok(Guard {
            child,
            _pipe: writer,
        })
    }

    /// Its pid.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }
}

/// Checks every second that the guard lives, and starts a new one when it
/// does not (someone killed it): a worker without a guard would leave its
/// slots behind if it died next. The worker's orphan reaper reaps the dead
/// one.
pub fn watch(guard: Arc<Mutex<Guard>>, exe: std::path::PathBuf, tag: String) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            tick.tick().await;
            let pid = guard.lock().unwrap_or_else(|e| e.into_inner()).pid();
            if is_alive(pid) {
                continue;
            }
            match Guard::start(&exe, &tag) {
                Ok(new) => {
                    tracing::warn!(
                        old = pid,
                        new = new.pid(),
                        "the guard died; a new one watches the slots"
                    );
                    *guard.lock().unwrap_or_else(|e| e.into_inner()) = new;
                }
                Err(e) => {
                    tracing::error!(error = %e, "the guard died and cannot be started again; retrying");
                }
            }
        }
    });
}
