//! A running part's media health: the encoder's analysis files and the
//! page watcher's news go into a [`HealthTracker`]; a change of state is
//! told to the slot's telemetry and the part's `worker` log; the policy's
//! restarts are returned to the part's monitor (`super::pipeline`).

use std::sync::{Arc, Mutex};

use recfleet_protocol::manifest::SegmentEndReason;
use recfleet_protocol::spec::CaptureMode;
use recfleet_protocol::{now_ms, Health, HealthState, SlotProgress};

use super::health::{HealthTracker, MetadataTail, PageHealth, AUDIO_FILE, VIDEO_FILE};
use super::part::PartContext;

/// The part's media health: the encoder's analysis files and the page
/// watcher's news, told to the telemetry (and the part's `worker.log`)
/// when the state changes; the policy's restarts.
pub(super) struct HealthWatch {
    tracker: HealthTracker,
    /// Only the built-in capture is analysed.
    analysed: bool,
    video: MetadataTail,
    audio: MetadataTail,
    told: HealthState,
    wrong_since: Option<u64>,
}

impl HealthWatch {
    pub(super) fn new(ctx: &PartContext) -> Self {
        HealthWatch {
            tracker: HealthTracker::new(ctx.spec.health.resolve(), ctx.spec.audio),
            analysed: matches!(ctx.spec.capture, CaptureMode::Builtin),
            video: MetadataTail::new(ctx.dir.join(VIDEO_FILE)),
            audio: MetadataTail::new(ctx.dir.join(AUDIO_FILE)),
            told: HealthState::Unknown,
            wrong_since: None,
        }
    }

    /// When the page first showed the wrong thing (kept while it does).
    pub(super) fn wrong_since(&mut self, now: u64) -> u64 {
        *self.wrong_since.get_or_insert(now)
    }

    /// Takes the page watcher's news and tells a change at once.
    pub(super) fn page(
        &mut self,
        ctx: &PartContext,
        shared: &Arc<Mutex<SlotProgress>>,
        page: PageHealth,
    ) {
        if !matches!(page, PageHealth::Wrong { .. }) {
            self.wrong_since = None;
        }
        self.tracker.page(page);
        if self.analysed {
            self.publish(ctx, shared, self.tracker.health(now_ms()));
        }
    }

    /// Reads the analysis; returns a restart the policy asks for.
    pub(super) fn tick(
        &mut self,
        ctx: &PartContext,
        shared: &Arc<Mutex<SlotProgress>>,
        first_frame_at: Option<u64>,
    ) -> Option<(SegmentEndReason, bool)> {
        if !self.analysed {
            return None;
        }
        if let Some(at) = first_frame_at {
            self.tracker.set_anchor(at);
        }
        for s in self.video.poll().into_iter().chain(self.audio.poll()) {
            self.tracker.signal(s);
        }
        let now = now_ms();
        let health = self.tracker.health(now);
        let restart = self.tracker.restart_for(&health, now);
        let state = health.state;
        self.publish(ctx, shared, health);
        restart.map(|what| (SegmentEndReason::Unhealthy { state, what }, true))
    }

    fn publish(&mut self, ctx: &PartContext, shared: &Arc<Mutex<SlotProgress>>, health: Health) {
        if health.state == HealthState::Unknown && self.told == HealthState::Unknown {
            return;
        }
        if health.state != self.told {
            tracing::info!(
                recording = %ctx.spec.id, part = ctx.part, health = %health.state,
                detail = %health.detail, "media health changed"
            );
            ctx.append_log(
                "worker",
                &[format!("health {}: {}", health.state, health.detail)],
            );
            self.told = health.state;
        }
        if let Ok(mut s) = shared.lock() {
            s.level_db = self.tracker.level();
            s.health = health;
        }
    }
}
