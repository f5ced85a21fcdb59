//! The coordinator: registry of workers, durable store, scheduler, failover
//! and the event stream, behind one QUIC endpoint.

pub mod cmd;
pub mod database;
pub mod driver;
pub mod fleet;
mod ha;
pub mod lease;
mod lock;
pub mod metrics;
pub mod outputs;
pub mod server;
pub mod store;
pub mod webhook;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use recfleet_certs::TlsMaterial;
use recfleet_protocol::egress::UrlPolicy;
use recfleet_protocol::quic::{self, TransportSettings};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use self::cmd::{Cmd, FleetTx};

use crate::exit::Failure;
use crate::settings::{self, Overrides};

/// How the scheduler decides that a worker takes one more recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum AdmissionMode {
    /// Within its slots and its measured CPU and memory headroom.
    Measured,
    /// Within its slots only.
    Slots,
}

/// Settings of `recfleet-agent coordinator` (TOML keys as field names).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CoordinatorSettings {
    /// UDP address of the QUIC endpoint.
    pub listen: SocketAddr,
    /// Holds `store.db`.
    pub data_dir: PathBuf,
    /// The fleet CA certificate (default `<data_dir>/tls/ca.pem`).
    pub ca: Option<PathBuf>,
    /// This coordinator's certificate (default `<data_dir>/tls/coordinator.pem`).
    pub cert: Option<PathBuf>,
    /// Its key (default `<data_dir>/tls/coordinator-key.pem`).
    pub key: Option<PathBuf>,
    /// Where recordings go unless their request says otherwise:
    /// `file:///DIR` or `s3://BUCKET/PREFIX` (default:
    /// `file://<data_dir>/recordings`, or `manifest_root` if set).
    pub output: Option<String>,
    /// Older name of a `file://` output: a directory every worker and the
    /// coordinator reach.
    pub manifest_root: Option<PathBuf>,
    /// Destinations a request may name besides `output` (URL prefixes).
    pub allowed_outputs: Vec<String>,
    /// Make `recording.mp4` when a recording ends (ffmpeg on the
    /// coordinator); false: only `index.m3u8` and the manifest.
    pub stitch: bool,
    /// If not empty, the only hosts browsers may be sent to (`*.suffix` allowed).
    pub allowed_hosts: Vec<String>,
    /// Allow link-local addresses as recording URLs.
    pub allow_link_local: bool,
    /// Internal destinations pages may reach on purpose (refused by
    /// default: loopback, private ranges, link-local, cluster names): host
    /// names (`*.suffix` allowed) and address ranges (`10.1.0.0/16`).
    pub allow_internal: Vec<String>,
    /// The coordinator's own QUIC keep-alive period, ms; 0 (the default):
    /// none, its peers' keep-alives keep connections alive.
    pub keep_alive_ms: u64,
    /// A connection silent this long is dead, ms: how fast a vanished
    /// worker is noticed.
    pub idle_timeout_ms: u64,
    /// After a restart, how long workers have to come back, ms.
    pub reconnect_grace_ms: u64,
    /// HTTP address of /metrics, /healthz and /readyz (none: not served).
    pub metrics_addr: Option<SocketAddr>,
    /// Finished recordings leave memory and snapshots after this many
    /// seconds; they stay readable from the store.
    pub retention_secs: u64,
    /// A request forwarded to a worker (PingWorker) is answered with an
    /// error after this many ms.
    pub forward_deadline_ms: u64,
    /// Bytes of encoded replies held for all clients at once (those that do
    /// not read their answers included); beyond it a request is answered
    /// with a short `unavailable` error instead.
    pub reply_budget_bytes: usize,
    /// The same, for one connection.
    pub connection_reply_budget_bytes: usize,
    /// Admission: `measured` places recordings within each worker's
    /// measured CPU and memory headroom (and its slots); `slots` counts
    /// slots only.
    pub admission: AdmissionMode,
    /// What a recording is expected to cost before the fleet measured one,
    /// thousandths of a core.
    pub admission_estimate_millicores: u32,
    /// The share of a worker's CPU its recordings may fill, percent.
    pub admission_target_percent: u32,
    /// Where recording events are POSTed (signed; see docs/operations.md).
    /// Each must pass the URL policy that recordings pass.
    pub webhook_urls: Vec<String>,
    /// A file that holds the webhook signing secret (else the variable
    /// `RECFLEET_WEBHOOK_SECRET`; the secret itself is never a setting).
    pub webhook_secret_file: Option<PathBuf>,
    /// A delivery is retried this many seconds after its event, then failed.
    pub webhook_retry_secs: u64,
    /// The first retry's delay, ms; doubled at each attempt after.
    pub webhook_backoff_base_ms: u64,
    /// The longest delay between two attempts, seconds.
    pub webhook_backoff_cap_secs: u64,
    /// Webhook attempts in flight at once, at most.
    pub webhook_in_flight: usize,
    /// One attempt's deadline, ms.
    pub webhook_timeout_ms: u64,
    /// The store: none for SQLite in `data_dir` (one coordinator), or a
    /// PostgreSQL URL (`postgres://USER:PASSWORD@HOST/DB?sslmode=...`) that
    /// several coordinators share, one leading.
    pub store: Option<String>,
    /// This coordinator's name among several (default: the host name).
    pub name: Option<String>,
    /// Where workers and consoles reach this coordinator (`host:port`), as
    /// standbys tell them (default: the listen address, or the host name
    /// and its port when listening on every address).
    pub advertise: Option<String>,
    /// How long a leader's lease lasts after each renewal, ms.
    pub lease_ttl_ms: u64,
    /// How often the leader renews its lease (and a standby tries to take
    /// it), ms.
    pub lease_renew_ms: u64,
    /// CA certificates (PEM) that signed PostgreSQL's certificate, for
    /// `sslmode=require` (default: the system's roots).
    pub store_ca: Option<PathBuf>,
    /// Media health defaults for recordings whose request leaves them out:
    /// silent after this many seconds below -50 dBFS.
    pub health_silent_secs: u32,
    /// Frozen after this many seconds without a changed picture.
    pub health_frozen_secs: u32,
    /// Black after this many seconds of black picture.
    pub health_black_secs: u32,
    /// Restart a slot whose page crashed.
    pub health_restart_crashed: bool,
    /// Restart a slot frozen this many seconds (0: never).
    pub health_restart_frozen_secs: u32,
    /// Restart a slot black this many seconds (0: never).
    pub health_restart_black_secs: u32,
}

