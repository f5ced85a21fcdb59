//! `recfleet-agent worker`: the recording engine connected to a coordinator.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use recfleet_certs::{Role, TlsMaterial};
use recfleet_protocol::manifest::SegmentEndReason;
use recfleet_protocol::quic::{self, TransportSettings};
use recfleet_protocol::WorkerName;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::link::{self, LinkConfig};
use super::status::WorkerStatus;
use super::{Engine, EngineConfig};
use crate::exit::Failure;
use crate::settings::{self, Overrides};

/// Settings of `recfleet-agent worker` (TOML keys as field names).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerSettings {
    /// The coordinators' UDP addresses, `host:port`, separated by commas
    /// (one leads; a name that resolves to several addresses stands for
    /// all of them).
    pub coordinator: String,
    /// The name on the coordinator's certificate.
    pub server_name: String,
    /// The fleet CA certificate.
    pub ca: PathBuf,
    /// This worker's agent certificate (its name is the worker's name).
    pub cert: PathBuf,
    /// Its key.
    pub key: PathBuf,
    /// Capacity units offered (a recording costs 1 by default; two 720p15
    /// recordings of the demo page fill two cores, see docs/capture.md).
    pub capacity: u32,
    /// Labels recordings may require.
    pub labels: BTreeMap<String, String>,
    /// The upload buffer: chunks wait here until their destination has
    /// stored them (a worker's local disk; nothing shared).
    pub out_dir: PathBuf,
    /// Bytes of chunks waiting for upload beyond which the worker reports
    /// its buffer full (recordings go on; an alert should fire).
    pub upload_buffer_bytes: u64,
    /// Seconds a part's last uploads are retried after it ends.
    pub upload_retry_secs: u64,
    /// Per-slot runtime files (sockets, profiles); short path.
    pub runtime_dir: Option<PathBuf>,
    /// Restart intensity: at most this many restarts ...
    pub max_restarts: u32,
    /// ... within this many seconds.
    pub restart_period_secs: u64,
    /// Seconds without progress that count as a crash.
    pub stall_timeout_secs: u64,
    /// On SIGTERM, seconds the coordinator has to move this worker's
    /// recordings away before the rest are stopped (size the pod's
    /// terminationGracePeriodSeconds or the unit's TimeoutStopSec above it).
    pub drain_grace_secs: u32,
    /// HTTP address of /metrics, /healthz and /readyz (none: not served).
    pub metrics_addr: Option<SocketAddr>,
    /// QUIC keep-alive period, ms.
    pub keep_alive_ms: u64,
    /// QUIC idle timeout, ms.
    pub idle_timeout_ms: u64,
    /// More Chromium flags, after recfleet's own (`--disable-features=`
    /// lists are merged with recfleet's, not replacing them).
    pub chromium_args: Vec<String>,
    /// Each slot's memory limit, MiB, all its processes together (0: none).
    pub slot_memory_mib: u64,
    /// Each slot's CPU limit, thousandths of a core (0: none).
    pub slot_cpu_millicores: u32,
    /// Each slot's processes and threads (0: no limit).
    pub slot_pids_max: u32,
    /// Ready slots kept warm (display, sound, ChromeDriver and a blank
    /// browser), so that a start only loads its page (0: none). Each costs
    /// its idle CPU and memory while it waits.
    pub ready_slots: u32,
    /// CPU this worker may use for recordings, thousandths of a core; the
    /// coordinator admits recordings by their measured cost within it (0:
    /// the machine's CPUs, within the cgroup's quota).
    pub cpu_capacity_millicores: u32,
    /// The machine this worker runs on, as the coordinator compares it:
    /// the two copies of a recording with redundancy 2 go to different
    /// hosts (empty: the host name; on Kubernetes give the node's name,
    /// since a pod's host name is its own).
    pub host: String,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        WorkerSettings {
            coordinator: "127.0.0.1:7800".into(),
            server_name: "localhost".into(),
            ca: "/etc/recfleet/tls/ca.pem".into(),
            cert: "/etc/recfleet/tls/agent.pem".into(),
            key: "/etc/recfleet/tls/agent-key.pem".into(),
            capacity: 2,
            labels: BTreeMap::new(),
            out_dir: "/var/lib/recfleet/recordings".into(),
            upload_buffer_bytes: 2 << 30,
            upload_retry_secs: 3600,
            runtime_dir: None,
            max_restarts: 3,
            restart_period_secs: 60,
            stall_timeout_secs: 10,
            drain_grace_secs: 60,
            metrics_addr: None,
            keep_alive_ms: 500,
            idle_timeout_ms: 2000,
            chromium_args: Vec::new(),
            slot_memory_mib: crate::worker::config::DEFAULT_SLOT_MEMORY_MIB,
            slot_cpu_millicores: 0,
            slot_pids_max: crate::worker::config::DEFAULT_SLOT_PIDS,
            ready_slots: 1,
            cpu_capacity_millicores: 0,
            host: String::new(),
        }
    }
}

