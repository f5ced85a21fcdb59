//! The coordinator: registry of workers, durable store, scheduler, failover
//! and the event stream, behind one QUIC endpoint.

pub mod cmd;
pub mod fleet;
pub mod metrics;
pub mod scheduler;
pub mod server;
pub mod store;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use recfleet_certs::TlsMaterial;
use recfleet_protocol::quic::{self, TransportSettings};
use recfleet_protocol::spec::UrlPolicy;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::exit::Failure;
use crate::settings::{self, Overrides};

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
    /// A directory where every worker's segment files are reachable
    /// (shared storage); manifests are written there too.
    pub manifest_root: Option<PathBuf>,
    /// If not empty, the only hosts browsers may be sent to (`*.suffix` allowed).
    pub allowed_hosts: Vec<String>,
    /// Allow link-local addresses as recording URLs.
    pub allow_link_local: bool,
    /// QUIC keep-alive period, ms.
    pub keep_alive_ms: u64,
    /// A connection silent this long is dead, ms: how fast a vanished
    /// worker is noticed.
    pub idle_timeout_ms: u64,
    /// After a restart, how long workers have to come back, ms.
    pub reconnect_grace_ms: u64,
    /// HTTP address of /metrics, /healthz and /readyz (none: not served).
    pub metrics_addr: Option<SocketAddr>,
}

impl Default for CoordinatorSettings {
    fn default() -> Self {
        CoordinatorSettings {
            listen: ([127, 0, 0, 1], 7800).into(),
            data_dir: PathBuf::from("/var/lib/recfleet"),
            ca: None,
            cert: None,
            key: None,
            manifest_root: None,
            allowed_hosts: Vec::new(),
            allow_link_local: false,
            keep_alive_ms: 500,
            idle_timeout_ms: 2000,
            reconnect_grace_ms: 5000,
            metrics_addr: None,
        }
    }
}

impl CoordinatorSettings {
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
    /// Shared directory where segment files are reachable; manifests go there.
    #[arg(long, env = "RECFLEET_MANIFEST_ROOT")]
    pub manifest_root: Option<PathBuf>,
    /// Only these hosts may be recorded (repeatable; `*.example.com` allowed).
    #[arg(
        long = "allowed-host",
        env = "RECFLEET_ALLOWED_HOSTS",
        value_delimiter = ','
    )]
    pub allowed_hosts: Option<Vec<String>>,
    /// QUIC idle timeout in ms (how fast a dead worker is noticed).
    #[arg(long, env = "RECFLEET_IDLE_TIMEOUT_MS")]
    pub idle_timeout_ms: Option<u64>,
    /// HTTP address for /metrics, /healthz and /readyz.
    #[arg(long, env = "RECFLEET_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
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
        o.set("manifest_root", self.manifest_root.clone());
        o.set("allowed_hosts", self.allowed_hosts.clone());
        o.set("idle_timeout_ms", self.idle_timeout_ms);
        o.set("metrics_addr", self.metrics_addr.map(|a| a.to_string()));
        settings::load(self.config.as_deref(), o)
    }
}

/// What the coordinator answers to probes: not ready (and why) until the
/// store is open and the endpoint listens.
#[derive(Debug)]
struct CoordinatorProbe {
    state: std::sync::Mutex<Result<cmd::FleetTx, String>>,
}

