//! A fleet of real processes for tests: a coordinator and workers started
//! from the built `recfleet-agent`, certificates from a fresh CA, and an
//! operator connection to talk to the coordinator.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use recfleet_certs::{CertificateAuthority, Identity, Role, TlsMaterial};
use recfleet_protocol::quic::{self, TransportSettings};
use recfleet_protocol::{
    ConsoleRequest, ConsoleResponse, RecordingDetail, RecordingId, WorkerState,
};
use tokio::process::{Child, Command};

use crate::procs::workspace_bin;

/// A coordinator, its workers, and the files they share.
#[derive(Debug)]
pub struct TestFleet {
    /// Everything lives here (certificates, store, recordings, logs).
    pub dir: tempfile::TempDir,
    kept: bool,
    /// The coordinator's address.
    pub addr: SocketAddr,
    /// The coordinator's HTTP address (/metrics, /healthz, /readyz).
    pub coordinator_http: SocketAddr,
    /// Each worker's HTTP address.
    pub worker_http: std::collections::HashMap<String, SocketAddr>,
    coordinator: Option<Child>,
    workers: Vec<(String, Child)>,
    operator: Option<quinn::Connection>,
    endpoint: quinn::Endpoint,
}

impl TestFleet {
    /// Certificates and a coordinator; workers are added with [`Self::add_worker`].
    pub async fn start() -> anyhow::Result<TestFleet> {
        Self::start_on([127, 0, 0, 1].into()).await
    }

    /// Like [`Self::start`], the coordinator listening on `ip` (e.g.
    /// 0.0.0.0 to be reachable from a test's network namespace).
    pub async fn start_on(ip: std::net::IpAddr) -> anyhow::Result<TestFleet> {
        let dir = tempfile::tempdir()?;
        let tls = dir.path().join("tls");
        let ca = CertificateAuthority::init(&tls, false)?;
        let issue = |role: Role, name: &str, stem: &str| -> anyhow::Result<()> {
            let issued = ca.issue_for_days(Identity::new(role, name)?, Vec::new(), 1)?;
            recfleet_certs::write_cert_files(&tls, stem, &issued, true)?;
            Ok(())
        };
        issue(Role::Coordinator, "test", "coordinator")?;
        issue(Role::Operator, "tester", "operator")?;
        issue(Role::Viewer, "watcher", "viewer")?;
        for i in 1..=4 {
            issue(Role::Agent, &format!("w{i}"), &format!("agent-w{i}"))?;
        }
        let port = std::net::UdpSocket::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let addr: SocketAddr = (ip, port).into();
        std::fs::create_dir_all(dir.path().join("recordings"))?;
        std::fs::create_dir_all(dir.path().join("logs"))?;
        let endpoint = quic::client_endpoint(
            &Self::material_in(&tls, "operator")?,
            TransportSettings::default(),
        )?;
        let coordinator_http = free_tcp()?;
        let mut fleet = TestFleet {
            dir,
            addr,
            coordinator_http,
            kept: false,
            worker_http: Default::default(),
            coordinator: None,
            workers: Vec::new(),
            operator: None,
            endpoint,
        };
        fleet.start_coordinator()?;
        Ok(fleet)
    }

    fn material_in(tls: &Path, stem: &str) -> anyhow::Result<TlsMaterial> {
        Ok(TlsMaterial::load(
            &tls.join("ca.pem"),
            &tls.join(format!("{stem}.pem")),
            &tls.join(format!("{stem}-key.pem")),
        )?)
    }

    /// TLS material of one of the fleet's identities (`operator`, `viewer`,
    /// `agent-w1`, ...).
    pub fn material(&self, stem: &str) -> anyhow::Result<TlsMaterial> {
        Self::material_in(&self.tls(), stem)
    }

    /// The certificate directory.
    pub fn tls(&self) -> PathBuf {
        self.dir.path().join("tls")
    }

    /// The shared output directory of all workers.
    pub fn recordings(&self) -> PathBuf {
        self.dir.path().join("recordings")
    }

