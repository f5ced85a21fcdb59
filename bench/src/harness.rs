//! Real processes for the benchmarks: a fleet CA with certificates on disk,
//! a coordinator and workers started from the release `recfleet-agent`, an
//! operator connection, and CPU/RSS read from /proc.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use recfleet_certs::{CertificateAuthority, Identity, Role, TlsMaterial};
use recfleet_protocol::quic::{self, TransportSettings};
use recfleet_protocol::{
    ConsoleRequest, ConsoleResponse, RecordingDetail, RecordingId, WorkerState,
};
use tokio::process::{Child, Command};

/// A fleet CA in a directory, with certificate files for the processes.
pub struct Pki {
    /// The CA.
    pub ca: CertificateAuthority,
    /// Where the files are.
    pub dir: PathBuf,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pki({})", self.dir.display())
    }
}

impl Pki {
    /// A new CA in `dir` with a coordinator and an operator certificate.
    pub fn new(dir: &Path) -> anyhow::Result<Pki> {
        let ca = CertificateAuthority::init(dir, false)?;
        let pki = Pki {
            ca,
            dir: dir.to_path_buf(),
        };
        pki.issue_file(Role::Coordinator, "bench", "coordinator")?;
        pki.issue_file(Role::Operator, "bench", "operator")?;
        Ok(pki)
    }

    /// Issues `role/name` into `<stem>.pem` and `<stem>-key.pem`.
    pub fn issue_file(&self, role: Role, name: &str, stem: &str) -> anyhow::Result<()> {
        let issued = self
            .ca
            .issue_for_days(Identity::new(role, name)?, Vec::new(), 2)?;
        recfleet_certs::write_cert_files(&self.dir, stem, &issued, true)?;
        Ok(())
    }

    /// Issues `role/name` in memory.
    pub fn issue_memory(&self, role: Role, name: &str) -> anyhow::Result<TlsMaterial> {
        let issued = self
            .ca
            .issue_for_days(Identity::new(role, name)?, Vec::new(), 2)?;
        Ok(self.ca.tls_material(&issued)?)
    }

    /// The material of a certificate written with [`Self::issue_file`].
    pub fn material(&self, stem: &str) -> anyhow::Result<TlsMaterial> {
        Ok(TlsMaterial::load(
            &self.dir.join("ca.pem"),
            &self.dir.join(format!("{stem}.pem")),
            &self.dir.join(format!("{stem}-key.pem")),
        )?)
    }
}

/// A free UDP port on loopback.
pub fn free_udp() -> anyhow::Result<SocketAddr> {
    let port = std::net::UdpSocket::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    Ok(([127, 0, 0, 1], port).into())
}

/// A coordinator process, its workers, and an operator connection.
#[derive(Debug)]
pub struct Fleet {
    /// Certificates, store, recordings, logs.
    pub dir: PathBuf,
    /// The coordinator's address.
    pub addr: SocketAddr,
    agent: PathBuf,
    coordinator: Child,
    workers: Vec<(String, Child)>,
    endpoint: quinn::Endpoint,
    operator: Option<quinn::Connection>,
    /// The CA.
    pub pki: std::sync::Arc<Pki>,
}

