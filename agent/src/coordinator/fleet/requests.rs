//! Console requests. Authorization happened at the connection; here each
//! request is validated and applied.

use recfleet_certs::Identity;
use recfleet_protocol::manifest::SegmentEndReason;
use recfleet_protocol::{
    ConsoleRequest, ConsoleResponse, CoordinatorMessage, DrainMode, ErrorCode, RecordingState,
    WireError, WorkerState, LIST_MAX,
};

use super::copies::CopyGone;
use super::{Effect, Fleet, PendingPing, Recording, ReplyTo};
use crate::coordinator::store::RecordingRow;

pub(super) fn error(code: ErrorCode, message: impl Into<String>) -> ConsoleResponse {
    ConsoleResponse::Error(WireError::new(code, message))
}

impl Fleet {
    pub(super) fn request(&mut self, who: &Identity, req: ConsoleRequest, reply: ReplyTo) {
        // The events this request causes now say who caused them.
        self.actor = req.is_action().then(|| who.to_string());
        self.request_as(who, req, reply);
        self.actor = None;
    }

    /// A request refused for the asker's role, or a connection refused in
    /// its handshake: audited (the refusal itself was answered, and
    /// logged, at the connection).
    pub(super) fn refused(&mut self, actor: &str, what: &str) {
        self.out.push(Effect::Audit {
            at: self.now.wall_ms,
            actor: actor.to_string(),
            action: "refused",
            target: what.to_string(),
        });
    }

    fn request_as(&mut self, who: &Identity, req: ConsoleRequest, reply: ReplyTo) {
        if req.is_action() {
            // In the same transaction as the action's own writes: an action
            // that is not audited does not happen.
            self.out.push(Effect::Audit {
                at: self.now.wall_ms,
                actor: who.to_string(),
                action: action_name(&req),
                target: audit_target(&req),
            });
        }
        let response = match req {
            ConsoleRequest::WhoAmI => ConsoleResponse::Identity {
                role: who.role().to_string(),
                name: who.name().to_string(),
                coordinator_version: self.version.clone(),
            },
            ConsoleRequest::Ping { payload } => ConsoleResponse::Pong { payload },
            ConsoleRequest::PingWorker { worker, payload } => {
                let id = self.next_ping;
                self.next_ping += 1;
                if self.send_to(&worker, CoordinatorMessage::Ping { id, payload }) {
                    // Answered when the pong arrives, or with an error at
                    // the deadline (a tick).
                    let deadline =
                        self.now.mono_ms + self.settings.forward_deadline.as_millis() as u64;
                    self.pings.insert(id, PendingPing { reply, deadline });
                    return;
                }
                error(
                    ErrorCode::NotFound,
                    format!("worker \"{worker}\" is not connected"),
                )
            }
            ConsoleRequest::ListWorkers => ConsoleResponse::Workers(self.workers()),
            // The driver answers lists from the store (finished recordings
            // leave memory); these answers from memory serve the core alone.
            ConsoleRequest::ListRecordings { states } => {
                ConsoleResponse::Recordings(self.list_in_memory(&states, None, LIST_MAX).0)
            }
            ConsoleRequest::ListRecordingsPage {
                states,
                limit,
                after,
            } => {
                let (recordings, next) =
                    self.list_in_memory(&states, after.as_deref(), limit.clamp(1, LIST_MAX));
                ConsoleResponse::RecordingsPage { recordings, next }
            }
            // The driver answers it from the store, where the sender keeps
            // the deliveries; the core holds none.
            ConsoleRequest::ShowWebhooks { .. } => ConsoleResponse::WebhookDeliveries(Vec::new()),
            // The driver keeps the event history and reads the audit trail
            // (the core only emits and appends).
            ConsoleRequest::History { .. } => ConsoleResponse::History(Vec::new()),
            ConsoleRequest::Audit { .. } => ConsoleResponse::Audit(Vec::new()),
            // Answered by the driver from the store.
            ConsoleRequest::ListCoordinators => ConsoleResponse::Coordinators(Vec::new()),
            ConsoleRequest::ShowRecording { id } => match self.detail(&id) {
                Some(d) => ConsoleResponse::Recording(Box::new(d)),
                None => error(ErrorCode::NotFound, format!("no recording \"{id}\"")),
            },
            ConsoleRequest::StartRecording(spec) => self.start_recording(spec),
            ConsoleRequest::StopRecording { id } => self.stop_recording(&id),
            ConsoleRequest::Drain {
                worker,
                mode,
                deadline_secs,
                force,
            } => match self.workers.get(&worker) {
                None => error(ErrorCode::NotFound, format!("no worker \"{worker}\"")),
                Some(_) => {
                    self.begin_drain(&worker, mode, deadline_secs, force, false);
                    let others_have_room =
                        self.placements.pick(1, None, None, Some(&worker)).is_ok();
                    let what = match (mode, force) {
                        (_, true) => "its recordings move to other workers now".to_string(),
                        (DrainMode::Migrate, false) => {
                            "its recordings move to other workers, make-before-break".to_string()
                        }
                        (DrainMode::Wait, false) => format!(
                            "its recordings run to their end (what remains after {} s is migrated)",
                            deadline_secs.unwrap_or(super::moves::DEFAULT_DRAIN_DEADLINE_SECS)
                        ),
                    };
                    let room = if others_have_room || self.recordings_on(&worker).is_empty() {
                        String::new()
                    } else {
                        "; no other worker has free capacity now, so they wait for capacity"
                            .to_string()
                    };
                    ConsoleResponse::Accepted {
                        message: format!("{worker} takes no new recordings; {what}{room}"),
                    }
                }
            },
            ConsoleRequest::Undrain {
                worker,
                keep_ineligible,
            } => match self.workers.get_mut(&worker) {
                None => error(ErrorCode::NotFound, format!("no worker \"{worker}\"")),
                Some(w) => {
                    w.info.state = if keep_ineligible {
                        WorkerState::Ineligible
                    } else {
                        WorkerState::Ready
                    };
                    self.drains.remove(&worker);
                    self.worker_touched(&worker);
                    self.send_to(
                        &worker,
                        CoordinatorMessage::DrainState {
                            draining: keep_ineligible,
                        },
                    );
                    self.worker_changed(&worker);
                    self.schedule();
                    let how = if keep_ineligible {
                        "drain ended; it stays ineligible for new recordings"
                    } else {
                        "back in service"
                    };
                    ConsoleResponse::Accepted {
                        message: format!("{worker}: {how}"),
                    }
                }
            },
            ConsoleRequest::Reassign { id, to } => self.reassign(&id, to.as_ref()),
        };
        self.out.push(Effect::Reply {
            to: reply,
            response,
        });
    }