    fn log(&self, name: &str) -> anyhow::Result<std::fs::File> {
        Ok(std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("logs").join(format!("{name}.log")))?)
    }

    /// Starts (or restarts) the coordinator on the same data directory and port.
    pub fn start_coordinator(&mut self) -> anyhow::Result<()> {
        let tls = self.tls();
        let log = self.log("coordinator")?;
        let child = Command::new(workspace_bin("recfleet-agent"))
            .arg("coordinator")
            .args(["--listen", &self.addr.to_string()])
            .arg("--data-dir")
            .arg(self.dir.path().join("coordinator"))
            .arg("--ca")
            .arg(tls.join("ca.pem"))
            .arg("--cert")
            .arg(tls.join("coordinator.pem"))
            .arg("--key")
            .arg(tls.join("coordinator-key.pem"))
            .arg("--manifest-root")
            .arg(self.recordings())
            .args(["--metrics-addr", &self.coordinator_http.to_string()])
            .env("RECFLEET_LOG", "info,recfleet_agent=debug")
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()?;
        self.coordinator = Some(child);
        self.operator = None;
        Ok(())
    }

    /// kill -9 of the coordinator.
    pub async fn kill_coordinator(&mut self) {
        if let Some(mut c) = self.coordinator.take() {
            let _ = c.kill().await;
        }
        self.operator = None;
    }

    /// Starts worker `wN` with `capacity`.
    pub fn add_worker(&mut self, n: u32, capacity: u32) -> anyhow::Result<()> {
        self.add_worker_with(n, capacity, &[])
    }

    /// Starts worker `wN` with extra environment variables.
    pub fn add_worker_with(
        &mut self,
        n: u32,
        capacity: u32,
        env: &[(&str, &str)],
    ) -> anyhow::Result<()> {
        self.add_worker_at(n, capacity, env, None)
    }

    /// Starts worker `wN` inside network namespace `netns`, reaching the
    /// coordinator at `coordinator`.
    pub fn add_worker_in_netns(
        &mut self,
        n: u32,
        capacity: u32,
        netns: &str,
        coordinator: SocketAddr,
    ) -> anyhow::Result<()> {
        self.add_worker_at(n, capacity, &[], Some((netns, coordinator)))
    }

    fn add_worker_at(
        &mut self,
        n: u32,
        capacity: u32,
        env: &[(&str, &str)],
        netns: Option<(&str, SocketAddr)>,
    ) -> anyhow::Result<()> {
        let http = free_tcp()?;
        let tls = self.tls();
        let name = format!("w{n}");
        let log = self.log(&name)?;
        let (mut cmd, coordinator) = match netns {
            None => (
                Command::new(workspace_bin("recfleet-agent")),
                self.local_addr(),
            ),
            Some((ns, coordinator)) => {
                // `ip netns exec` execs the worker: the child's pid is the worker's.
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns])
                    .arg(workspace_bin("recfleet-agent"));
                (c, coordinator)
            }
        };
        let child = cmd
            .arg("worker")
            .args([
                "--coordinator",
                &coordinator.to_string(),
                "--capacity",
                &capacity.to_string(),
            ])
            .arg("--ca")
            .arg(tls.join("ca.pem"))
            .arg("--cert")
            .arg(tls.join(format!("agent-{name}.pem")))
            .arg("--key")
            .arg(tls.join(format!("agent-{name}-key.pem")))
            .arg("--out-dir")
            .arg(self.recordings())
            .arg("--runtime-dir")
            .arg(std::env::temp_dir().join(format!("rff-{}-{name}", self.addr.port())))
            .args(["--metrics-addr", &http.to_string()])
            .envs(env.iter().copied())
            .env("RECFLEET_LOG", "info,recfleet_agent=debug")
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()?;
        self.worker_http.insert(name.clone(), http);
        self.workers.push((name, child));
        Ok(())
    }

    /// Sends `signal` to a worker process.
    pub fn signal_worker(&self, name: &str, signal: nix::sys::signal::Signal) {
        if let Some(pid) = self.worker_pid(name) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal);
        }
    }

    /// Waits for a worker process to exit; returns its exit code.
    pub async fn wait_worker_exit(&mut self, name: &str, secs: u64) -> Option<i32> {
        let (_, child) = self.workers.iter_mut().find(|(n, _)| n == name)?;
        let status = tokio::time::timeout(Duration::from_secs(secs), child.wait())
            .await
            .ok()?
            .ok()?;
        status.code()
    }

    /// Opens an event subscription as the operator.
    pub async fn subscribe(&mut self) -> anyhow::Result<quinn::RecvStream> {
        let conn = recfleet_client::connect::connect(
            &self.endpoint,
            &self.local_addr().to_string(),
            "localhost",
            Duration::from_secs(5),
        )
        .await?
        .connection;
        let (send, recv) = recfleet_client::subscription::open(&conn).await?;
        // Keep the connection alive as long as the stream: leak the handle
        // into the stream's lifetime by holding it in a task.
        tokio::spawn(async move {
            let _conn = conn;
            let _send = send;
            std::future::pending::<()>().await;
        });
        Ok(recv)
    }

    /// The pid of the coordinator process.
    pub fn coordinator_pid(&self) -> Option<u32> {
        self.coordinator.as_ref().and_then(|c| c.id())
    }

    /// The pid of a worker process.
    pub fn worker_pid(&self, name: &str) -> Option<u32> {
        self.workers
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, c)| c.id())
    }

    /// Where clients on this host reach the coordinator.
    pub fn local_addr(&self) -> SocketAddr {
        if self.addr.ip().is_unspecified() {
            ([127, 0, 0, 1], self.addr.port()).into()
        } else {
            self.addr
        }
    }

    /// Sends one request as the operator (connecting, and reconnecting after
    /// a coordinator restart, as needed).
    pub async fn request(&mut self, req: ConsoleRequest) -> anyhow::Result<ConsoleResponse> {
        use recfleet_client::{connect, request_on, ClientError, REQUEST_TIMEOUT};
        for _ in 0..50 {
            if self.operator.is_none() {
                let addr = self.local_addr().to_string();
                self.operator =
                    connect::connect(&self.endpoint, &addr, "localhost", Duration::from_secs(2))
                        .await
                        .ok()
                        .map(|c| c.connection);
            }
            if let Some(conn) = &self.operator {
                match request_on(conn, req.clone(), REQUEST_TIMEOUT).await {
                    Ok(r) => return Ok(r),
                    // An error answer is an answer: tests look at it.
                    Err(ClientError::Wire(e)) => return Ok(ConsoleResponse::Error(e)),
                    Err(_) => self.operator = None,
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        anyhow::bail!("the coordinator did not answer")
    }

    /// Waits until `n` workers are ready.
    pub async fn wait_workers(&mut self, n: usize, secs: u64) -> anyhow::Result<()> {
        let until = tokio::time::Instant::now() + Duration::from_secs(secs);
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
            if tokio::time::Instant::now() > until {
                anyhow::bail!(
                    "{n} workers not ready within {secs} s; logs in {}",
                    self.dir.path().display()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Shows a recording.
    pub async fn show(&mut self, id: &RecordingId) -> anyhow::Result<RecordingDetail> {
        match self
            .request(ConsoleRequest::ShowRecording { id: id.clone() })
            .await?
        {
            ConsoleResponse::Recording(d) => Ok(*d),
            other => anyhow::bail!("show {id}: {other:?}"),
        }
    }

    /// Waits until the recording satisfies `pred`.
    pub async fn wait_for(
        &mut self,
        id: &RecordingId,
        secs: u64,
        pred: impl Fn(&RecordingDetail) -> bool,
    ) -> anyhow::Result<RecordingDetail> {
        let until = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let d = self.show(id).await?;
            if pred(&d) {
                return Ok(d);
            }
            if tokio::time::Instant::now() > until {
                anyhow::bail!(
                    "{id} did not get there within {secs} s: {:?}; logs in {}",
                    d.info,
                    self.dir.path().display()
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

fn free_tcp() -> anyhow::Result<SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// A plain HTTP GET; returns (status, body).
pub fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

impl Drop for TestFleet {
    /// A failed test keeps its fleet's directory (logs, store, segments).
    fn drop(&mut self) {
        if std::thread::panicking() && !self.kept {
            self.kept = true;
            let path = self.dir.path().to_path_buf();
            let kept = std::mem::replace(
                &mut self.dir,
                tempfile::TempDir::new().unwrap_or_else(|_| std::process::abort()),
            );
            let _ = kept.keep();
            eprintln!("test fleet kept for inspection: {}", path.display());
        }
    }
}
