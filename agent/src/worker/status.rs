//! What the worker tells probes and scrapers: connected, draining, slots,
//! restarts and bytes written.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use recfleet_protocol::manifest::SegmentEndReason;
use recfleet_protocol::WorkerMessage;

use super::Engine;

/// Shared by the link (which updates it) and the HTTP endpoint.
#[derive(Debug)]
pub struct WorkerStatus {
    engine: Arc<Engine>,
    capacity: u32,
    connected: AtomicBool,
    draining: AtomicBool,
    registry: Registry,
    slots_used: Gauge,
    capacity_gauge: Gauge,
    connected_gauge: Gauge,
    restarts: Family<Vec<(String, String)>, Counter>,
    bytes: Counter,
}

impl WorkerStatus {
    /// Status of a worker offering `capacity` units.
    pub fn new(engine: Arc<Engine>, capacity: u32) -> Arc<Self> {
        let mut registry = Registry::default();
        let s = WorkerStatus {
            engine,
            capacity,
            connected: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            registry: Registry::default(),
            slots_used: Gauge::default(),
            capacity_gauge: Gauge::default(),
            connected_gauge: Gauge::default(),
            restarts: Family::default(),
            bytes: Counter::default(),
        };
        registry.register(
            "recfleet_worker_slots_used",
            "Recordings running on this worker",
            s.slots_used.clone(),
        );
        registry.register(
            "recfleet_worker_capacity_units",
            "Capacity units this worker offers",
            s.capacity_gauge.clone(),
        );
        registry.register(
            "recfleet_worker_connected",
            "1 when connected to the coordinator",
            s.connected_gauge.clone(),
        );
        registry.register(
            "recfleet_segment_restarts",
            "Slot restarts by reason",
            s.restarts.clone(),
        );
        registry.register(
            "recfleet_bytes_written",
            "Bytes of finished segment files",
            s.bytes.clone(),
        );
        Arc::new(WorkerStatus { registry, ..s })
    }

    /// The link connected or lost the coordinator.
    pub fn set_connected(&self, yes: bool) {
        self.connected.store(yes, Ordering::SeqCst);
    }

    /// The worker drains (SIGTERM or an operator's drain).
    pub fn set_draining(&self, yes: bool) {
        self.draining.store(yes, Ordering::SeqCst);
    }

    /// Counts what an engine event says.
    pub fn observe(&self, msg: &WorkerMessage) {
        if let WorkerMessage::SegmentEnded(r) = msg {
            self.bytes.inc_by(r.bytes);
            let reason = match &r.reason {
                SegmentEndReason::ChildExited { process, .. } => Some(process.clone()),
                SegmentEndReason::Stalled { .. } => Some("stalled".to_string()),
                _ => None,
            };
            if let Some(reason) = reason {
                self.restarts
                    .get_or_create(&vec![("reason".to_string(), reason)])
                    .inc();
            }
        }
    }
}

impl crate::health::Probe for WorkerStatus {
    fn ready(&self) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + '_>> {
        Box::pin(async move {
            if !self.connected.load(Ordering::SeqCst) {
                return Err("not connected to the coordinator".into());
            }
            if self.draining.load(Ordering::SeqCst) {
                return Err("draining: takes no new recordings".into());
            }
            Ok(())
        })
    }

    fn metrics(&self) -> Pin<Box<dyn Future<Output = Option<String>> + Send + '_>> {
        Box::pin(async move {
            self.slots_used.set(self.engine.len() as i64);
            self.capacity_gauge.set(i64::from(self.capacity));
            self.connected_gauge
                .set(i64::from(self.connected.load(Ordering::SeqCst)));
            let mut out = String::new();
            encode(&mut out, &self.registry).ok()?;
            Some(out)
        })
    }
}
