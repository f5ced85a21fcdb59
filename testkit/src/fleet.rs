//! One fleet launcher for the cross-process tests and the benchmarks: a
//! coordinator process started from the built `recfleet-agent` on its data
//! dir (with /metrics, /healthz and /readyz served), workers added as real
//! processes or as simulated workers in this process, an operator
//! connection, the coordinator's CPU and RSS from /proc, and kill, stop and
//! restart of the coordinator on the same data dir and port.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use recfleet_certs::TlsMaterial;
use recfleet_protocol::quic::{self, TransportSettings};
use recfleet_protocol::{
    ConsoleRequest, ConsoleResponse, RecordingDetail, RecordingId, RecordingInfo, RecordingState,
    WorkerState, LIST_MAX,
};
use tokio::process::{Child, Command};

use crate::pki::Pki;
use crate::procs::{proc_sample, workspace_bin, ProcSample};
use crate::sim::{self, SimFleet, SimOptions};
use crate::watch::Watch;

/// What a test fleet's coordinator admits on purpose
/// (`RECFLEET_ALLOW_INTERNAL`): loopback, where test pages are served, and
/// the namespace pairs of [`crate::netns`]. A test of the policy itself
/// sets its own in `coordinator_env`.
pub const TEST_ALLOW_INTERNAL: &str = "127.0.0.0/8,::1,localhost,10.231.0.0/16";

/// How a [`TestFleet`] starts.
#[derive(Debug, Clone)]
pub struct FleetOptions {
    /// The `recfleet-agent` binary (default: `$RECFLEET_AGENT_BIN` if set,
    /// else the one next to the running test, [`workspace_bin`]). The
    /// variable pins the binary under test when a target directory is
    /// shared and another build may replace the one next to the test.
    pub agent: PathBuf,
    /// Where everything lives (certificates, store, recordings, logs);
    /// `None`: a temporary directory, removed with the fleet unless a test
    /// panicked.
    pub dir: Option<PathBuf>,
    /// The coordinator listens on this address (0.0.0.0 to be reachable
    /// from a test's network namespace), on a free port.
    pub listen_ip: IpAddr,
    /// The coordinator's `--idle-timeout-ms` (`None`: its default).
    pub idle_timeout_ms: Option<u64>,
    /// `RECFLEET_LOG` of the processes.
    pub log_filter: String,
    /// Agent certificates `agent-w1` .. `agent-wN` issued up front (more
    /// are issued when a worker is added).
    pub agent_certs: u32,
    /// More environment variables for the coordinator.
    pub coordinator_env: Vec<(String, String)>,
    /// The coordinator makes recording.mp4 (off by default here: simulated
    /// workers store no media; tests of real recordings turn it on).
    pub stitch: bool,
    /// The coordinators' store: a PostgreSQL URL (`None`: SQLite in the
    /// data dir).
    pub store: Option<String>,
    /// The first coordinator's store URL when it differs from `store` (the
    /// same server through a [`crate::tcp_cut::CutProxy`], to cut it off).
    pub first_store: Option<String>,
    /// Coordinators besides the first (`c0`), on the same store: `c1`,
    /// `c2`, ... (needs `store`). Workers and requests are given them all.
    pub standbys: u32,
    /// The coordinators' lease TTL and renewal period, ms (`None`: their
    /// defaults).
    pub lease_ms: Option<(u64, u64)>,
    /// Each worker's ready slots (`--ready-slots`). None by default here:
    /// on two cores a waiting browser takes CPU from the recordings a test
    /// checks; the warm-pool tests turn it on (a worker's own
    /// `RECFLEET_READY_SLOTS` in its environment wins).
    pub ready_slots: u32,
}

impl Default for FleetOptions {
    fn default() -> Self {
        FleetOptions {
            agent: std::env::var_os("RECFLEET_AGENT_BIN")
                .map(PathBuf::from)
                .unwrap_or_else(|| workspace_bin("recfleet-agent")),
            dir: None,
            listen_ip: [127, 0, 0, 1].into(),
            idle_timeout_ms: None,
            log_filter: "info,recfleet_agent=debug".into(),
            agent_certs: 4,
            coordinator_env: Vec::new(),
            stitch: false,
            store: None,
            first_store: None,
            standbys: 0,
            lease_ms: None,
            ready_slots: 0,
        }
    }
}