    /// Recordings in memory, oldest first, from after the token `after`
    /// (`created_at/id`), at most `limit`, and the next page's token.
    fn list_in_memory(
        &self,
        states: &[RecordingState],
        after: Option<&str>,
        limit: u32,
    ) -> (Vec<recfleet_protocol::RecordingInfo>, Option<String>) {
        let mut rows: Vec<&Recording> = self
            .recordings
            .values()
            .filter(|r| states.is_empty() || states.contains(&r.row.state))
            .collect();
        rows.sort_by(|a, b| {
            (a.row.created_at, &a.row.spec.id).cmp(&(b.row.created_at, &b.row.spec.id))
        });
        let start = after.and_then(crate::coordinator::store::parse_page_token);
        let mut page: Vec<&Recording> = rows
            .into_iter()
            .filter(|r| {
                start.as_ref().is_none_or(|(at, id)| {
                    (r.row.created_at, r.row.spec.id.as_str()) > (*at, id.as_str())
                })
            })
            .take(limit as usize + 1)
            .collect();
        let more = page.len() > limit as usize;
        page.truncate(limit as usize);
        let next = more
            .then(|| page.last())
            .flatten()
            .map(|r| crate::coordinator::store::page_token(r.row.created_at, &r.row.spec.id));
        (
            page.into_iter().map(|r| self.recording_info(r)).collect(),
            next,
        )
    }

    /// The coordinator's own output, or under one of the allowed prefixes.
    fn destination_allowed(&self, dest: &str) -> bool {
        let dest = dest.trim_end_matches('/');
        let under = |prefix: &str| {
            let prefix = prefix.trim_end_matches('/');
            dest == prefix || dest.starts_with(&format!("{prefix}/"))
        };
        dest == self.settings.destination.trim_end_matches('/')
            || self.settings.allowed_destinations.iter().any(|p| under(p))
    }

