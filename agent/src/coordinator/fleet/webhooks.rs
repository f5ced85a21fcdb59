//! Which state changes become webhook events. The event is an effect of
//! the turn like the row it reports, so that the driver commits both in one
//! transaction: no event for a change that was rolled back, no change
//! without its event.

use recfleet_protocol::{RecordingId, RecordingState};

use super::{Effect, Fleet};
use crate::coordinator::webhook::{WebhookEvent, WebhookKind};

impl Fleet {
    /// After recording `id` went from `from` to `to`: the webhook event, if
    /// the change is one and webhooks are configured. Called by `set_state`
    /// after `changed`, so the event id carries the number of the
    /// subscribers' event for the same change.
    pub(super) fn webhook(&mut self, id: &RecordingId, from: RecordingState, to: RecordingState) {
        if self.settings.webhook_urls.is_empty() {
            return;
        }
        let Some(r) = self.recordings.get(id) else {
            return;
        };
        // Frames of an earlier placement: this one resumes, not starts. The
        // segments are stored, so a restarted coordinator knows it too.
        let recorded_before = r
            .segments
            .iter()
            .any(|s| s.epoch != r.row.epoch && s.first_frame_at.is_some());
        let Some(kind) = WebhookKind::of_transition(from, to, recorded_before) else {
            return;
        };
        let event = WebhookEvent::new(kind, &r.row, self.seq, self.now.wall_ms);
        self.out.push(Effect::Webhook(event));
    }
}