#[derive(Debug)]
enum Dir {
    Temp(tempfile::TempDir),
    Given(PathBuf),
}

impl Dir {
    fn path(&self) -> &Path {
        match self {
            Dir::Temp(t) => t.path(),
            Dir::Given(p) => p,
        }
    }
}

/// A coordinator process, its workers, and the files they share.
#[derive(Debug)]
pub struct TestFleet {
    dir: Dir,
    /// The coordinator's QUIC address.
    pub addr: SocketAddr,
    /// The coordinator's HTTP address (/metrics, /healthz, /readyz).
    pub coordinator_http: SocketAddr,
    /// Each real worker's HTTP address.
    pub worker_http: HashMap<String, SocketAddr>,
    /// The fleet CA and its certificate files.
    pub pki: Arc<Pki>,
    opts: FleetOptions,
    coordinator: Option<Child>,
    /// The coordinators after the first: name, QUIC and HTTP addresses,
    /// process.
    others: Vec<OtherCoordinator>,
    workers: Vec<(String, Child)>,
    sims: Vec<SimFleet>,
    operator: Option<quinn::Connection>,
    endpoint: quinn::Endpoint,
}

/// A coordinator of several, besides the fleet's first.
#[derive(Debug)]
struct OtherCoordinator {
    name: String,
    addr: SocketAddr,
    http: SocketAddr,
    child: Option<Child>,
}

/// A free TCP port on loopback.
pub fn free_tcp() -> anyhow::Result<SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// A free UDP port on loopback.
pub fn free_udp() -> anyhow::Result<SocketAddr> {
    Ok(std::net::UdpSocket::bind("127.0.0.1:0")?.local_addr()?)
}

impl TestFleet {
    /// Certificates and a coordinator (not waited for: [`Self::request`]
    /// retries, [`Self::wait_ready`] waits); workers are added with
    /// [`Self::add_worker`] or [`Self::add_sim_workers`].
    pub async fn start() -> anyhow::Result<TestFleet> {
        Self::start_with(FleetOptions::default()).await
    }

    /// Like [`Self::start`], the coordinator listening on `ip`.
    pub async fn start_on(ip: IpAddr) -> anyhow::Result<TestFleet> {
        Self::start_with(FleetOptions {
            listen_ip: ip,
            ..Default::default()
        })
        .await
    }

    /// Like [`Self::start`] with options.
    pub async fn start_with(opts: FleetOptions) -> anyhow::Result<TestFleet> {
        let dir = match &opts.dir {
            Some(d) => {
                std::fs::create_dir_all(d)?;
                Dir::Given(d.clone())
            }
            None => Dir::Temp(tempfile::tempdir()?),
        };
        let pki = Pki::new(&dir.path().join("tls"))?;
        for i in 1..=opts.agent_certs {
            pki.agent_file(&format!("w{i}"))?;
        }
        for d in ["recordings", "logs"] {
            std::fs::create_dir_all(dir.path().join(d))?;
        }
        let addr: SocketAddr = (opts.listen_ip, free_udp()?.port()).into();
        let endpoint =
            quic::client_endpoint(&pki.material("operator")?, TransportSettings::default())?;
        let mut fleet = TestFleet {
            dir,
            addr,
            coordinator_http: free_tcp()?,
            worker_http: HashMap::new(),
            pki: Arc::new(pki),
            others: Vec::new(),
            opts,
            coordinator: None,
            workers: Vec::new(),
            sims: Vec::new(),
            operator: None,
            endpoint,
        };
        for i in 1..=fleet.opts.standbys {
            fleet.others.push(OtherCoordinator {
                name: format!("c{i}"),
                addr: (fleet.opts.listen_ip, free_udp()?.port()).into(),
                http: free_tcp()?,
                child: None,
            });
        }
        fleet.start_coordinator()?;
        for i in 0..fleet.others.len() {
            fleet.start_other(i)?;
        }
        Ok(fleet)
    }

