//! The guard: a small process that outlives the worker only to kill what the
//! worker leaves behind. The worker holds the write end of a pipe whose read
//! end is the guard's stdin; when the worker dies, however it dies (kill -9
//! included), the kernel closes that end, the guard reads EOF and kills every
//! process tagged with the worker's instance id. No unsafe code, no
//! PR_SET_PDEATHSIG (which would not reach Chromium's helpers anyway).

use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use std::sync::{Arc, Mutex};

use recfleet_protocol::{OpenStream, WorkerGone, WorkerName};
use serde::{Deserialize, Serialize};

use crate::worker::process::{is_alive, kill_tagged};

/// Whom the guard tells when the worker dies: the coordinator of the
/// worker's current session, reached with the worker's own certificate.
/// The worker writes one line of JSON on the guard's stdin after each
/// welcome; the last one counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    /// The coordinator the worker is connected to.
    pub coordinator: SocketAddr,
    /// The name on its certificate.
    pub server_name: String,
    /// The fleet CA, the worker's certificate and key (files).
    pub ca: PathBuf,
    /// See `ca`.
    pub cert: PathBuf,
    /// See `ca`.
    pub key: PathBuf,
    /// The worker.
    pub name: WorkerName,
    /// The session of its welcome.
    pub session: u64,
}

/// How long the guard tries to deliver the news.
const REPORT_DEADLINE: Duration = Duration::from_secs(3);

/// Runs the guard: blocks until stdin closes, then cleans up `tag` and
/// reports the death to the coordinator, if the worker said whom to tell.
pub fn run(tag: &str) -> std::io::Result<()> {
    let mut notice = None;
    let mut lines = std::io::stdin().lock().lines();
    // A line that is not a notice (or a read error other than EOF) is
    // skipped: the guard's job is to wait for the end of the pipe.
    loop {
        match lines.next() {
            None => break,
            Some(Ok(line)) => {
                if let Ok(n) = serde_json::from_str::<Notice>(&line) {
                    notice = Some(n);
                }
            }
            Some(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Some(Err(e)) if e.kind() == std::io::ErrorKind::InvalidData => continue,
            Some(Err(_)) => break,
        }
    }
    let killed = kill_tagged(tag);
    if killed > 0 {
        eprintln!("recfleet guard: worker gone, killed {killed} processes tagged {tag}");
    }
    if let Some(n) = notice {
        match report(&n) {
            Ok(()) => eprintln!(
                "recfleet guard: told {} that worker {} died",
                n.coordinator, n.name
            ),
            Err(e) => eprintln!(
                "recfleet guard: could not tell {} that worker {} died: {e}",
                n.coordinator, n.name
            ),
        }
    }
    Ok(())
}

/// Tells the coordinator, within [`REPORT_DEADLINE`].
fn report(n: &Notice) -> Result<(), String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        tokio::time::timeout(REPORT_DEADLINE, async {
            let tls = recfleet_certs::TlsMaterial::load(&n.ca, &n.cert, &n.key)
                .map_err(|e| e.to_string())?;
            let endpoint = recfleet_protocol::quic::client_endpoint(&tls, Default::default())
                .map_err(|e| e.to_string())?;
            let conn = endpoint
                .connect(n.coordinator, &n.server_name)
                .map_err(|e| e.to_string())?
                .await
                .map_err(|e| e.to_string())?;
            let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
            let gone = OpenStream::WorkerGone(WorkerGone {
                name: n.name.clone(),
                session: n.session,
            });
            recfleet_protocol::quic::write_frame(&mut send, &gone)
                .await
                .map_err(|e| e.to_string())?;
            let _ = send.finish();
            // The coordinator ends the stream once it took the news (or
            // answers why not).
            let answer =
                recfleet_protocol::quic::read_frame::<recfleet_protocol::CoordinatorMessage>(
                    &mut recv,
                )
                .await
                .map_err(|e| e.to_string())?;
            conn.close(0u32.into(), b"reported");
            endpoint.wait_idle().await;
            match answer {
                Some(recfleet_protocol::CoordinatorMessage::Refused(e)) => Err(e.message),
                _ => Ok(()),
            }
        })
        .await
        .map_err(|_| format!("no answer within {} s", REPORT_DEADLINE.as_secs()))?
    })
}

/// The worker side of a running guard: its process and the pipe's write
/// end, which must live as long as the worker.
#[derive(Debug)]
pub struct Guard {
    child: std::process::Child,
    pipe: std::io::PipeWriter,
}

impl Guard {
    /// Starts the guard for `tag`, telling it `notice` when there is one.
    pub fn start(
        exe: &std::path::Path,
        tag: &str,
        notice: Option<&Notice>,
    ) -> std::io::Result<Guard> {
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
        let mut guard = Guard {
            child,
            pipe: writer,
        };
        if let Some(n) = notice {
            guard.tell(n)?;
        }
        Ok(guard)
    }

    /// Tells the guard whom to report the worker's death to. A line of a
    /// few hundred bytes: the pipe takes it without blocking.
    pub fn tell(&mut self, notice: &Notice) -> std::io::Result<()> {
        let mut line = serde_json::to_string(notice).map_err(std::io::Error::other)?;
        line.push('\n');
        self.pipe.write_all(line.as_bytes())
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
pub fn watch(
    guard: Arc<Mutex<Guard>>,
    exe: std::path::PathBuf,
    tag: String,
    notice: Arc<Mutex<Option<Notice>>>,
) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            tick.tick().await;
            let pid = guard.lock().unwrap_or_else(|e| e.into_inner()).pid();
            if is_alive(pid) {
                continue;
            }
            let told = notice.lock().unwrap_or_else(|e| e.into_inner()).clone();
            match Guard::start(&exe, &tag, told.as_ref()) {
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