impl Fleet {
    /// A CA and a coordinator (`idle_timeout_ms` decides failover detection).
    pub async fn start(agent: &Path, dir: &Path, idle_timeout_ms: u64) -> anyhow::Result<Fleet> {
        let pki = Pki::new(&dir.join("tls"))?;
        for d in ["recordings", "logs"] {
            std::fs::create_dir_all(dir.join(d))?;
        }
        let addr = free_udp()?;
        let tls = pki.dir.clone();
        let child = Command::new(agent)
            .arg("coordinator")
            .args(["--listen", &addr.to_string()])
            .arg("--data-dir")
            .arg(dir.join("coordinator"))
            .arg("--ca")
            .arg(tls.join("ca.pem"))
            .arg("--cert")
            .arg(tls.join("coordinator.pem"))
            .arg("--key")
            .arg(tls.join("coordinator-key.pem"))
            .arg("--manifest-root")
            .arg(dir.join("recordings"))
            .args(["--idle-timeout-ms", &idle_timeout_ms.to_string()])
            .env("RECFLEET_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log_file(dir, "coordinator")?)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot run {}", agent.display()))?;
        let endpoint =
            quic::client_endpoint(&pki.material("operator")?, TransportSettings::default())?;
        let mut fleet = Fleet {
            dir: dir.to_path_buf(),
            addr,
            agent: agent.to_path_buf(),
            coordinator: child,
            workers: Vec::new(),
            endpoint,
            operator: None,
            pki: std::sync::Arc::new(pki),
        };
        // Ready when it answers.
        match fleet.request(ConsoleRequest::WhoAmI).await? {
            ConsoleResponse::Identity { .. } => Ok(fleet),
            other => anyhow::bail!("coordinator: {other:?}"),
        }
    }

    /// The coordinator's pid.
    pub fn coordinator_pid(&self) -> u32 {
        self.coordinator.id().unwrap_or(0)
    }

    /// A new operator connection (its own, e.g. for a load generator).
    pub async fn connect_operator(&self) -> anyhow::Result<quinn::Connection> {
        Ok(quic::connect(
            &self.endpoint,
            self.addr,
            "localhost",
            Duration::from_secs(5),
        )
        .await?)
    }

    /// Starts a real worker process `name` (certificate issued on first use).
    pub fn add_worker(&mut self, name: &str, capacity: u32) -> anyhow::Result<u32> {
        let stem = format!("agent-{name}");
        if !self.pki.dir.join(format!("{stem}.pem")).exists() {
            self.pki.issue_file(Role::Agent, name, &stem)?;
        }
        let tls = self.pki.dir.clone();
        static STARTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let runtime = std::env::temp_dir().join(format!(
            "rfb-{}-{name}-{}",
            self.addr.port(),
            STARTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let child = Command::new(&self.agent)
            .arg("worker")
            .args(["--coordinator", &self.addr.to_string()])
            .args(["--capacity", &capacity.to_string()])
            .arg("--ca")
            .arg(tls.join("ca.pem"))
            .arg("--cert")
            .arg(tls.join(format!("{stem}.pem")))
            .arg("--key")
            .arg(tls.join(format!("{stem}-key.pem")))
            .arg("--out-dir")
            .arg(self.dir.join("recordings"))
            .arg("--runtime-dir")
            .arg(runtime)
            .env("RECFLEET_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log_file(&self.dir, name)?)
            .kill_on_drop(true)
            .spawn()?;
        let pid = child.id().unwrap_or(0);
        self.workers.retain(|(n, _)| n != name);
        self.workers.push((name.to_string(), child));
        Ok(pid)
    }

    /// kill -9 of a worker; returns the wall clock (ms) of the kill.
    pub async fn kill_worker(&mut self, name: &str) -> anyhow::Result<u64> {
        let (_, child) = self
            .workers
            .iter_mut()
            .find(|(n, _)| n == name)
            .context("no such worker")?;
        let pid = child.id().context("worker already gone")?;
        let at = recfleet_protocol::now_ms();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        )?;
        let _ = child.wait().await;
        Ok(at)
    }

    /// One request as the operator, reconnecting as needed.
    pub async fn request(&mut self, req: ConsoleRequest) -> anyhow::Result<ConsoleResponse> {
        use recfleet_client::{connect, request_on, ClientError, REQUEST_TIMEOUT};
        for _ in 0..100 {
            if self.operator.is_none() {
                let addr = self.addr.to_string();
                self.operator =
                    connect::connect(&self.endpoint, &addr, "localhost", Duration::from_secs(2))
                        .await
                        .ok()
                        .map(|c| c.connection);
            }
            if let Some(conn) = &self.operator {
                match request_on(conn, req.clone(), REQUEST_TIMEOUT).await {
                    Ok(r) => return Ok(r),
                    // An error answer is an answer: callers look at it.
                    Err(ClientError::Wire(e)) => return Ok(ConsoleResponse::Error(e)),
                    Err(_) => self.operator = None,
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::bail!(
            "the coordinator did not answer; logs in {}",
            self.dir.display()
        )
    }

    /// Waits until `n` workers are ready.
    pub async fn wait_workers(&mut self, n: usize, secs: u64) -> anyhow::Result<()> {
        let until = Instant::now() + Duration::from_secs(secs);
        loop {
            if let ConsoleResponse::Workers(list) =
                self.request(ConsoleRequest::ListWorkers).await?
            {
                if list
                    .iter()
                    .filter(|w| w.state == WorkerState::Ready)
                    .count()
                    >= n
                {
                    return Ok(());
                }
            }
            anyhow::ensure!(
                Instant::now() < until,
                "{n} workers not ready within {secs} s; logs in {}",
                self.dir.display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A recording with its manifest.
    pub async fn show(&mut self, id: &RecordingId) -> anyhow::Result<RecordingDetail> {
        match self
            .request(ConsoleRequest::ShowRecording { id: id.clone() })
            .await?
        {
            ConsoleResponse::Recording(d) => Ok(*d),
            other => anyhow::bail!("show {id}: {other:?}"),
        }
    }

    /// Polls a recording until `pred` holds.
    pub async fn wait_for(
        &mut self,
        id: &RecordingId,
        secs: u64,
        poll: Duration,
        pred: impl Fn(&RecordingDetail) -> bool,
    ) -> anyhow::Result<RecordingDetail> {
        let until = Instant::now() + Duration::from_secs(secs);
        loop {
            let d = self.show(id).await?;
            if pred(&d) {
                return Ok(d);
            }
            anyhow::ensure!(
                Instant::now() < until,
                "{id} did not get there within {secs} s: {:?}; logs in {}",
                d.info,
                self.dir.display()
            );
            tokio::time::sleep(poll).await;
        }
    }

    /// Stops the coordinator and the workers (SIGKILL; the workers' guards
    /// sweep their slots).
    pub async fn shutdown(mut self) {
        for (_, w) in &mut self.workers {
            let _ = w.kill().await;
        }
        let _ = self.coordinator.kill().await;
        self.endpoint.close(0u32.into(), b"done");
    }
}

fn log_file(dir: &Path, name: &str) -> anyhow::Result<Stdio> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("logs").join(format!("{name}.log")))?;
    Ok(Stdio::from(f))
}

/// CPU time (user + system, own threads only) and resident memory of a process.
#[derive(Debug, Clone, Copy)]
pub struct ProcSample {
    /// When.
    pub at: Instant,
    /// CPU seconds so far.
    pub cpu_secs: f64,
    /// Resident bytes now.
    pub rss_bytes: u64,
}

/// Reads /proc/<pid>/stat and status.
pub fn proc_sample(pid: u32) -> Option<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit(')').next()?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After "pid (comm)": state is field 3, utime 14, stime 15 (1-based).
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(ProcSample {
        at: Instant::now(),
        // USER_HZ is 100 on Linux.
        cpu_secs: ticks as f64 / 100.0,
        rss_bytes: rss_kb * 1024,
    })
}

/// CPU of a process between two samples, in cores (1.0 = one core busy).
pub fn cores_between(a: &ProcSample, b: &ProcSample) -> f64 {
    let wall = b.at.duration_since(a.at).as_secs_f64();
    if wall <= 0.0 {
        return 0.0;
    }
    (b.cpu_secs - a.cpu_secs) / wall
}

/// The 1-minute load average and what else is busy (for the report).
pub fn machine_load() -> (f64, Vec<String>) {
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    let mut busy = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if pid == std::process::id() {
                continue;
            }
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            let comm = comm.trim();
            if [
                "cargo",
                "rustc",
                "cargo-nextest",
                "chromium",
                "chrome",
                "ffmpeg",
                "recfleet-agent",
            ]
            .iter()
            .any(|c| comm.starts_with(c))
            {
                busy.push(format!("{comm}({pid})"));
            }
        }
    }
    (load, busy)
}
