//! The coordinator's Prometheus metrics. Counters and histograms are
//! updated as things happen; gauges are set from the fleet state at scrape
//! time, so they are never stale.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

/// Label sets are small string pairs.
pub type Labels = Vec<(String, String)>;

/// Every metric of the coordinator.
#[derive(Debug)]
pub struct CoordinatorMetrics {
    registry: Registry,
    /// Workers by state.
    pub workers: Family<Labels, Gauge>,
    /// Recordings by state.
    pub recordings: Family<Labels, Gauge>,
    /// Running recordings by media health.
    pub recording_health: Family<Labels, Gauge>,
    /// Recordings waiting for a worker (pending or interrupted).
    pub pending: Gauge,
    /// Capacity units offered by connected, ready workers.
    pub capacity: Gauge,
    /// Of those, units free.
    pub free_capacity: Gauge,
    /// Request to first placement.
    pub placement_latency: Histogram,
    /// Recordings placed again after their worker was lost.
    pub failovers: Counter,
    /// Make-before-break moves completed.
    pub reassigns: Counter,
    /// Drains begun.
    pub drains: Counter,
    /// Capacity units in use per worker.
    pub slots_used: Family<Labels, Gauge>,
    /// Slot restarts by reason (the process that died, or "stalled").
    pub segment_restarts: Family<Labels, Counter>,
    /// Request to first captured frame.
    pub start_latency: Histogram,
    /// Bytes of finished segment files.
    pub bytes_written: Counter,
    /// Time to commit one turn's transaction (its fsync included).
    pub store_commit: Histogram,
    /// Turns whose store writes failed (the requests got an error).
    pub store_errors: Counter,
    /// 1 while the store refuses writes.
    pub store_unavailable: Gauge,
    /// Inputs handled per turn (one transaction each).
    pub turn_inputs: Histogram,
    /// Commands waiting in the driver's queue.
    pub queue_depth: Gauge,
    /// Telemetry frames dropped because the driver's queue was full.
    pub telemetry_dropped: Counter,
    /// Webhook attempts by result (delivered, retry, failed).
    pub webhook_deliveries: Family<Labels, Counter>,
    /// Webhook deliveries not yet delivered nor given up.
    pub webhook_pending: Gauge,
    pub upload_buffer_bytes: Family<Labels, Gauge>,
    pub upload_buffer_full: Family<Labels, Gauge>,
    pub upload_lag: Gauge<f64, std::sync::atomic::AtomicU64>,
}