/// Command-line flags of `worker` (each also an environment variable).
#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    /// TOML configuration file.
    #[arg(long, env = "RECFLEET_CONFIG")]
    pub config: Option<PathBuf>,
    /// Coordinator addresses (UDP), host:port, separated by commas.
    #[arg(long, env = "RECFLEET_COORDINATOR")]
    pub coordinator: Option<String>,
    /// Name on the coordinator's certificate.
    #[arg(long, env = "RECFLEET_SERVER_NAME")]
    pub server_name: Option<String>,
    /// Fleet CA certificate.
    #[arg(long, env = "RECFLEET_CA")]
    pub ca: Option<PathBuf>,
    /// Agent certificate.
    #[arg(long, env = "RECFLEET_CERT")]
    pub cert: Option<PathBuf>,
    /// Agent key.
    #[arg(long, env = "RECFLEET_KEY")]
    pub key: Option<PathBuf>,
    /// Capacity units offered.
    #[arg(long, env = "RECFLEET_CAPACITY")]
    pub capacity: Option<u32>,
    /// A label, key=value (repeatable).
    #[arg(long = "label", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    /// Upload buffer: chunks wait here until their destination stored them.
    #[arg(long, env = "RECFLEET_OUT_DIR")]
    pub out_dir: Option<PathBuf>,
    /// Bytes of chunks waiting for upload before the buffer counts as full.
    #[arg(long, env = "RECFLEET_UPLOAD_BUFFER_BYTES")]
    pub upload_buffer_bytes: Option<u64>,
    /// Seconds a part's last uploads are retried after it ends.
    #[arg(long, env = "RECFLEET_UPLOAD_RETRY_SECS")]
    pub upload_retry_secs: Option<u64>,
    /// Runtime directory for slot sockets and profiles.
    #[arg(long, env = "RECFLEET_RUNTIME_DIR")]
    pub runtime_dir: Option<PathBuf>,
    /// QUIC idle timeout in ms.
    #[arg(long, env = "RECFLEET_IDLE_TIMEOUT_MS")]
    pub idle_timeout_ms: Option<u64>,
    /// Seconds to move recordings away on SIGTERM.
    #[arg(long, env = "RECFLEET_DRAIN_GRACE_SECS")]
    pub drain_grace_secs: Option<u32>,
    /// HTTP address for /metrics, /healthz and /readyz.
    #[arg(long, env = "RECFLEET_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// More Chromium flags (repeatable; in the variable, separated by
    /// spaces), e.g. `--chromium-arg=--force-device-scale-factor=1`.
    /// Proxy flags are refused: pages go through the worker's egress proxy.
    #[arg(
        long = "chromium-arg",
        env = "RECFLEET_CHROMIUM_ARGS",
        value_delimiter = ' ',
        allow_hyphen_values = true
    )]
    pub chromium_args: Vec<String>,
    /// Each slot's memory limit, MiB (0: none).
    #[arg(long, env = "RECFLEET_SLOT_MEMORY_MIB")]
    pub slot_memory_mib: Option<u64>,
    /// Each slot's CPU limit, thousandths of a core (0: none).
    #[arg(long, env = "RECFLEET_SLOT_CPU_MILLICORES")]
    pub slot_cpu_millicores: Option<u32>,
    /// Each slot's process and thread limit (0: none).
    #[arg(long, env = "RECFLEET_SLOT_PIDS_MAX")]
    pub slot_pids_max: Option<u32>,
    /// Ready slots kept warm (0: none).
    #[arg(long, env = "RECFLEET_READY_SLOTS")]
    pub ready_slots: Option<u32>,
    /// CPU for recordings, thousandths of a core (0: the machine's CPUs).
    #[arg(long, env = "RECFLEET_CPU_CAPACITY_MILLICORES")]
    pub cpu_capacity_millicores: Option<u32>,
    /// The machine it runs on (default: the host name; on Kubernetes the
    /// node's name): a recording's two copies go to different hosts.
    #[arg(long, env = "RECFLEET_HOST")]
    pub host: Option<String>,
    /// Print the effective configuration and exit.
    #[arg(long)]
    pub print_config: bool,
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("\"{s}\" is not a label: expected key=value"))
}