    fn start_recording(&mut self, mut spec: recfleet_protocol::RecordingSpec) -> ConsoleResponse {
        // Filled in before anything compares specs: a retried request
        // without a destination is the same request.
        spec.destination
            .get_or_insert_with(|| self.settings.destination.clone());
        spec.health = Box::new(spec.health.filled(&self.settings.health));
        if let Err(problems) = spec.validate() {
            return ConsoleResponse::Error(
                WireError::new(
                    ErrorCode::InvalidInput,
                    format!("the recording request has {} problem(s)", problems.len()),
                )
                .with_details(problems.iter().map(|p| p.to_string()).collect()),
            );
        }
        if let Some(dest) = &spec.destination {
            if !self.destination_allowed(dest) {
                return ConsoleResponse::Error(
                    WireError::new(
                        ErrorCode::InvalidInput,
                        "the destination is not one this coordinator writes to",
                    )
                    .with_details(vec![format!(
                        "destination: {dest} is neither the coordinator's output ({}) nor under an allowed output ({})",
                        self.settings.destination,
                        if self.settings.allowed_destinations.is_empty() {
                            "none configured".to_string()
                        } else {
                            self.settings.allowed_destinations.join(", ")
                        }
                    )]),
                );
            }
        }
        if let Err(why) = self.settings.url_policy.check(&spec.url) {
            return ConsoleResponse::Error(
                WireError::new(
                    ErrorCode::InvalidInput,
                    "the page is not allowed by the URL policy",
                )
                .with_details(vec![format!("url: {why}")]),
            );
        }
        if let Some(existing) = self.recordings.get(&spec.id) {
            if existing.row.spec == spec {
                return ConsoleResponse::Started {
                    recording: self.recording_info(existing),
                    created: false,
                };
            }
            return error(
                ErrorCode::Conflict,
                format!(
                    "recording id \"{}\" is already used by a different request; choose another id",
                    spec.id
                ),
            );
        }
        let id = spec.id.clone();
        let row = RecordingRow {
            spec,
            state: RecordingState::Pending,
            epoch: recfleet_protocol::Epoch(0),
            worker: None,
            created_at: self.now.wall_ms,
            started_at: None,
            ended_at: None,
            reason: None,
            restarts: 0,
            failed_placements: 0,
            outputs: None,
        };
        // Durable before it is acknowledged: the driver commits this write
        // before the answer leaves, so a request the caller saw accepted
        // survives a crash of the coordinator.
        self.out.push(Effect::PutRecording(row.clone()));
        self.recordings.insert(id.clone(), Recording::new(row));
        self.reindex(&id);
        tracing::info!(recording = %id, "recording requested");
        self.changed(&id);
        self.schedule();
        let info = self.recordings.get(&id).map(|r| self.recording_info(r));
        match info {
            Some(recording) => ConsoleResponse::Started {
                recording,
                created: true,
            },
            None => error(ErrorCode::Internal, "the recording vanished"),
        }
    }

    fn stop_recording(&mut self, id: &recfleet_protocol::RecordingId) -> ConsoleResponse {
        let Some(r) = self.recordings.get(id) else {
            return error(ErrorCode::NotFound, format!("no recording \"{id}\""));
        };
        let (state, worker, epoch) = (r.row.state, r.row.worker.clone(), r.row.epoch);
        match state {
            s if s.is_terminal() => ConsoleResponse::Accepted {
                message: format!("{id} has already ended ({s})"),
            },
            RecordingState::Stopping | RecordingState::Finalizing => ConsoleResponse::Accepted {
                message: format!("{id} is already stopping"),
            },
            RecordingState::Pending | RecordingState::Interrupted => {
                self.finalize(id, "stopped on request".into());
                ConsoleResponse::Accepted {
                    message: format!("{id} stopped"),
                }
            }
            _ => {
                if self.recordings.get(id).is_some_and(|r| r.moving.is_some()) {
                    self.cancel_move(id, "the recording was stopped");
                }
                self.drop_copy(
                    id,
                    "the recording was stopped",
                    CopyGone::Stop(SegmentEndReason::Stopped),
                    false,
                );
                self.stop_old_placements_now(id);
                self.set_state(id, RecordingState::Stopping, None);
                let sent = worker.as_ref().is_some_and(|w| {
                    self.send_to(
                        w,
                        CoordinatorMessage::StopSegment {
                            recording: id.clone(),
                            epoch,
                            reason: SegmentEndReason::Stopped,
                        },
                    )
                });
                if !sent {
                    self.finalize(
                        id,
                        "stopped on request (its worker is not connected)".into(),
                    );
                }
                ConsoleResponse::Accepted {
                    message: format!("{id} is stopping; its manifest follows"),
                }
            }
        }
    }