impl CoordinatorSettings {
    /// The media health defaults.
    pub fn health(&self) -> recfleet_protocol::HealthPolicy {
        let never = |s: u32| (s > 0).then_some(s);
        recfleet_protocol::HealthPolicy {
            silent_secs: self.health_silent_secs,
            frozen_secs: self.health_frozen_secs,
            black_secs: self.health_black_secs,
            restart_crashed: self.health_restart_crashed,
            restart_frozen_secs: never(self.health_restart_frozen_secs),
            restart_black_secs: never(self.health_restart_black_secs),
        }
    }
}

impl Default for CoordinatorSettings {
    fn default() -> Self {
        CoordinatorSettings {
            listen: ([127, 0, 0, 1], 7800).into(),
            data_dir: PathBuf::from("/var/lib/recfleet"),
            ca: None,
            cert: None,
            key: None,
            output: None,
            manifest_root: None,
            allowed_outputs: Vec::new(),
            stitch: true,
            allowed_hosts: Vec::new(),
            allow_link_local: false,
            allow_internal: Vec::new(),
            // Workers and consoles send keep-alives (500 ms) and the
            // coordinator acknowledges them: its own would double the
            // packets of every connection for nothing (measured: the cost
            // that decides how many workers one coordinator holds).
            keep_alive_ms: 0,
            idle_timeout_ms: 2000,
            reconnect_grace_ms: 5000,
            metrics_addr: None,
            retention_secs: 24 * 3600,
            forward_deadline_ms: 5000,
            reply_budget_bytes: 64 << 20,
            connection_reply_budget_bytes: 8 << 20,
            admission: AdmissionMode::Measured,
            admission_estimate_millicores: fleet::admission::AdmissionConfig::default()
                .default_estimate_millicores,
            admission_target_percent: 90,
            webhook_urls: Vec::new(),
            webhook_secret_file: None,
            webhook_retry_secs: 24 * 3600,
            webhook_backoff_base_ms: 1000,
            webhook_backoff_cap_secs: 600,
            webhook_in_flight: 16,
            webhook_timeout_ms: 10_000,
            store: None,
            name: None,
            advertise: None,
            lease_ttl_ms: 3000,
            lease_renew_ms: 1000,
            store_ca: None,
            health_silent_secs: 10,
            health_frozen_secs: 10,
            health_black_secs: 5,
            health_restart_crashed: true,
            health_restart_frozen_secs: 30,
            health_restart_black_secs: 0,
        }
    }
}