impl WorkerArgs {
    /// The effective settings.
    pub fn settings(&self) -> Result<WorkerSettings, Failure> {
        let mut o = Overrides::default();
        o.set("coordinator", self.coordinator.clone());
        o.set("server_name", self.server_name.clone());
        o.set("ca", self.ca.clone());
        o.set("cert", self.cert.clone());
        o.set("key", self.key.clone());
        o.set("capacity", self.capacity);
        if !self.labels.is_empty() {
            o.set(
                "labels",
                Some(self.labels.iter().cloned().collect::<BTreeMap<_, _>>()),
            );
        }
        o.set("out_dir", self.out_dir.clone());
        o.set("upload_buffer_bytes", self.upload_buffer_bytes);
        o.set("upload_retry_secs", self.upload_retry_secs);
        o.set("runtime_dir", self.runtime_dir.clone());
        o.set("idle_timeout_ms", self.idle_timeout_ms);
        o.set("drain_grace_secs", self.drain_grace_secs);
        o.set("metrics_addr", self.metrics_addr.map(|a| a.to_string()));
        o.set("slot_memory_mib", self.slot_memory_mib);
        o.set("slot_cpu_millicores", self.slot_cpu_millicores);
        o.set("slot_pids_max", self.slot_pids_max);
        o.set("ready_slots", self.ready_slots);
        o.set("cpu_capacity_millicores", self.cpu_capacity_millicores);
        o.set("host", self.host.clone());
        let args: Vec<String> = self
            .chromium_args
            .iter()
            .filter(|a| !a.is_empty())
            .cloned()
            .collect();
        if !args.is_empty() {
            o.set("chromium_args", Some(args));
        }
        let s: WorkerSettings = settings::load(self.config.as_deref(), o)?;
        if s.capacity == 0 {
            return Err(Failure::invalid(
                "capacity = 0: a worker must offer at least 1 unit",
            ));
        }
        if let Some(flag) = s
            .chromium_args
            .iter()
            .find(|a| crate::worker::browser::is_proxy_flag(a))
        {
            return Err(Failure::invalid(format!(
                "chromium_args: {flag} would take pages around the worker's egress proxy, \
                 which enforces the coordinator's URL policy; admit internal hosts with \
                 the coordinator's allow_internal instead"
            )));
        }
        Ok(s)
    }
}