impl Default for CoordinatorMetrics {
    fn default() -> Self {
        let mut r = Registry::default();
        let m = CoordinatorMetrics {
            workers: Family::default(),
            recordings: Family::default(),
            recording_health: Family::default(),
            pending: Gauge::default(),
            capacity: Gauge::default(),
            free_capacity: Gauge::default(),
            placement_latency: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            failovers: Counter::default(),
            reassigns: Counter::default(),
            drains: Counter::default(),
            slots_used: Family::default(),
            segment_restarts: Family::default(),
            start_latency: Histogram::new(exponential_buckets(0.25, 1.5, 14)),
            bytes_written: Counter::default(),
            store_commit: Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
            store_errors: Counter::default(),
            store_unavailable: Gauge::default(),
            turn_inputs: Histogram::new(exponential_buckets(1.0, 2.0, 10)),
            queue_depth: Gauge::default(),
            telemetry_dropped: Counter::default(),
            webhook_deliveries: Family::default(),
            webhook_pending: Gauge::default(),
            upload_buffer_bytes: Family::default(),
            upload_buffer_full: Family::default(),
            upload_lag: Gauge::default(),
            registry: Registry::default(),
        };
        r.register("recfleet_workers", "Workers by state", m.workers.clone());
        r.register(
            "recfleet_recordings",
            "Recordings by state",
            m.recordings.clone(),
        );
        r.register(
            "recfleet_recording_health",
            "Running recordings by media health (ok, silent, frozen, black, wrong_page, unresponsive, page_crashed, unknown)",
            m.recording_health.clone(),
        );
        r.register(
            "recfleet_recordings_pending",
            "Recordings waiting for a worker (queue depth)",
            m.pending.clone(),
        );
        r.register(
            "recfleet_capacity_units",
            "Capacity units offered by ready workers",
            m.capacity.clone(),
        );
        r.register(
            "recfleet_capacity_free_units",
            "Capacity units free on ready workers",
            m.free_capacity.clone(),
        );
        r.register_with_unit(
            "recfleet_placement_latency",
            "Time from a recording request to its first placement",
            Unit::Seconds,
            m.placement_latency.clone(),
        );
        r.register(
            "recfleet_failovers",
            "Recordings placed again after their worker was lost",
            m.failovers.clone(),
        );
        r.register(
            "recfleet_reassigns",
            "Make-before-break moves completed",
            m.reassigns.clone(),
        );
        r.register("recfleet_drains", "Drains begun", m.drains.clone());
        r.register(
            "recfleet_worker_upload_buffer_bytes",
            "Bytes of closed chunks waiting on a worker's disk for upload",
            m.upload_buffer_bytes.clone(),
        );
        r.register(
            "recfleet_worker_upload_buffer_full",
            "1 while a worker's upload buffer is over its limit",
            m.upload_buffer_full.clone(),
        );
        r.register_with_unit(
            "recfleet_upload_lag",
            "The largest upload lag of a recording: age of its oldest chunk not stored yet",
            Unit::Seconds,
            m.upload_lag.clone(),
        );
        r.register(
            "recfleet_worker_slots_used",
            "Capacity units in use per worker",
            m.slots_used.clone(),
        );
        r.register(
            "recfleet_segment_restarts",
            "Slot restarts by reason",
            m.segment_restarts.clone(),
        );
        r.register_with_unit(
            "recfleet_recording_start_latency",
            "Time from a recording request to its first captured frame",
            Unit::Seconds,
            m.start_latency.clone(),
        );
        r.register(
            "recfleet_bytes_written",
            "Bytes of finished segment files",
            m.bytes_written.clone(),
        );
        r.register_with_unit(
            "recfleet_store_commit",
            "Time to commit one turn's store transaction",
            Unit::Seconds,
            m.store_commit.clone(),
        );
        r.register(
            "recfleet_store_errors",
            "Turns whose store writes failed",
            m.store_errors.clone(),
        );
        r.register(
            "recfleet_store_unavailable",
            "1 while the store refuses writes",
            m.store_unavailable.clone(),
        );
        r.register(
            "recfleet_turn_inputs",
            "Inputs handled per store transaction",
            m.turn_inputs.clone(),
        );
        r.register(
            "recfleet_queue_depth",
            "Commands waiting for the fleet driver",
            m.queue_depth.clone(),
        );
        r.register(
            "recfleet_telemetry_dropped",
            "Telemetry frames dropped while the fleet driver's queue was full",
            m.telemetry_dropped.clone(),
        );
        r.register(
            "recfleet_webhook_deliveries",
            "Webhook attempts by result (delivered, retry, failed: given up)",
            m.webhook_deliveries.clone(),
        );
        r.register(
            "recfleet_webhook_pending",
            "Webhook deliveries not yet delivered nor given up",
            m.webhook_pending.clone(),
        );
        CoordinatorMetrics { registry: r, ..m }
    }
}

impl CoordinatorMetrics {
    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// One label.
pub fn label(key: &str, value: &str) -> Labels {
    vec![(key.to_string(), value.to_string())]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_prometheus_conventions() {
        let m = CoordinatorMetrics::default();
        m.failovers.inc();
        m.workers.get_or_create(&label("state", "ready")).set(2);
        m.placement_latency.observe(0.02);
        m.bytes_written.inc_by(10);
        let text = m.encode();
        for name in [
            "recfleet_workers{state=\"ready\"} 2",
            "recfleet_failovers_total 1",
            "recfleet_placement_latency_seconds_bucket",
            "recfleet_bytes_written_total 10",
            "recfleet_capacity_free_units",
            "recfleet_recordings_pending",
        ] {
            assert!(text.contains(name), "{name} missing in:\n{text}");
        }
    }
}
