//! Admission by measured cost: how many more recordings a worker takes,
//! from what its telemetry measured, not from a static slot count alone.
//! Pure: the fleet feeds it telemetry and asks it for an offer whenever it
//! re-sorts a worker in the capacity index.
//!
//! The rule (LiveKit Egress's, learned rather than static): a worker takes
//! one more recording while `capacity x target - used - pending >=
//! estimate`, where `pending` reserves the estimate for each recording
//! whose cost is not measured yet (its part has captured less than
//! [`COST_SETTLES_AFTER_MS`] of media: a browser's start costs more than
//! its steady state) in place of what that start measures now, and the
//! estimate is the fleet's running average of settled recordings' costs.
//! A worker whose settled recordings repeat frames (the grab came late:
//! its CPU is short whatever the figures say) takes none.

use recfleet_protocol::{Admission, SlotProgress, WorkerTelemetry, COST_SETTLES_AFTER_MS};

/// Settings of admission by cost.
#[derive(Debug, Clone, PartialEq)]
pub struct AdmissionConfig {
    /// Off: slots alone count.
    pub enabled: bool,
    /// What a recording is expected to cost before any was measured,
    /// thousandths of a core.
    pub default_estimate_millicores: u32,
    /// The share of a worker's CPU recordings may fill, per mille.
    pub target_permille: u32,
    /// Memory one more recording needs available, bytes.
    pub memory_per_recording_bytes: u64,
    /// Repeated frames (per mille of a settled recording's last 5 s) from
    /// which its worker takes no more.
    pub repeated_limit_permille: u16,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        AdmissionConfig {
            enabled: true,
            // A 720p15 recording of a class page with its teacher's camera
            // measured 0.5-1 core on this project's 2-core machine.
            default_estimate_millicores: 700,
            target_permille: 900,
            memory_per_recording_bytes: 768 << 20,
            repeated_limit_permille: 50,
        }
    }
}

/// What one worker's last telemetry measured, as admission uses it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Measured {
    /// CPU the worker may use, millicores (0: it does not say).
    pub cpu_capacity: u32,
    /// CPU it uses, millicores, smoothed over samples.
    pub cpu_used: u32,
    /// Of that, what its recordings not yet measured use now.
    pub unsettled_cpu: u32,
    /// Recordings whose cost is measured.
    pub settled: u32,
    /// Memory available on its machine, bytes.
    pub memory_available: u64,
    /// A settled recording that repeats frames (its id, per mille).
    pub repeating: Option<(String, u16)>,
}

impl Measured {
    /// Takes a telemetry sample; `previous` smooths the CPU (one sample
    /// is one second of a bursty load).
    pub fn from_telemetry(
        t: &WorkerTelemetry,
        previous: Option<&Measured>,
        config: &AdmissionConfig,
    ) -> Measured {
        let settled = |s: &&SlotProgress| s.media_ms >= COST_SETTLES_AFTER_MS;
        let cpu_used = match previous {
            // An exponential average, weight 0.3 on the new sample.
            Some(p) if p.cpu_capacity > 0 => {
                ((u64::from(p.cpu_used) * 7 + u64::from(t.cpu_millicores) * 3) / 10) as u32
            }
            _ => t.cpu_millicores,
        };
        Measured {
            cpu_capacity: t.capacity.cpu_millicores,
            cpu_used,
            unsettled_cpu: t
                .slots
                .iter()
                .filter(|s| !settled(s))
                .map(|s| s.cpu_millicores)
                .sum(),
            settled: t.slots.iter().filter(settled).count() as u32,
            memory_available: t.capacity.memory_available_bytes,
            repeating: t
                .slots
                .iter()
                .filter(settled)
                .filter(|s| s.repeated_permille >= config.repeated_limit_permille)
                .max_by_key(|s| s.repeated_permille)
                .map(|s| {
                    (
                        s.recording
                            .as_ref()
                            .map_or_else(String::new, |r| r.to_string()),
                        s.repeated_permille,
                    )
                }),
        }
    }
}

/// The fleet's estimate of one recording's cost, learned from settled
/// recordings.
#[derive(Debug, Clone)]
pub struct CostModel {
    config: AdmissionConfig,
    /// Running average of settled recordings' CPU, millicores (None: none
    /// measured yet).
    learned: Option<u32>,
}