impl CoordinatorProbe {
    fn set(&self, s: Result<cmd::FleetTx, String>) {
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = s;
    }
    fn fleet(&self) -> Result<cmd::FleetTx, String> {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl crate::health::Probe for CoordinatorProbe {
    fn ready(
        &self,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send + '_>> {
        Box::pin(async move {
            let tx = self.fleet()?;
            let (reply, rx) = tokio::sync::oneshot::channel();
            tokio::time::timeout(cmd::REQUEST_DEADLINE, tx.send(cmd::Cmd::Ready { reply }))
                .await
                .map_err(|_| "the coordinator is busy".to_string())?
                .map_err(|_| "shutting down".to_string())?;
            match tokio::time::timeout(cmd::REQUEST_DEADLINE, rx).await {
                Ok(Ok(ready)) => ready,
                Ok(Err(_)) => Err("shutting down".into()),
                Err(_) => Err("the coordinator is busy".into()),
            }
        })
    }
    fn metrics(
        &self,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<String>> + Send + '_>> {
        Box::pin(async move {
            let tx = self.fleet().ok()?;
            let (reply, rx) = tokio::sync::oneshot::channel();
            tokio::time::timeout(cmd::REQUEST_DEADLINE, tx.send(cmd::Cmd::Metrics { reply }))
                .await
                .ok()?
                .ok()?;
            tokio::time::timeout(cmd::REQUEST_DEADLINE, rx)
                .await
                .ok()?
                .ok()
        })
    }
}

/// Runs `recfleet-agent coordinator` until SIGTERM/SIGINT.
pub async fn main(args: CoordinatorArgs) -> Result<(), Failure> {
    let settings = args.settings()?;
    if args.print_config {
        return settings::print(&settings);
    }
    let probe = std::sync::Arc::new(CoordinatorProbe {
        state: std::sync::Mutex::new(Err("starting".into())),
    });
    if let Some(addr) = settings.metrics_addr {
        crate::health::serve(addr, probe.clone())
            .await
            .map_err(|e| Failure::unavailable(format!("cannot serve metrics on {addr}: {e}")))?;
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
    let running = start(settings, store, shutdown.clone()).await?;
    probe.set(Ok(running.fleet.clone()));
    tracing::info!(addr = %running.addr, "coordinator ready");
    crate::health::notify_ready();
    crate::signals::wait_for_termination().await;
    tracing::info!("shutting down");
    probe.set(Err("shutting down".into()));
    shutdown.cancel();
    running.stopped().await;
    Ok(())
}

/// A started coordinator.
#[derive(Debug)]
pub struct Running {
    /// The bound address.
    pub addr: SocketAddr,
    /// Send commands to the fleet (readiness probes).
    pub fleet: cmd::FleetTx,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Waits until the server and the fleet actor have stopped.
    pub async fn stopped(self) {
        let Running { fleet, tasks, .. } = self;
        drop(fleet);
        for t in tasks {
            let _ = t.await;
        }
    }
}

/// Binds the endpoint and starts serving with an open store.
pub async fn start(
    settings: CoordinatorSettings,
    store: store::Store,
    shutdown: CancellationToken,
) -> Result<Running, Failure> {
    let (ca, cert, key) = settings.tls_paths();
    let tls =
        TlsMaterial::load(&ca, &cert, &key).map_err(|e| Failure::invalid(format!("tls: {e}")))?;
    let fleet_settings = fleet::FleetSettings {
        url_policy: UrlPolicy {
            allowed_hosts: settings.allowed_hosts.clone(),
            allow_link_local: settings.allow_link_local,
        },
        manifest_root: settings.manifest_root.clone(),
        reconnect_grace: Duration::from_millis(settings.reconnect_grace_ms),
        worker_silence: Duration::from_millis(settings.idle_timeout_ms + 1000),
        ..Default::default()
    };
    let telemetry_ms = fleet_settings.telemetry_interval.as_millis() as u32;
    let fleet = fleet::Fleet::load(store, fleet_settings)
        .map_err(|e| Failure::unavailable(e.to_string()))?;
    let transport = TransportSettings {
        keep_alive: Duration::from_millis(settings.keep_alive_ms),
        idle_timeout: Duration::from_millis(settings.idle_timeout_ms),
    };
    let endpoint = quic::server_endpoint(settings.listen, &tls, transport)
        .map_err(|e| Failure::unavailable(e.to_string()))?;
    let addr = endpoint
        .local_addr()
        .map_err(|e| Failure::other(e.into()))?;
    let (tx, rx) = mpsc::channel(cmd::FLEET_QUEUE);
    // The driver on a thread of its own (as the fleet rewrite will have it):
    // its work never holds up the QUIC side's runtime.
    let actor = tokio::task::spawn_blocking(move || {
        match tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
        {
            Ok(rt) => rt.block_on(fleet.run(rx)),
            Err(e) => tracing::error!(error = %e, "cannot start the fleet driver"),
        }
    });
    let silence = Duration::from_millis(settings.idle_timeout_ms + 1000);
    let server = tokio::spawn(server::serve(
        endpoint,
        tx.clone(),
        telemetry_ms,
        silence,
        server::ServerLimits::default(),
        shutdown,
    ));
    Ok(Running {
        addr,
        fleet: tx,
        tasks: vec![server, actor],
    })
}