    fn reassign(
        &mut self,
        id: &recfleet_protocol::RecordingId,
        to: Option<&recfleet_protocol::WorkerName>,
    ) -> ConsoleResponse {
        let Some(r) = self.recordings.get(id) else {
            return error(ErrorCode::NotFound, format!("no recording \"{id}\""));
        };
        if r.row.state != RecordingState::Recording {
            return error(
                ErrorCode::Conflict,
                format!(
                    "{id} is {}; only a recording that is capturing can be moved",
                    r.row.state
                ),
            );
        }
        if let Some(m) = &r.moving {
            return error(
                ErrorCode::Conflict,
                format!("{id} is already moving to {}", m.to),
            );
        }
        let from = r.row.worker.clone();
        if let Some((copy_worker, capturing)) =
            r.copy.as_ref().map(|c| (c.worker.clone(), c.capturing))
        {
            // Its second copy's worker already records it: that copy
            // becomes the first at once (no new browser, no gap).
            if capturing && to.is_none_or(|t| *t == copy_worker) && self.swap_copy(id) {
                let from = from
                    .map(|w| w.to_string())
                    .unwrap_or_else(|| "its worker".into());
                return ConsoleResponse::Accepted {
                    message: format!("{id} now records on {copy_worker}, which recorded it already as its second copy; {from} stops shortly and a new second copy is placed"),
                };
            }
            if to.is_some_and(|t| *t == copy_worker) {
                return error(
                    ErrorCode::Conflict,
                    format!("{id}'s second copy on {copy_worker} has not captured yet; try again when it has"),
                );
            }
        }
        match self.move_target(id, from.as_ref(), to) {
            Err(why) => {
                let code = if why.contains("capacity") {
                    ErrorCode::NoCapacity
                } else {
                    ErrorCode::Conflict
                };
                let code = if why.starts_with("no worker") {
                    ErrorCode::NotFound
                } else {
                    code
                };
                error(code, format!("cannot move {id}: {why}"))
            }
            Ok(target) => {
                // One extra placement at a time: the second copy gives way
                // to the move, and is placed again once it is done.
                self.drop_copy(
                    id,
                    &format!("{id} moves to {target}"),
                    CopyGone::Stop(SegmentEndReason::Reassigned),
                    false,
                );
                self.start_move(id, &target);
                let from = from
                    .map(|w| w.to_string())
                    .unwrap_or_else(|| "its worker".into());
                ConsoleResponse::Accepted {
                    message: format!("moving {id} from {from} to {target}: {from} stops when {target} has captured its first frame"),
                }
            }
        }
    }
}

/// The audit log's target: the object acted on, not the whole request.
fn audit_target(req: &ConsoleRequest) -> String {
    match req {
        ConsoleRequest::StartRecording(spec) => spec.id.to_string(),
        ConsoleRequest::StopRecording { id } => id.to_string(),
        ConsoleRequest::Drain { worker, mode, .. } => format!("{worker} ({mode:?})"),
        ConsoleRequest::Undrain { worker, .. } => worker.to_string(),
        ConsoleRequest::Reassign { id, to } => match to {
            Some(to) => format!("{id} -> {to}"),
            None => id.to_string(),
        },
        other => format!("{other:?}"),
    }
}

fn action_name(req: &ConsoleRequest) -> &'static str {
    match req {
        ConsoleRequest::StartRecording(_) => "start",
        ConsoleRequest::StopRecording { .. } => "stop",
        ConsoleRequest::Drain { .. } => "drain",
        ConsoleRequest::Undrain { .. } => "undrain",
        ConsoleRequest::Reassign { .. } => "reassign",
        _ => "read",
    }
}