/// Runs the worker until SIGTERM/SIGINT, then stops its recordings (the
/// coordinator places them elsewhere) and exits once every slot is reaped.
pub async fn main(args: WorkerArgs) -> Result<(), Failure> {
    let s = args.settings()?;
    if args.print_config {
        return settings::print(&s);
    }
    let tls = TlsMaterial::load(&s.ca, &s.cert, &s.key)
        .map_err(|e| Failure::invalid(format!("tls: {e}")))?;
    let identity = tls
        .identity()
        .map_err(|e| Failure::invalid(format!("tls: {e}")))?;
    if identity.role() != Role::Agent {
        return Err(Failure::invalid(format!(
            "{} is a {} certificate; a worker needs an agent certificate (recfleet-certs issue --role agent)",
            s.cert.display(),
            identity.role()
        )));
    }
    let name = WorkerName::new(identity.name()).map_err(|e| Failure::invalid(e.to_string()))?;
    let coordinators = recfleet_client::connect::addresses(&s.coordinator);
    if let Some(bad) = coordinators.iter().find(|a| a.rsplit_once(':').is_none()) {
        return Err(Failure::invalid(format!(
            "coordinator address \"{bad}\" has no port (host:port)"
        )));
    }
    if coordinators.is_empty() {
        return Err(Failure::invalid(
            "no coordinator address (--coordinator host:port)",
        ));
    }
    let mut config = EngineConfig::new(s.out_dir.clone());
    if let Some(dir) = &s.runtime_dir {
        config.runtime_root = dir.clone();
    }
    config.max_restarts = s.max_restarts;
    config.upload.buffer_limit_bytes = s.upload_buffer_bytes;
    config.upload.retry_window = Duration::from_secs(s.upload_retry_secs);
    config.worker_name = name.to_string();
    config.restart_period = Duration::from_secs(s.restart_period_secs);
    config.timeouts.stall = Duration::from_secs(s.stall_timeout_secs);
    config.bins.chromium_args = s.chromium_args.clone();
    let nonzero = |n: u64| (n > 0).then_some(n);
    config.slot_limits = crate::worker::cgroup::Limits {
        memory_max: nonzero(s.slot_memory_mib).map(|m| m << 20),
        cpu_max_millicores: nonzero(u64::from(s.slot_cpu_millicores)).map(|c| c as u32),
        pids_max: nonzero(u64::from(s.slot_pids_max)).map(|p| p as u32),
    };
    config.ready_slots = s.ready_slots as usize;
    let missing = config.bins.missing();
    if !missing.is_empty() {
        return Err(Failure::unavailable(format!(
            "missing programs: {}",
            missing.join(", ")
        )));
    }
    let (engine, events) = Engine::start(config).map_err(|e| Failure::other(e.into()))?;
    let transport = TransportSettings {
        keep_alive: Duration::from_millis(s.keep_alive_ms),
        idle_timeout: Duration::from_millis(s.idle_timeout_ms),
    };
    let endpoint =
        quic::client_endpoint(&tls, transport).map_err(|e| Failure::unavailable(e.to_string()))?;
    let link_config = LinkConfig {
        coordinators,
        server_name: s.server_name.clone(),
        name: name.clone(),
        capacity: s.capacity,
        labels: s.labels.clone(),
        drain_grace_secs: s.drain_grace_secs,
        tls_files: Some((s.ca.clone(), s.cert.clone(), s.key.clone())),
        cpu_capacity_millicores: s.cpu_capacity_millicores,
        host: match s.host.trim() {
            "" => crate::host_name().unwrap_or_default(),
            h => h.to_string(),
        },
    };
    let shutdown = CancellationToken::new();
    let drain = CancellationToken::new();
    tracing::info!(worker = %name, coordinator = %s.coordinator, capacity = s.capacity, "worker starting");
    let status = WorkerStatus::new(engine.clone(), s.capacity);
    if let Some(addr) = s.metrics_addr {
        crate::health::serve(addr, status.clone())
            .await
            .map_err(|e| Failure::unavailable(format!("cannot serve metrics on {addr}: {e}")))?;
    }
    let link = tokio::spawn(link::run(
        link_config,
        endpoint.clone(),
        engine.clone(),
        events,
        status.clone(),
        drain.clone(),
        shutdown.clone(),
    ));
    crate::signals::wait_for_termination().await;
    // SIGTERM is a drain with migrate (a pod evicted, a systemd stop): the
    // coordinator moves each recording away make-before-break; whatever is
    // left when the grace period ends is stopped and placed again.
    tracing::info!(worker = %name, running = engine.len(), grace_secs = s.drain_grace_secs, "draining: moving recordings away");
    drain.cancel();
    status.set_draining(true);
    engine.set_draining(true);
    let grace = tokio::time::sleep(Duration::from_secs(u64::from(s.drain_grace_secs)));
    tokio::pin!(grace);
    while !engine.is_empty() {
        tokio::select! {
            _ = &mut grace => {
                tracing::warn!(worker = %name, left = engine.len(), "grace period over; stopping what is left");
                break;
            }
            _ = crate::signals::wait_for_termination() => {
                tracing::warn!(worker = %name, "second signal; stopping now");
                break;
            }
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
    engine.shutdown(SegmentEndReason::WorkerShutdown).await;
    shutdown.cancel();
    let _ = link.await;
    let _ = tokio::time::timeout(Duration::from_secs(2), endpoint.wait_idle()).await;
    tracing::info!(worker = %name, "stopped; every slot process reaped");
    Ok(())
}