impl CoordinatorSettings {
    /// The default destination of recordings.
    pub fn destination(&self) -> String {
        if let Some(o) = &self.output {
            return o.trim_end_matches('/').to_string();
        }
        let dir = self
            .manifest_root
            .clone()
            .unwrap_or_else(|| self.data_dir.join("recordings"));
        let dir = std::path::absolute(&dir).unwrap_or(dir);
        format!("file://{}", dir.display())
    }

    fn tls_paths(&self) -> (PathBuf, PathBuf, PathBuf) {
        let tls = self.data_dir.join("tls");
        (
            self.ca.clone().unwrap_or_else(|| tls.join("ca.pem")),
            self.cert
                .clone()
                .unwrap_or_else(|| tls.join("coordinator.pem")),
            self.key
                .clone()
                .unwrap_or_else(|| tls.join("coordinator-key.pem")),
        )
    }
}

/// Command-line flags of `coordinator` (each also an environment variable).
#[derive(Debug, clap::Args)]
pub struct CoordinatorArgs {
    /// TOML configuration file.
    #[arg(long, env = "RECFLEET_CONFIG")]
    pub config: Option<PathBuf>,
    /// UDP address to listen on.
    #[arg(long, env = "RECFLEET_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Data directory (store.db, tls/).
    #[arg(long, env = "RECFLEET_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Fleet CA certificate.
    #[arg(long, env = "RECFLEET_CA")]
    pub ca: Option<PathBuf>,
    /// Coordinator certificate.
    #[arg(long, env = "RECFLEET_CERT")]
    pub cert: Option<PathBuf>,
    /// Coordinator key.
    #[arg(long, env = "RECFLEET_KEY")]
    pub key: Option<PathBuf>,
    /// Where recordings go: file:///DIR or s3://BUCKET/PREFIX (S3
    /// credentials and endpoint from the AWS_* variables or ~/.aws).
    #[arg(long, env = "RECFLEET_OUTPUT")]
    pub output: Option<String>,
    /// Older form of `--output file:///DIR`.
    #[arg(long, env = "RECFLEET_MANIFEST_ROOT")]
    pub manifest_root: Option<PathBuf>,
    /// Destinations a recording request may name besides --output
    /// (prefixes, repeatable).
    #[arg(
        long = "allowed-output",
        env = "RECFLEET_ALLOWED_OUTPUTS",
        value_delimiter = ','
    )]
    pub allowed_outputs: Option<Vec<String>>,
    /// Make recording.mp4 at the end of each recording (true/false).
    #[arg(long, env = "RECFLEET_STITCH")]
    pub stitch: Option<bool>,
    /// Only these hosts may be recorded (repeatable; `*.example.com` allowed).
    #[arg(
        long = "allowed-host",
        env = "RECFLEET_ALLOWED_HOSTS",
        value_delimiter = ','
    )]
    pub allowed_hosts: Option<Vec<String>>,
    /// Internal hosts or ranges pages may reach on purpose (repeatable;
    /// `class.corp.example`, `*.corp.example`, `10.1.0.0/16`).
    #[arg(
        long = "allow-internal",
        env = "RECFLEET_ALLOW_INTERNAL",
        value_delimiter = ','
    )]
    pub allow_internal: Option<Vec<String>>,
    /// QUIC idle timeout in ms (how fast a dead worker is noticed).
    #[arg(long, env = "RECFLEET_IDLE_TIMEOUT_MS")]
    pub idle_timeout_ms: Option<u64>,
    /// HTTP address for /metrics, /healthz and /readyz.
    #[arg(long, env = "RECFLEET_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// Seconds a finished recording stays in memory and in snapshots (it
    /// stays in the store for good).
    #[arg(long, env = "RECFLEET_RETENTION_SECS")]
    pub retention_secs: Option<u64>,
    /// Admission: measured (CPU and memory headroom) or slots.
    #[arg(long, env = "RECFLEET_ADMISSION")]
    pub admission: Option<AdmissionMode>,
    /// A recording's expected cost before one was measured, millicores.
    #[arg(long, env = "RECFLEET_ADMISSION_ESTIMATE_MILLICORES")]
    pub admission_estimate_millicores: Option<u32>,
    /// The share of a worker's CPU recordings may fill, percent.
    #[arg(long, env = "RECFLEET_ADMISSION_TARGET_PERCENT")]
    pub admission_target_percent: Option<u32>,
    /// POST recording events here (repeatable; signed with the secret of
    /// RECFLEET_WEBHOOK_SECRET or --webhook-secret-file).
    #[arg(
        long = "webhook-url",
        env = "RECFLEET_WEBHOOK_URLS",
        value_delimiter = ','
    )]
    pub webhook_urls: Option<Vec<String>>,
    /// A file that holds the webhook signing secret.
    #[arg(long, env = "RECFLEET_WEBHOOK_SECRET_FILE")]
    pub webhook_secret_file: Option<PathBuf>,
    /// Seconds a webhook delivery is retried before it fails.
    #[arg(long, env = "RECFLEET_WEBHOOK_RETRY_SECS")]
    pub webhook_retry_secs: Option<u64>,
    /// Delay before the first webhook retry, ms (doubled each attempt).
    #[arg(long, env = "RECFLEET_WEBHOOK_BACKOFF_BASE_MS")]
    pub webhook_backoff_base_ms: Option<u64>,
    /// The store: a PostgreSQL URL shared by several coordinators (one
    /// leads), e.g. postgres://recfleet@db/recfleet?sslmode=require;
    /// none: SQLite in the data dir.
    #[arg(long, env = "RECFLEET_STORE")]
    pub store: Option<String>,
    /// This coordinator's name among several (default: the host name).
    #[arg(long, env = "RECFLEET_NAME")]
    pub name: Option<String>,
    /// host:port where workers and consoles reach this coordinator.
    #[arg(long, env = "RECFLEET_ADVERTISE")]
    pub advertise: Option<String>,
    /// Leader lease TTL, ms.
    #[arg(long, env = "RECFLEET_LEASE_TTL_MS")]
    pub lease_ttl_ms: Option<u64>,
    /// Leader lease renewal period, ms.
    #[arg(long, env = "RECFLEET_LEASE_RENEW_MS")]
    pub lease_renew_ms: Option<u64>,
    /// CA certificates (PEM) of PostgreSQL's server certificate.
    #[arg(long, env = "RECFLEET_STORE_CA")]
    pub store_ca: Option<PathBuf>,
    /// Media health default: silent after this many seconds (a request may
    /// say otherwise).
    #[arg(long, env = "RECFLEET_HEALTH_SILENT_SECS")]
    pub health_silent_secs: Option<u32>,
    /// Media health default: frozen after this many seconds.
    #[arg(long, env = "RECFLEET_HEALTH_FROZEN_SECS")]
    pub health_frozen_secs: Option<u32>,
    /// Media health default: black after this many seconds.
    #[arg(long, env = "RECFLEET_HEALTH_BLACK_SECS")]
    pub health_black_secs: Option<u32>,
    /// Restart a slot whose page crashed (true/false).
    #[arg(long, env = "RECFLEET_HEALTH_RESTART_CRASHED")]
    pub health_restart_crashed: Option<bool>,
    /// Restart a slot frozen this many seconds (0: never).
    #[arg(long, env = "RECFLEET_HEALTH_RESTART_FROZEN_SECS")]
    pub health_restart_frozen_secs: Option<u32>,
    /// Restart a slot black this many seconds (0: never).
    #[arg(long, env = "RECFLEET_HEALTH_RESTART_BLACK_SECS")]
    pub health_restart_black_secs: Option<u32>,
    /// Print the effective configuration and exit.
    #[arg(long)]
    pub print_config: bool,
}

