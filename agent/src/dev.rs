//! `recfleet-agent dev`: a whole fleet on this machine for a first run — a
//! CA and certificates, a coordinator and N workers as separate processes
//! on loopback, the demo class page, and a console context so that
//! `recfleet` connects without flags.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use recfleet_certs::{CertificateAuthority, Identity, Role};
use recfleet_client::{Client, ClientError};
use recfleet_protocol::spec::{PageSignal, RecordingSpec};
use recfleet_protocol::{now_ms, RecordingId, RecordingState, WorkerState};
use tokio::process::{Child, Command};

use crate::demo::DemoServer;
use crate::exit::Failure;

/// The name of the local fleet's context in the console's context file.
pub const DEV_CONTEXT: &str = "dev";

/// Options of `dev`.
#[derive(Debug, clap::Args)]
pub struct DevArgs {
    /// Directory for certificates, the store, recordings and logs.
    #[arg(long, default_value = ".recfleet/dev")]
    pub dir: PathBuf,
    /// Number of workers.
    #[arg(long, default_value_t = 2)]
    pub workers: u32,
    /// Capacity of each worker.
    #[arg(long, default_value_t = 2)]
    pub capacity: u32,
    /// Record the demo class through the fleet for this long, print the
    /// manifest path, and stop the fleet.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub record_demo: Option<Duration>,
    /// The console context file to add (or update) the context `dev` in,
    /// made current; other contexts in it are kept (default
    /// $XDG_CONFIG_HOME/recfleet/context.toml or ~/.config/recfleet/context.toml).
    #[arg(long)]
    pub context: Option<PathBuf>,
    /// Do not write a console context.
    #[arg(long)]
    pub no_context: bool,
}

struct Fleet {
    children: Vec<(String, Child)>,
}

impl Fleet {
    async fn stop(mut self) {
        for (_, c) in &self.children {
            if let Some(pid) = c.id() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
        }
        for (name, c) in &mut self.children {
            match tokio::time::timeout(Duration::from_secs(20), c.wait()).await {
                Ok(Ok(status)) => tracing::debug!(%name, %status, "stopped"),
                _ => {
                    tracing::warn!(%name, "did not stop in 20 s; killing");
                    let _ = c.kill().await;
                }
            }
        }
    }
}

fn tls_dir(dir: &Path) -> PathBuf {
    dir.join("coordinator").join("tls")
}

/// Makes (or reuses) the CA and issues every certificate of the local fleet.
fn certificates(dir: &Path, workers: u32) -> anyhow::Result<()> {
    let tls = tls_dir(dir);
    let ca = if tls.join("ca.pem").exists() {
        CertificateAuthority::load(&tls)?
    } else {
        CertificateAuthority::init(&tls, false)?
    };
    let issue = |role: Role, name: &str, stem: &str| -> anyhow::Result<()> {
        let issued = ca.issue_for_days(Identity::new(role, name)?, Vec::new(), 30)?;
        recfleet_certs::write_cert_files(&tls, stem, &issued, true)?;
        Ok(())
    };
    issue(Role::Coordinator, "dev", "coordinator")?;
    issue(Role::Operator, "dev", "operator-dev")?;
    issue(Role::Viewer, "dev", "viewer-dev")?;
    for i in 1..=workers {
        issue(Role::Agent, &format!("w{i}"), &format!("agent-w{i}"))?;
    }
    Ok(())
}