    /// Every coordinator's address, the first's first, separated by commas
    /// (what workers and clients are given).
    pub fn coordinator_list(&self) -> String {
        std::iter::once(self.local_addr())
            .chain(self.others.iter().map(|o| loopback(o.addr)))
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The names of the coordinators: `c0` (the first), `c1`, ...
    pub fn coordinator_names(&self) -> Vec<String> {
        std::iter::once("c0".to_string())
            .chain(self.others.iter().map(|o| o.name.clone()))
            .collect()
    }

    /// A coordinator's HTTP address by name (`c0`, `c1`, ...).
    pub fn coordinator_http_of(&self, name: &str) -> Option<SocketAddr> {
        if name == "c0" {
            return Some(self.coordinator_http);
        }
        self.others.iter().find(|o| o.name == name).map(|o| o.http)
    }

    /// A coordinator's QUIC address by name.
    pub fn coordinator_addr_of(&self, name: &str) -> Option<SocketAddr> {
        if name == "c0" {
            return Some(self.local_addr());
        }
        self.others
            .iter()
            .find(|o| o.name == name)
            .map(|o| loopback(o.addr))
    }

    fn start_other(&mut self, i: usize) -> anyhow::Result<()> {
        let (name, addr, http) = {
            let o = &self.others[i];
            (o.name.clone(), o.addr, o.http)
        };
        let log = self.log(&format!("coordinator-{name}"))?;
        let child = self
            .coordinator_command_named(&name, addr, http)
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| format!("cannot run {}", self.opts.agent.display()))?;
        self.others[i].child = Some(child);
        Ok(())
    }

    /// Starts (or restarts) the coordinator `name` (`c0`, `c1`, ...).
    pub fn start_coordinator_named(&mut self, name: &str) -> anyhow::Result<()> {
        if name == "c0" {
            return self.start_coordinator();
        }
        let i = self
            .others
            .iter()
            .position(|o| o.name == name)
            .context("no such coordinator")?;
        self.start_other(i)
    }

    /// The pid of the coordinator `name`, while it runs.
    pub fn coordinator_pid_of(&self, name: &str) -> Option<u32> {
        if name == "c0" {
            return self.coordinator_pid();
        }
        self.others
            .iter()
            .find(|o| o.name == name)
            .and_then(|o| o.child.as_ref())
            .and_then(|c| c.id())
    }

    /// kill -9 of the coordinator `name` (waits for it to be gone).
    pub async fn kill_coordinator_named(&mut self, name: &str) {
        if name == "c0" {
            return self.kill_coordinator().await;
        }
        if let Some(o) = self.others.iter_mut().find(|o| o.name == name) {
            if let Some(mut c) = o.child.take() {
                let _ = c.kill().await;
            }
        }
        self.operator = None;
    }

    /// Waits until the coordinator answers a request.
    pub async fn wait_ready(&mut self) -> anyhow::Result<()> {
        match self.request(ConsoleRequest::WhoAmI).await? {
            ConsoleResponse::Identity { .. } => Ok(()),
            other => anyhow::bail!("coordinator: {other:?}"),
        }
    }

    /// Everything lives here (certificates, store, recordings, logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The certificate directory.
    pub fn tls(&self) -> PathBuf {
        self.pki.dir().to_path_buf()
    }

    /// TLS material of one of the fleet's identities (`operator`, `viewer`,
    /// `agent-w1`, ...).
    pub fn material(&self, stem: &str) -> anyhow::Result<TlsMaterial> {
        self.pki.material(stem)
    }

    /// The shared output directory of all workers.
    pub fn recordings(&self) -> PathBuf {
        self.dir().join("recordings")
    }

    /// The coordinator's data dir (store.db, lock).
    pub fn data_dir(&self) -> PathBuf {
        self.dir().join("coordinator")
    }

    /// The log file of a process (`coordinator`, `w1`, ...).
    pub fn log_path(&self, name: &str) -> PathBuf {
        self.dir().join("logs").join(format!("{name}.log"))
    }