impl CoordinatorArgs {
    /// The effective settings.
    pub fn settings(&self) -> Result<CoordinatorSettings, Failure> {
        let mut o = Overrides::default();
        o.set("listen", self.listen.map(|a| a.to_string()));
        o.set("data_dir", self.data_dir.clone());
        o.set("ca", self.ca.clone());
        o.set("cert", self.cert.clone());
        o.set("key", self.key.clone());
        o.set("output", self.output.clone());
        o.set("manifest_root", self.manifest_root.clone());
        o.set("stitch", self.stitch);
        o.set("allowed_outputs", self.allowed_outputs.clone());
        o.set("allowed_hosts", self.allowed_hosts.clone());
        o.set("allow_internal", self.allow_internal.clone());
        o.set("idle_timeout_ms", self.idle_timeout_ms);
        o.set("metrics_addr", self.metrics_addr.map(|a| a.to_string()));
        o.set("retention_secs", self.retention_secs);
        o.set("admission", self.admission);
        o.set(
            "admission_estimate_millicores",
            self.admission_estimate_millicores,
        );
        o.set("admission_target_percent", self.admission_target_percent);
        o.set("webhook_urls", self.webhook_urls.clone());
        o.set("webhook_secret_file", self.webhook_secret_file.clone());
        o.set("webhook_retry_secs", self.webhook_retry_secs);
        o.set("webhook_backoff_base_ms", self.webhook_backoff_base_ms);
        o.set("store", self.store.clone());
        o.set("name", self.name.clone());
        o.set("advertise", self.advertise.clone());
        o.set("lease_ttl_ms", self.lease_ttl_ms);
        o.set("lease_renew_ms", self.lease_renew_ms);
        o.set("store_ca", self.store_ca.clone());
        o.set("health_silent_secs", self.health_silent_secs);
        o.set("health_frozen_secs", self.health_frozen_secs);
        o.set("health_black_secs", self.health_black_secs);
        o.set("health_restart_crashed", self.health_restart_crashed);
        o.set(
            "health_restart_frozen_secs",
            self.health_restart_frozen_secs,
        );
        o.set("health_restart_black_secs", self.health_restart_black_secs);
        settings::load(self.config.as_deref(), o)
    }
}