impl CostModel {
    /// A model that knows nothing yet.
    pub fn new(config: AdmissionConfig) -> Self {
        CostModel {
            config,
            learned: None,
        }
    }

    /// The settings.
    pub fn config(&self) -> &AdmissionConfig {
        &self.config
    }

    /// Learns from a worker's telemetry: each settled recording's CPU.
    pub fn learn(&mut self, t: &WorkerTelemetry) {
        for s in t
            .slots
            .iter()
            .filter(|s| s.media_ms >= COST_SETTLES_AFTER_MS)
        {
            if s.cpu_millicores == 0 {
                continue;
            }
            self.learned = Some(match self.learned {
                // Weight 0.05 per sample: one recording's second moves it
                // little, a fleet's worth of seconds moves it.
                Some(avg) => ((u64::from(avg) * 95 + u64::from(s.cpu_millicores) * 5) / 100) as u32,
                None => s.cpu_millicores,
            });
        }
    }

    /// What one more recording is expected to cost, millicores (never
    /// below 50: a division by it must mean something).
    pub fn estimate(&self) -> u32 {
        self.learned
            .unwrap_or(self.config.default_estimate_millicores)
            .max(50)
    }

    /// The units a worker with `slots` offers when `held` are taken on it
    /// and `m` is what it measured; with what admission makes of it.
    pub fn offer(&self, slots: u32, held: u32, m: Option<&Measured>) -> (u32, Admission) {
        let by_slots = slots.saturating_sub(held);
        let Some(m) = m.filter(|m| self.config.enabled && m.cpu_capacity > 0) else {
            return (
                slots,
                Admission {
                    takes: by_slots,
                    ..Admission::default()
                },
            );
        };
        let estimate = self.estimate();
        let unsettled = held.saturating_sub(m.settled);
        // What the worker uses, with its starts counted at the estimate
        // instead of at what a start measures.
        let committed = u64::from(m.cpu_used.saturating_sub(m.unsettled_cpu))
            + u64::from(unsettled) * u64::from(estimate);
        let budget = u64::from(m.cpu_capacity) * u64::from(self.config.target_permille) / 1000;
        let headroom = budget.saturating_sub(committed);
        let by_cpu = (headroom / u64::from(estimate)) as u32;
        let by_memory = (m.memory_available / self.config.memory_per_recording_bytes.max(1)) as u32;
        let mut takes = by_slots;
        let mut limit = String::new();
        if let Some((id, permille)) = &m.repeating {
            takes = 0;
            limit = format!(
                "{id} repeats {}.{}% of its frames: the worker is short of CPU",
                permille / 10,
                permille % 10
            );
        } else if by_cpu < takes {
            takes = by_cpu;
            limit = format!(
                "CPU: {:.2} of {:.2} cores free below {}%, a recording is expected to take {:.2}",
                headroom as f64 / 1000.0,
                m.cpu_capacity as f64 / 1000.0,
                self.config.target_permille / 10,
                f64::from(estimate) / 1000.0
            );
        }
        if by_memory < takes {
            takes = by_memory;
            limit = format!(
                "memory: {} MiB available, a recording needs {} MiB",
                m.memory_available >> 20,
                self.config.memory_per_recording_bytes >> 20
            );
        }
        (
            held + takes,
            Admission {
                measured: true,
                cpu_capacity_millicores: m.cpu_capacity,
                cpu_used_millicores: m.cpu_used,
                cpu_headroom_millicores: headroom.min(u64::from(u32::MAX)) as u32,
                memory_available_bytes: m.memory_available,
                estimate_millicores: estimate,
                takes,
                limit,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use recfleet_protocol::{MachineCapacity, RecordingId};

    fn slot(id: &str, media_ms: u64, cpu: u32, repeated: u16) -> SlotProgress {
        SlotProgress {
            recording: Some(RecordingId::new(id).unwrap()),
            media_ms,
            cpu_millicores: cpu,
            repeated_permille: repeated,
            ..SlotProgress::default()
        }
    }

    fn telemetry(used: u32, slots: Vec<SlotProgress>) -> WorkerTelemetry {
        WorkerTelemetry {
            at: 0,
            cpu_millicores: used,
            rss_bytes: 0,
            slots,
            upload_buffer_bytes: 0,
            upload_buffer_full: false,
            ready: Default::default(),
            capacity: MachineCapacity {
                cpu_millicores: 2000,
                memory_available_bytes: 16 << 30,
            },
        }
    }

    fn measured(t: &WorkerTelemetry) -> Measured {
        Measured::from_telemetry(t, None, &AdmissionConfig::default())
    }

    #[test]
    fn a_worker_that_does_not_measure_offers_its_slots() {
        let model = CostModel::new(AdmissionConfig::default());
        let (units, a) = model.offer(4, 1, None);
        assert_eq!((units, a.takes, a.measured), (4, 3, false));
        let mut t = telemetry(100, vec![]);
        t.capacity.cpu_millicores = 0;
        assert_eq!(model.offer(4, 1, Some(&measured(&t))).0, 4);
    }

    #[test]
    fn measured_cost_limits_below_the_slots() {
        let mut model = CostModel::new(AdmissionConfig::default());
        // Two recordings measured at 600 millicores each: 1,300 in all.
        let t = telemetry(
            1300,
            vec![slot("a", 20_000, 600, 0), slot("b", 20_000, 600, 0)],
        );
        model.learn(&t);
        assert_eq!(model.estimate(), 600);
        // Budget 1,800; 500 free: no third recording though 8 slots.
        let (units, a) = model.offer(8, 2, Some(&measured(&t)));
        assert_eq!((units, a.takes), (2, 0), "{a:?}");
        assert!(a.limit.starts_with("CPU:"), "{}", a.limit);
        assert_eq!(a.cpu_headroom_millicores, 500);
        // One recording: room for one more.
        let t = telemetry(700, vec![slot("a", 20_000, 600, 0)]);
        let (units, a) = model.offer(8, 1, Some(&measured(&t)));
        assert_eq!((units, a.takes), (2, 1), "{a:?}");
    }

    #[test]
    fn a_start_counts_at_the_estimate_until_measured() {
        let model = CostModel::new(AdmissionConfig::default());
        // A start spikes at 1,500; admission counts 700 (the default
        // estimate) in its place: 100 + 700 of 1,800 leaves one more.
        let t = telemetry(1600, vec![slot("a", 2_000, 1500, 0)]);
        let (_, a) = model.offer(8, 1, Some(&measured(&t)));
        assert_eq!(a.takes, 1, "{a:?}");
        // A placement the worker has not started yet counts too.
        let t = telemetry(100, vec![]);
        let (_, a) = model.offer(8, 2, Some(&measured(&t)));
        assert_eq!(a.takes, 0, "{a:?}");
    }

    #[test]
    fn repeated_frames_stop_admission_and_so_does_memory() {
        let model = CostModel::new(AdmissionConfig::default());
        let t = telemetry(600, vec![slot("busy", 20_000, 500, 120)]);
        let (units, a) = model.offer(8, 1, Some(&measured(&t)));
        assert_eq!((units, a.takes), (1, 0));
        assert!(a.limit.contains("busy repeats 12.0%"), "{}", a.limit);
        // An unsettled start's repeats do not count (starts stutter).
        let t = telemetry(600, vec![slot("new", 2_000, 500, 400)]);
        assert!(model.offer(8, 1, Some(&measured(&t))).1.takes > 0);
        let mut t = telemetry(100, vec![]);
        t.capacity.memory_available_bytes = 1 << 30;
        let (_, a) = model.offer(8, 0, Some(&measured(&t)));
        assert_eq!(a.takes, 1);
        assert!(a.limit.starts_with("memory"), "{}", a.limit);
    }

    #[test]
    fn the_cpu_is_smoothed() {
        let config = AdmissionConfig::default();
        let first = Measured::from_telemetry(&telemetry(1000, vec![]), None, &config);
        let next = Measured::from_telemetry(&telemetry(2000, vec![]), Some(&first), &config);
        assert_eq!(next.cpu_used, 1300);
    }

    #[test]
    fn disabled_admission_counts_slots() {
        let model = CostModel::new(AdmissionConfig {
            enabled: false,
            ..AdmissionConfig::default()
        });
        let t = telemetry(1900, vec![slot("a", 20_000, 1800, 300)]);
        assert_eq!(model.offer(4, 1, Some(&measured(&t))).0, 4);
    }
}