    fn log(&self, name: &str) -> anyhow::Result<std::fs::File> {
        Ok(std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(name))?)
    }

    /// A coordinator command on this fleet's data dir and certificates,
    /// listening on `listen` and serving HTTP on `http` (stdio not set):
    /// what [`Self::start_coordinator`] runs, for tests that start another.
    pub fn coordinator_command(&self, listen: SocketAddr, http: SocketAddr) -> Command {
        self.coordinator_command_named("c0", listen, http)
    }

    fn coordinator_command_named(
        &self,
        name: &str,
        listen: SocketAddr,
        http: SocketAddr,
    ) -> Command {
        let tls = self.tls();
        let mut cmd = Command::new(&self.opts.agent);
        let data_dir = if name == "c0" {
            self.data_dir()
        } else {
            self.dir().join(format!("coordinator-{name}"))
        };
        cmd.arg("coordinator")
            .args(["--listen", &listen.to_string()])
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--ca")
            .arg(tls.join("ca.pem"))
            .arg("--cert")
            .arg(tls.join("coordinator.pem"))
            .arg("--key")
            .arg(tls.join("coordinator-key.pem"))
            .arg("--manifest-root")
            .arg(self.recordings())
            .args(["--metrics-addr", &http.to_string()])
            // A variable, not a flag: a coordinator of an older version
            // (benchmarks compare one) ignores it instead of refusing it.
            .env(
                "RECFLEET_STITCH",
                if self.opts.stitch { "true" } else { "false" },
            );
        if let Some(ms) = self.opts.idle_timeout_ms {
            cmd.args(["--idle-timeout-ms", &ms.to_string()]);
        }
        let store = match (name, &self.opts.first_store) {
            ("c0", Some(first)) => Some(first),
            _ => self.opts.store.as_ref(),
        };
        if let Some(url) = store {
            cmd.args(["--store", url, "--name", name])
                .args(["--advertise", &loopback(listen).to_string()]);
        }
        if let Some((ttl, renew)) = self.opts.lease_ms {
            cmd.args(["--lease-ttl-ms", &ttl.to_string()])
                .args(["--lease-renew-ms", &renew.to_string()]);
        }
        // Test pages live on loopback and on the test's own namespaces'
        // pairs (testkit::netns): admitted on purpose, as an operator
        // admits an internal class server.
        cmd.env("RECFLEET_ALLOW_INTERNAL", TEST_ALLOW_INTERNAL);
        // Every worker of a test shares this machine's two cores, so each
        // one's measured headroom is what the others' browsers leave at
        // that moment: placement by measured cost would make every test
        // depend on it. Test fleets count slots; the admission test (and
        // `coordinator_env`) turn measured admission on.
        cmd.env("RECFLEET_ADMISSION", "slots");
        cmd.env("RECFLEET_LOG", &self.opts.log_filter)
            .envs(self.opts.coordinator_env.iter().map(|(k, v)| (k, v)))
            .kill_on_drop(true);
        cmd
    }

    /// Starts (or restarts) the coordinator on the same data dir and port.
    pub fn start_coordinator(&mut self) -> anyhow::Result<()> {
        let log = self.log("coordinator")?;
        let child = self
            .coordinator_command(self.addr, self.coordinator_http)
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| format!("cannot run {}", self.opts.agent.display()))?;
        self.coordinator = Some(child);
        self.operator = None;
        Ok(())
    }

    /// kill -9 of the coordinator (waits for it to be gone).
    pub async fn kill_coordinator(&mut self) {
        if let Some(mut c) = self.coordinator.take() {
            let _ = c.kill().await;
        }
        self.operator = None;
    }

    /// SIGTERM to the coordinator; waits up to `secs` for it to exit
    /// (then kills it) and returns how it ended.
    pub async fn stop_coordinator(&mut self, secs: u64) -> anyhow::Result<ExitStatus> {
        self.operator = None;
        let mut c = self.coordinator.take().context("no coordinator running")?;
        if let Some(pid) = c.id() {
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            )?;
        }
        match tokio::time::timeout(Duration::from_secs(secs), c.wait()).await {
            Ok(status) => Ok(status?),
            Err(_) => {
                let _ = c.kill().await;
                anyhow::bail!("the coordinator did not stop within {secs} s of SIGTERM")
            }
        }
    }

    /// The coordinator's pid, while it runs.
    pub fn coordinator_pid(&self) -> Option<u32> {
        self.coordinator.as_ref().and_then(|c| c.id())
    }

    /// The coordinator's CPU time and resident memory now.
    pub fn coordinator_sample(&self) -> Option<ProcSample> {
        proc_sample(self.coordinator_pid()?)
    }

    /// Whether the coordinator has exited (and how), without waiting.
    pub fn coordinator_exited(&mut self) -> Option<ExitStatus> {
        self.coordinator.as_mut()?.try_wait().ok().flatten()
    }

    /// Starts worker `wN` with `capacity`; returns its pid.
    pub fn add_worker(&mut self, n: u32, capacity: u32) -> anyhow::Result<u32> {
        self.add_worker_at(n, capacity, &[], None)
    }

    /// Starts worker `wN` with extra environment variables.
    pub fn add_worker_with(
        &mut self,
        n: u32,
        capacity: u32,
        env: &[(&str, &str)],
    ) -> anyhow::Result<u32> {
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
    ) -> anyhow::Result<u32> {
        self.add_worker_at(n, capacity, &[], Some((netns, coordinator)))
    }

    /// [`Self::add_worker_in_netns`] with extra environment variables.
    pub fn add_worker_in_netns_with(
        &mut self,
        n: u32,
        capacity: u32,
        netns: &str,
        coordinator: SocketAddr,
        env: &[(&str, &str)],
    ) -> anyhow::Result<u32> {
        self.add_worker_at(n, capacity, env, Some((netns, coordinator)))
    }

    /// Starts (or restarts) the worker called `name`; returns its pid.
    pub fn add_worker_named(&mut self, name: &str, capacity: u32) -> anyhow::Result<u32> {
        self.spawn_worker(name.to_string(), capacity, &[], None)
    }

    fn add_worker_at(
        &mut self,
        n: u32,
        capacity: u32,
        env: &[(&str, &str)],
        netns: Option<(&str, SocketAddr)>,
    ) -> anyhow::Result<u32> {
        self.spawn_worker(format!("w{n}"), capacity, env, netns)
    }

    fn spawn_worker(
        &mut self,
        name: String,
        capacity: u32,
        env: &[(&str, &str)],
        netns: Option<(&str, SocketAddr)>,
    ) -> anyhow::Result<u32> {
        static STARTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        self.pki.agent_file(&name)?;
        let http = free_tcp()?;
        let tls = self.tls();
        let log = self.log(&name)?;
        let (mut cmd, coordinator) = match netns {
            None => (Command::new(&self.opts.agent), self.coordinator_list()),
            Some((ns, coordinator)) => {
                // `ip netns exec` execs the worker: the child's pid is the worker's.
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&self.opts.agent);
                (c, coordinator.to_string())
            }
        };
        let runtime = std::env::temp_dir().join(format!(
            "rf-{}-{name}-{}",
            self.addr.port(),
            STARTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let child = cmd
            .arg("worker")
            .args([
                "--coordinator",
                &coordinator,
                "--capacity",
                &capacity.to_string(),
            ])
            .arg("--ca")
            .arg(tls.join("ca.pem"))
            .arg("--cert")
            .arg(tls.join(format!("agent-{name}.pem")))
            .arg("--key")
            .arg(tls.join(format!("agent-{name}-key.pem")))
            // Each worker's own upload buffer; the destination is the
            // coordinator's (`recordings()`), as on separate machines.
            .arg("--out-dir")
            .arg(self.dir().join(format!("buffer-{name}")))
            .arg("--runtime-dir")
            .arg(runtime)
            .args(["--metrics-addr", &http.to_string()])
            .env("RECFLEET_READY_SLOTS", self.opts.ready_slots.to_string())
            .envs(env.iter().copied())
            .env("RECFLEET_LOG", &self.opts.log_filter)
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot run {}", self.opts.agent.display()))?;
        let pid = child.id().unwrap_or(0);
        self.worker_http.insert(name.clone(), http);
        self.workers.retain(|(n, _)| *n != name);
        self.workers.push((name, child));
        Ok(pid)
    }

    /// The pid of a worker process.
    pub fn worker_pid(&self, name: &str) -> Option<u32> {
        self.workers
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, c)| c.id())
    }

    /// Sends `signal` to a worker process.
    pub fn signal_worker(&self, name: &str, signal: nix::sys::signal::Signal) {
        if let Some(pid) = self.worker_pid(name) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal);
        }
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

    /// Waits for a worker process to exit; returns its exit code.
    pub async fn wait_worker_exit(&mut self, name: &str, secs: u64) -> Option<i32> {
        let (_, child) = self.workers.iter_mut().find(|(n, _)| n == name)?;
        let status = tokio::time::timeout(Duration::from_secs(secs), child.wait())
            .await
            .ok()?
            .ok()?;
        status.code()
    }

    /// Connects `n` simulated workers `<prefix>0` .. `<prefix>{n-1}` of
    /// `capacity` in this process (real QUIC, an agent certificate each);
    /// fails unless every one was welcomed. They stay connected as long as
    /// the fleet (see [`Self::sims`]).
    pub async fn add_sim_workers(
        &mut self,
        prefix: &str,
        n: usize,
        capacity: u32,
    ) -> anyhow::Result<&SimFleet> {
        let names: Vec<String> = (0..n).map(|i| format!("{prefix}{i}")).collect();
        let configs = sim::client_configs(&self.pki, &names).await?;
        let opts = SimOptions {
            capacity,
            ..Default::default()
        };
        let sims = SimFleet::connect(self.local_addr(), configs, &opts).await?;
        anyhow::ensure!(
            sims.connected() == n,
            "{} of {n} simulated workers connected: {}",
            sims.connected(),
            sims.first_error.as_deref().unwrap_or("?")
        );
        self.sims.push(sims);
        Ok(self.sims.last().expect("just pushed"))
    }

    /// The simulated workers added so far, one [`SimFleet`] per call.
    pub fn sims(&self) -> &[SimFleet] {
        &self.sims
    }

    /// Where clients on this host reach the coordinator.
    pub fn local_addr(&self) -> SocketAddr {
        loopback(self.addr)
    }

    /// A new operator connection of its own (e.g. for a load generator;
    /// requests on it with [`quic::request`]).
    pub async fn connect_operator(&self) -> anyhow::Result<quinn::Connection> {
        Ok(quic::connect(
            &self.endpoint,
            self.local_addr(),
            "localhost",
            Duration::from_secs(5),
        )
        .await?)
    }

    /// A new connection as another of the fleet's identities (`viewer`, ...).
    pub async fn connect_as(&self, stem: &str) -> anyhow::Result<quinn::Connection> {
        let endpoint = quic::client_endpoint(&self.material(stem)?, TransportSettings::default())?;
        Ok(quic::connect(
            &endpoint,
            self.local_addr(),
            "localhost",
            Duration::from_secs(5),
        )
        .await?)
    }

    /// Opens an event subscription as the operator.
    pub async fn subscribe(&mut self) -> anyhow::Result<quinn::RecvStream> {
        let conn = self.connect_operator().await?;
        subscribe_on(conn).await
    }

    /// Opens an event subscription as `stem` (`viewer`, `operator`).
    pub async fn subscribe_as(&self, stem: &str) -> anyhow::Result<quinn::RecvStream> {
        let conn = self.connect_as(stem).await?;
        subscribe_on(conn).await
    }

    /// A subscription as `stem` (`viewer`, `operator`) read in the background.
    pub async fn watch(&self, stem: &str) -> anyhow::Result<Watch> {
        Ok(Watch::start(self.subscribe_as(stem).await?))
    }

    /// Every recording in `states` (all if empty), oldest first, read page
    /// by page (`ListRecordingsPage`, the largest pages).
    pub async fn recordings_paged(
        &mut self,
        states: &[RecordingState],
    ) -> anyhow::Result<Vec<RecordingInfo>> {
        let mut all = Vec::new();
        let mut after = None;
        loop {
            let req = ConsoleRequest::ListRecordingsPage {
                states: states.to_vec(),
                limit: LIST_MAX,
                after: after.take(),
            };
            match self.request(req).await? {
                ConsoleResponse::RecordingsPage { recordings, next } => {
                    all.extend(recordings);
                    match next {
                        Some(n) => after = Some(n),
                        None => return Ok(all),
                    }
                }
                other => anyhow::bail!("ListRecordingsPage: {other:?}"),
            }
        }
    }

    /// Sends one request as the operator (connecting, and reconnecting after
    /// a coordinator restart, as needed).
    pub async fn request(&mut self, req: ConsoleRequest) -> anyhow::Result<ConsoleResponse> {
        let mut redirect = recfleet_client::connect::Redirect::default();
        let mut at = None;
        for _ in 0..50 {
            if self.operator.is_none() {
                let connected = recfleet_client::connect::connect_any(
                    &self.endpoint,
                    &std::mem::take(&mut redirect),
                    &recfleet_client::connect::addresses(&self.coordinator_list()),
                    "localhost",
                    Duration::from_secs(2),
                )
                .await
                .ok();
                at = connected.as_ref().map(|c| c.addr);
                self.operator = connected.map(|c| c.connection);
            }
            if let Some(conn) = &self.operator {
                match recfleet_client::request_on(conn, req.clone(), Duration::from_secs(10)).await
                {
                    Ok(r) => return Ok(r),
                    // A standby: to the leader it names (or, while none is
                    // known, to whichever answers next).
                    Err(recfleet_client::ClientError::Wire(e))
                        if e.code == recfleet_protocol::ErrorCode::NotLeader =>
                    {
                        redirect = recfleet_client::connect::Redirect {
                            leader: e.leader().map(str::to_string),
                            avoid: at.filter(|_| e.leader().is_none()),
                        };
                        self.operator = None;
                    }
                    // An error answer is the test's to look at.
                    Err(recfleet_client::ClientError::Wire(e)) => {
                        return Ok(ConsoleResponse::Error(e))
                    }
                    Err(_) => self.operator = None,
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        anyhow::bail!(
            "the coordinator did not answer; logs in {}",
            self.dir().display()
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
                self.dir().display()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits up to `secs` until worker `name` reports `n` ready slots in
    /// its warm pool; returns its info then.
    pub async fn wait_ready_slots(
        &mut self,
        name: &str,
        n: u32,
        secs: u64,
    ) -> anyhow::Result<recfleet_protocol::WorkerInfo> {
        let until = Instant::now() + Duration::from_secs(secs);
        loop {
            if let ConsoleResponse::Workers(list) =
                self.request(ConsoleRequest::ListWorkers).await?
            {
                if let Some(w) = list
                    .into_iter()
                    .find(|w| w.name.as_str() == name && w.ready.ready >= n)
                {
                    return Ok(w);
                }
            }
            anyhow::ensure!(
                Instant::now() < until,
                "{name} had not {n} ready slots within {secs} s; logs in {}",
                self.dir().display()
            );
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

    /// Waits until the recording satisfies `pred` (polled every 250 ms).
    pub async fn wait_for(
        &mut self,
        id: &RecordingId,
        secs: u64,
        pred: impl Fn(&RecordingDetail) -> bool,
    ) -> anyhow::Result<RecordingDetail> {
        self.wait_for_polling(id, secs, Duration::from_millis(250), pred)
            .await
    }

    /// Waits until the recording satisfies `pred`, polled every `poll`.
    pub async fn wait_for_polling(
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
                self.dir().display()
            );
            tokio::time::sleep(poll).await;
        }
    }

    /// Stops everything: simulated workers disconnect, processes are killed
    /// (SIGKILL; the workers' guards sweep their slots).
    pub async fn shutdown(mut self) {
        for s in &mut self.sims {
            s.close();
        }
        for (_, w) in &mut self.workers {
            let _ = w.kill().await;
        }
        self.kill_coordinator().await;
        for o in &mut self.others {
            if let Some(mut c) = o.child.take() {
                let _ = c.kill().await;
            }
        }
        self.endpoint.close(0u32.into(), b"done");
    }
}

/// `addr` as reached from this host (an unspecified IP is loopback).
fn loopback(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        ([127, 0, 0, 1], addr.port()).into()
    } else {
        addr
    }
}

/// Opens an event subscription on `conn`; the connection lives as long as
/// the stream is read.
pub async fn subscribe_on(conn: quinn::Connection) -> anyhow::Result<quinn::RecvStream> {
    let (send, recv) = recfleet_client::subscription::open(&conn).await?;
    // Keep the connection (and our side of the stream) open as long as the
    // test runs: a task holds them.
    tokio::spawn(async move {
        let _conn = conn;
        let _send = send;
        std::future::pending::<()>().await;
    });
    Ok(recv)
}

impl Drop for TestFleet {
    /// A failed test shows the coordinator's last warnings and keeps its
    /// fleet's temporary directory (logs, store, segments).
    fn drop(&mut self) {
        // RECFLEET_TEST_KEEP=1 keeps a passing test's fleet too, to compare.
        let keep = std::env::var_os("RECFLEET_TEST_KEEP").is_some_and(|v| v == "1");
        if std::thread::panicking() || keep {
            let log = std::fs::read_to_string(self.log_path("coordinator")).unwrap_or_default();
            let lines: Vec<&str> = log
                .lines()
                .filter(|l| l.contains("WARN") || l.contains("ERROR"))
                .collect();
            let tail = &lines[lines.len().saturating_sub(30)..];
            eprintln!(
                "--- the coordinator's last warnings and errors ---\n{}",
                tail.join("\n")
            );
            if let Dir::Temp(t) = &mut self.dir {
                let path = t.path().to_path_buf();
                t.disable_cleanup(true);
                eprintln!("test fleet kept for inspection: {}", path.display());
            }
        }
    }
}