/// What the coordinator answers to probes: not ready (and why) until the
/// store is open and the endpoint listens, and while the store refuses writes.
#[derive(Debug)]
struct CoordinatorProbe {
    state: std::sync::Mutex<Result<FleetTx, String>>,
    /// The lease's status, when this coordinator is one of several.
    ha: std::sync::Mutex<Option<std::sync::Arc<ha::HaStatus>>>,
}

/// SIGTERM to exit, at most (systemd's and Kubernetes' default grace is
/// longer).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// A probe that the driver does not answer within this says so.
const PROBE_DEADLINE: Duration = Duration::from_secs(2);

impl CoordinatorProbe {
    fn set(&self, s: Result<FleetTx, String>) {
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = s;
    }
    fn fleet(&self) -> Result<FleetTx, String> {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
    fn set_ha(&self, status: std::sync::Arc<ha::HaStatus>) {
        *self.ha.lock().unwrap_or_else(|e| e.into_inner()) = Some(status);
    }
}

/// Asks the driver something, within the probe's deadline.
async fn ask<T>(tx: &FleetTx, cmd: impl FnOnce(oneshot::Sender<T>) -> Cmd) -> Result<T, String> {
    let (reply, rx) = oneshot::channel();
    tokio::time::timeout(PROBE_DEADLINE, async {
        tx.send(cmd(reply))
            .await
            .map_err(|_| "shutting down".to_string())?;
        rx.await.map_err(|_| "shutting down".to_string())
    })
    .await
    .map_err(|_| format!("the fleet did not answer within {PROBE_DEADLINE:?}"))?
}

impl crate::health::Probe for CoordinatorProbe {
    fn ready(
        &self,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send + '_>> {
        Box::pin(async move {
            let tx = self.fleet()?;
            ask(&tx, |reply| Cmd::Ready { reply }).await?
        })
    }
    fn metrics(
        &self,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<String>> + Send + '_>> {
        Box::pin(async move {
            let fleet = match self.fleet() {
                Ok(tx) => ask(&tx, |reply| Cmd::Metrics { reply }).await.ok(),
                Err(_) => None,
            };
            let ha = self
                .ha
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
                .map(|h| h.encode());
            match (fleet, ha) {
                (Some(f), Some(h)) => Some(format!("{}{h}# EOF\n", f.trim_end_matches("# EOF\n"))),
                (None, Some(h)) => Some(format!("{h}# EOF\n")),
                (f, None) => f,
            }
        })
    }
}

/// Runs `recfleet-agent coordinator` until SIGTERM/SIGINT.
pub async fn main(args: CoordinatorArgs) -> Result<(), Failure> {
    let settings = args.settings()?;
    if args.print_config {
        let mut shown = settings.clone();
        shown.store = shown.store.as_deref().map(store::redact_url);
        return settings::print(&shown);
    }
    std::fs::create_dir_all(&settings.data_dir).map_err(|e| {
        Failure::unavailable(format!(
            "cannot create the data dir {}: {e}",
            settings.data_dir.display()
        ))
    })?;
    // One owner of the store: a second coordinator on this data dir would
    // diverge from the first.
    let _lock = lock::DataDirLock::take(&settings.data_dir).map_err(Failure::unavailable)?;
    let probe = std::sync::Arc::new(CoordinatorProbe {
        state: std::sync::Mutex::new(Err("starting".into())),
        ha: std::sync::Mutex::new(None),
    });
    if let Some(addr) = settings.metrics_addr {
        crate::health::serve(addr, probe.clone())
            .await
            .map_err(|e| Failure::unavailable(format!("cannot serve metrics on {addr}: {e}")))?;
    }
    if let Some(url) = settings.store.clone() {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(Failure::invalid(format!(
                "--store {}: only postgres:// URLs are stores of their own (the default is SQLite in the data dir)",
                store::redact_url(&url)
            )));
        }
        let target = database::DbTarget {
            url,
            ca: settings.store_ca.clone(),
        };
        return ha::run(settings, target, probe).await;
    }
    // The store may be briefly unavailable (a volume not mounted yet): keep
    // trying, and say why in /readyz meanwhile.
    let store_path = settings.data_dir.join("store.db");
    let store = loop {
        let opened = std::fs::create_dir_all(&settings.data_dir)
            .map_err(|e| format!("cannot create {}: {e}", settings.data_dir.display()))
            .and_then(|_| store::Store::open(&store_path).map_err(|e| e.to_string()));
        match opened {
            Ok(store) => break store,
            Err(why) => {
                tracing::error!(error = %why, "store unavailable; retrying in 2 s");
                probe.set(Err(format!("store: {why}")));
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                    _ = crate::signals::wait_for_termination() => return Err(Failure::unavailable(format!("store: {why}"))),
                }
            }
        }
    };
    let shutdown = CancellationToken::new();
    let running = start(settings, store, shutdown.clone(), None).await?;
    probe.set(Ok(running.fleet.clone()));
    tracing::info!(addr = %running.addr, "coordinator ready");
    crate::health::notify_ready();
    crate::signals::wait_for_termination().await;
    tracing::info!("shutting down");
    probe.set(Err("shutting down".into()));
    shutdown.cancel();
    // The driver commits what is queued and answers who waits; a grace
    // bounds it so that a stuck disk cannot hold the process past its
    // supervisor's timeout.
    if tokio::time::timeout(SHUTDOWN_GRACE, running.stopped())
        .await
        .is_err()
    {
        tracing::error!(grace = ?SHUTDOWN_GRACE, "the fleet did not stop within its grace; exiting anyway");
    }
    Ok(())
}