fn free_udp_port() -> anyhow::Result<u16> {
    Ok(std::net::UdpSocket::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn spawn(name: &str, args: Vec<String>, log: &Path) -> anyhow::Result<(String, Child)> {
    let exe = std::env::current_exe()?;
    let file =
        std::fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    let child = Command::new(exe)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(file.try_clone()?))
        .stderr(Stdio::from(file))
        .kill_on_drop(true)
        .spawn()?;
    Ok((name.to_string(), child))
}

/// The console context: where the coordinator is and which certificate
/// (the dev operator's) to show it, with absolute paths.
fn operator_context(addr: SocketAddr, tls: &Path) -> recfleet_client::Context {
    let abs = |p: PathBuf| std::fs::canonicalize(&p).unwrap_or(p);
    recfleet_client::Context {
        coordinator: addr.to_string(),
        server_name: "localhost".to_string(),
        ca: abs(tls.join("ca.pem")),
        cert: abs(tls.join("operator-dev.pem")),
        key: abs(tls.join("operator-dev-key.pem")),
    }
}

/// Adds (or updates) the `dev` context in the console's context file and
/// makes it current; every other context in the file stays as it was.
fn write_context(
    path: &Path,
    ctx: &recfleet_client::Context,
) -> Result<(), recfleet_client::context::ContextError> {
    recfleet_client::context::ContextFile::save_current(path, DEV_CONTEXT, ctx)
}

/// Runs the local fleet.
pub async fn main(args: DevArgs) -> Result<(), Failure> {
    run(args).await.map_err(|e| match e.downcast::<Failure>() {
        Ok(f) => f,
        Err(e) => Failure::other(e),
    })
}

async fn run(args: DevArgs) -> anyhow::Result<()> {
    if args.workers == 0 || args.capacity == 0 {
        return Err(Failure::invalid("--workers and --capacity must be at least 1").error);
    }
    let dir = args.dir.clone();
    let logs = dir.join("logs");
    let recordings = dir.join("recordings");
    for d in [&logs, &recordings] {
        std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    certificates(&dir, args.workers).context("cannot make the fleet's certificates")?;
    let tls = tls_dir(&dir);
    let port = free_udp_port()?;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let s = |p: &Path| p.display().to_string();
    let mut children = vec![spawn(
        "coordinator",
        vec![
            "coordinator".into(),
            "--listen".into(),
            addr.to_string(),
            "--data-dir".into(),
            s(&dir.join("coordinator")),
            "--manifest-root".into(),
            s(&recordings),
            // Local pages are what the dev fleet records; any other
            // coordinator refuses loopback unless allowed.
            "--allow-internal".into(),
            recfleet_protocol::egress::UrlPolicy::loopback_allowed()
                .allow_internal
                .join(","),
        ],
        &logs.join("coordinator.log"),
    )?];
    for i in 1..=args.workers {
        children.push(spawn(
            &format!("w{i}"),
            vec![
                "worker".into(),
                "--coordinator".into(),
                addr.to_string(),
                "--ca".into(),
                s(&tls.join("ca.pem")),
                "--cert".into(),
                s(&tls.join(format!("agent-w{i}.pem"))),
                "--key".into(),
                s(&tls.join(format!("agent-w{i}-key.pem"))),
                "--capacity".into(),
                args.capacity.to_string(),
                // Its own upload buffer, as on a machine of its own.
                "--out-dir".into(),
                s(&dir.join(format!("buffer-w{i}"))),
                "--runtime-dir".into(),
                format!("/tmp/recfleet-dev-{}-w{i}", std::process::id()),
            ],
            &logs.join(format!("w{i}.log")),
        )?);
    }
    let fleet = Fleet { children };
    let demo = DemoServer::start(([127, 0, 0, 1], 0).into()).await?;
    let result = drive(&args, addr, &tls, &logs, &recordings, &demo).await;
    eprintln!("stopping the fleet");
    fleet.stop().await;
    result
}

async fn drive(
    args: &DevArgs,
    addr: SocketAddr,
    tls: &Path,
    logs: &Path,
    recordings: &Path,
    demo: &DemoServer,
) -> anyhow::Result<()> {
    let ctx = operator_context(addr, tls);
    // Short connection attempts while the coordinator starts.
    let client = Client::from_context(&ctx)?.with_connect_timeout(Duration::from_secs(2));
    wait_for_fleet(&client, args.workers)
        .await
        .with_context(|| {
            format!(
                "the fleet did not come up; see the logs in {}",
                logs.display()
            )
        })?;
    eprintln!(
        "fleet up: coordinator {addr}, {} workers, logs in {}",
        args.workers,
        logs.display()
    );
    eprintln!("demo class page: {}", demo.url(""));
    if !args.no_context {
        let path = args
            .context
            .clone()
            .or_else(|| recfleet_client::Context::default_path().ok());
        if let Some(path) = path {
            // Only the `dev` context is added or updated (and made
            // current): any other context in the file stays as it was.
            write_context(&path, &ctx)?;
            eprintln!(
                "console context \"{DEV_CONTEXT}\" written to {} and made current (run `recfleet`)",
                path.display()
            );
        }
    }
    let Some(duration) = args.record_demo else {
        eprintln!("press Ctrl-C to stop");
        crate::signals::wait_for_termination().await;
        return Ok(());
    };
    let id = RecordingId::new(format!("demo-{}", now_ms() / 1000))?;
    let mut spec = RecordingSpec::new(id.clone(), demo.url("title=recfleet%20demo%20class"));
    spec.stop.max_duration_secs = Some(duration.as_secs().max(1) as u32);
    spec.stop.page_signal = Some(PageSignal::demo());
    // The demo page emits its slide changes: they make the chapters.
    spec.events.chapters = Some("slide".into());
    let started = match client.start(spec).await {
        Ok(s) => s,
        Err(e @ ClientError::Wire(_)) => {
            anyhow::bail!("the coordinator refused the recording: {e}")
        }
        Err(e) => return Err(e.into()),
    };
    eprintln!(
        "recording {} ({})",
        started.recording.id, started.recording.state
    );
    let limit = tokio::time::Instant::now() + duration + Duration::from_secs(90);
    let mut last = None;
    loop {
        // An error answer (not found yet) is asked again; a broken
        // connection ends the run.
        let shown = match client.show(id.clone()).await {
            Ok(detail) => Some(detail),
            Err(ClientError::Wire(_)) => None,
            Err(e) => return Err(e.into()),
        };
        if let Some(detail) = shown {
            let state = detail.info.state;
            if last != Some(state) {
                eprintln!(
                    "  {} on {}",
                    state,
                    detail
                        .info
                        .worker
                        .as_ref()
                        .map(|w| w.to_string())
                        .unwrap_or_else(|| "-".into())
                );
                last = Some(state);
            }
            if state.is_terminal() {
                let manifest = recordings.join(id.as_str()).join("manifest.json");
                let mp4 = recordings.join(id.as_str()).join("recording.mp4");
                if mp4.is_file() {
                    eprintln!("  recording.mp4: {}", mp4.display());
                }
                let dir = recordings.join(id.as_str());
                for (file, what) in [
                    ("events.jsonl", "the event track"),
                    ("chapters.vtt", "chapters, one per slide"),
                ] {
                    if dir.join(file).is_file() {
                        eprintln!("  {file}: {} ({what})", dir.join(file).display());
                    }
                }
                eprintln!("  its slides: recfleet record events {id} --type slide");
                println!("{}", manifest.display());
                if state == RecordingState::Completed {
                    return Ok(());
                }
                anyhow::bail!(
                    "the recording ended {state}: {}",
                    detail.info.reason.unwrap_or_default()
                );
            }
        }
        if tokio::time::Instant::now() > limit {
            anyhow::bail!(
                "the recording did not finish in time; see {}",
                logs.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Waits until every worker is ready; connection attempts are retried
/// (the client connects again on each call until one succeeds).
async fn wait_for_fleet(client: &Client, workers: u32) -> anyhow::Result<()> {
    let until = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(list) = client.workers().await {
            if list
                .iter()
                .filter(|w| w.state == WorkerState::Ready)
                .count() as u32
                >= workers
            {
                return Ok(());
            }
        }
        if tokio::time::Instant::now() > until {
            anyhow::bail!("not every worker connected within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use recfleet_client::context::ContextFile;

    #[test]
    fn the_dev_context_is_added_beside_prod_which_stays_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("recfleet/context.toml");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(
            &path,
            "current = \"prod\"\n[contexts.prod]\ncoordinator = \"coord.example:7800\"\n\
             server_name = \"coordinator.example\"\nca = \"prod/ca.pem\"\n\
             cert = \"prod/alice.pem\"\nkey = \"prod/alice-key.pem\"\n",
        )
        .unwrap();
        let prod = ContextFile::load(&path).unwrap().contexts["prod"].clone();
        let ctx = operator_context(([127, 0, 0, 1], 7800).into(), dir.path());
        write_context(&path, &ctx).unwrap();
        let after = ContextFile::load(&path).unwrap();
        assert_eq!(after.contexts["prod"], prod);
        assert_eq!(after.names(), ["dev", "prod"]);
        assert_eq!(after.current.as_deref(), Some(DEV_CONTEXT));
        assert_eq!(recfleet_client::Context::load(&path).unwrap(), ctx);
    }
}