/// A started coordinator.
#[derive(Debug)]
pub struct Running {
    /// The bound address.
    pub addr: SocketAddr,
    /// Send commands to the fleet (readiness probes).
    pub fleet: FleetTx,
    server: tokio::task::JoinHandle<()>,
    driver: std::thread::JoinHandle<()>,
    writer: tokio::task::JoinHandle<()>,
    webhooks: Option<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Waits until the server and the fleet driver have stopped (the
    /// driver commits what was queued first).
    pub async fn stopped(self) {
        let Running {
            fleet,
            server,
            driver,
            writer,
            webhooks,
            ..
        } = self;
        drop(fleet);
        let _ = server.await;
        let _ = writer.await;
        if let Some(w) = webhooks {
            let _ = w.await;
        }
        let _ = tokio::task::spawn_blocking(move || driver.join()).await;
    }
}

/// What a leader of several coordinators passes to [`start`].
#[derive(Debug, Clone)]
pub struct Leading {
    /// The term the database issued.
    pub term: lease::Term,
    /// Cancelled by the driver when a write finds another term leading.
    pub deposed: CancellationToken,
    /// The endpoint the standby served on: the leader goes on with it
    /// (binding the port again would wait for the old socket to close).
    pub endpoint: Option<quinn::Endpoint>,
}

/// Binds the endpoint and starts serving with an open store; `leading`:
/// this coordinator leads several on PostgreSQL.
pub async fn start(
    settings: CoordinatorSettings,
    store: store::Store,
    shutdown: CancellationToken,
    leading: Option<Leading>,
) -> Result<Running, Failure> {
    let (ca, cert, key) = settings.tls_paths();
    let tls =
        TlsMaterial::load(&ca, &cert, &key).map_err(|e| Failure::invalid(format!("tls: {e}")))?;
    // Clients accept only a coordinator certificate as the fleet's server:
    // say so now rather than have every worker and console refuse it.
    let me = tls
        .identity()
        .map_err(|e| Failure::invalid(format!("tls: {}: {e}", cert.display())))?;
    if me.role() != recfleet_certs::Role::Coordinator {
        return Err(Failure::invalid(format!(
            "{} is a {} certificate ({me}); a coordinator needs a coordinator certificate \
             (recfleet-certs issue --role coordinator)",
            cert.display(),
            me.role()
        )));
    }
    let url_policy = UrlPolicy {
        allowed_hosts: settings.allowed_hosts.clone(),
        allow_link_local: settings.allow_link_local,
        allow_internal: settings.allow_internal.clone(),
    };
    url_policy.validate().map_err(Failure::invalid)?;
    // Webhook URLs pass the allow-list and are never link-local or
    // metadata (they may be internal: the operator set them): a refused
    // one is bad configuration, said at start rather than at the first
    // event.
    let webhooks = webhook::config::check(
        &settings.webhook_urls,
        &url_policy,
        std::env::var(webhook::config::SECRET_ENV).ok(),
        settings.webhook_secret_file.as_deref(),
        webhook::config::Limits {
            retry: webhook::retry::RetryPolicy {
                base: Duration::from_millis(settings.webhook_backoff_base_ms.max(1)),
                cap: Duration::from_secs(settings.webhook_backoff_cap_secs.max(1)),
                window: Duration::from_secs(settings.webhook_retry_secs),
            },
            in_flight: settings.webhook_in_flight,
            timeout: Duration::from_millis(settings.webhook_timeout_ms.max(1)),
        },
    )
    .map_err(Failure::invalid)?;
    let url_policy_for_workers = url_policy.clone();
    let fleet_settings = fleet::FleetSettings {
        url_policy,
        webhook_urls: webhooks
            .as_ref()
            .map(|w| w.urls.clone())
            .unwrap_or_default(),
        reconnect_grace: Duration::from_millis(settings.reconnect_grace_ms),
        retention: Duration::from_secs(settings.retention_secs),
        forward_deadline: Duration::from_millis(settings.forward_deadline_ms),
        destination: settings.destination(),
        allowed_destinations: settings.allowed_outputs.clone(),
        health: settings.health(),
        admission: fleet::admission::AdmissionConfig {
            enabled: settings.admission == AdmissionMode::Measured,
            default_estimate_millicores: settings.admission_estimate_millicores.max(1),
            target_permille: settings.admission_target_percent.clamp(1, 100) * 10,
            ..Default::default()
        },
        ..Default::default()
    };
    let health_problems = fleet_settings.health.problems();
    if let Some((field, message)) = health_problems.first() {
        return Err(Failure::invalid(format!("{field}: {message}")));
    }
    // A destination that cannot be opened is a configuration error, said
    // at start rather than at the first recording's end.
    crate::output::destination::Destination::open(&fleet_settings.destination)
        .map_err(|e| Failure::invalid(format!("output {}: {e}", fleet_settings.destination)))?;
    let telemetry_ms = fleet_settings.telemetry_interval.as_millis() as u32;
    let boot = store
        .next_boot()
        .map_err(|e| Failure::unavailable(e.to_string()))?;
    let window_start = recfleet_protocol::now_ms().saturating_sub(settings.retention_secs * 1000);
    let loaded = store
        .load_window(window_start)
        .map_err(|e| Failure::unavailable(e.to_string()))?;
    tracing::info!(boot, recordings = loaded.len(), "fleet state loaded");
    let fleet = fleet::Fleet::new(fleet_settings, boot, loaded);
    let sender_metrics = webhook::sender::SenderMetrics {
        deliveries: fleet.metrics().webhook_deliveries.clone(),
        pending: fleet.metrics().webhook_pending.clone(),
    };
    let silence = Duration::from_millis(settings.idle_timeout_ms + 1000);
    let transport = TransportSettings {
        keep_alive: Duration::from_millis(settings.keep_alive_ms),
        idle_timeout: Duration::from_millis(settings.idle_timeout_ms),
    };
    let endpoint = match leading.as_ref().and_then(|l| l.endpoint.clone()) {
        Some(e) => e,
        None => bind(settings.listen, &tls, transport).await?,
    };
    let addr = endpoint
        .local_addr()
        .map_err(|e| Failure::other(e.into()))?;
    let (tx, rx) = mpsc::channel(cmd::FLEET_QUEUE);
    let (outputs, writer) = outputs::spawn(
        tx.clone(),
        settings.data_dir.join("finalize"),
        crate::output::finalize::FinalizeOptions {
            stitch: settings.stitch,
            ..Default::default()
        },
        shutdown.clone(),
    );
    // The sender's own connection, opened while the store is still ours.
    let sender_db = match &webhooks {
        Some(_) => Some(
            store
                .open_another(webhook::sender::BUSY_TIMEOUT)
                .await
                .map_err(|e| Failure::unavailable(format!("webhook sender: {e}")))?,
        ),
        None => None,
    };
    let mut driver = driver::Driver::new(fleet, store, Some(outputs));
    if let Some(l) = &leading {
        driver = driver.with_deposed(l.deposed.clone());
    }
    let mut sender = None;
    if let (Some(config), Some(db)) = (webhooks, sender_db) {
        let wake = std::sync::Arc::new(tokio::sync::Notify::new());
        driver = driver.with_webhooks(config.urls.clone(), wake.clone());
        let s = webhook::sender::Sender::new(db, config, wake, sender_metrics)
            .map_err(Failure::unavailable)?;
        tracing::info!(urls = ?settings.webhook_urls, "webhooks on");
        sender = Some(tokio::spawn(s.run(shutdown.clone())));
    }
    let driver_shutdown = shutdown.clone();
    let driver = std::thread::Builder::new()
        .name("fleet-driver".into())
        .spawn(move || driver.run(rx, driver_shutdown))
        .map_err(|e| Failure::other(e.into()))?;
    let limits = server::ServerLimits {
        reply_budget: settings.reply_budget_bytes,
        connection_reply_budget: settings.connection_reply_budget_bytes,
        ..Default::default()
    };
    let server = tokio::spawn(server::serve(
        endpoint,
        tx.clone(),
        telemetry_ms,
        leading.as_ref().map_or(0, |l| l.term.0),
        silence,
        limits,
        url_policy_for_workers,
        shutdown,
    ));
    Ok(Running {
        addr,
        fleet: tx,
        server,
        driver,
        writer,
        webhooks: sender,
    })
}

/// Binds the QUIC endpoint. The port may still be held for a moment by the
/// endpoint of the role this coordinator just left (standby or leader), so
/// a refused bind is tried again for a few seconds.
async fn bind(
    listen: SocketAddr,
    tls: &TlsMaterial,
    transport: TransportSettings,
) -> Result<quinn::Endpoint, Failure> {
    let until = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match quic::server_endpoint(listen, tls, transport) {
            Ok(e) => return Ok(e),
            Err(e) if tokio::time::Instant::now() < until => {
                tracing::debug!(%listen, error = %e, "bind refused; trying again");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(Failure::unavailable(e.to_string())),
        }
    }
}
