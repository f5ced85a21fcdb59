//! Console requests. Authorization happened at the connection; here each
//! request is validated and applied.

use recfleet_certs::Identity;
use recfleet_protocol::manifest::SegmentEndReason;
use recfleet_protocol::{
    now_ms, ConsoleRequest, ConsoleResponse, CoordinatorMessage, DrainMode, ErrorCode,
    RecordingDetail, RecordingState, WireError, WorkerState,
};
use tokio::sync::oneshot;

use super::{Fleet, Recording};
use crate::coordinator::store::RecordingRow;

fn error(code: ErrorCode, message: impl Into<String>) -> ConsoleResponse {
    ConsoleResponse::Error(WireError::new(code, message))
}

impl Fleet {
    pub(super) fn request(
        &mut self,
        who: &Identity,
        req: ConsoleRequest,
        reply: oneshot::Sender<ConsoleResponse>,
    ) {
        if req.is_action() {
            let target = format!("{req:?}");
            if let Err(e) = self
                .store
                .audit(&who.to_string(), action_name(&req), &target, "")
            {
                tracing::error!(error = %e, "cannot write the audit log");
                let _ = reply.send(error(
                    ErrorCode::Unavailable,
                    format!("the store is unavailable: {e}"),
                ));
                return;
            }
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
                    // Answered when the pong arrives.
                    self.pings.insert(id, reply);
                    return;
                }
                error(
                    ErrorCode::NotFound,
                    format!("worker \"{worker}\" is not connected"),
                )
            }
            ConsoleRequest::ListWorkers => {
                let names: Vec<_> = self.workers.keys().cloned().collect();
                ConsoleResponse::Workers(names.iter().filter_map(|n| self.worker_info(n)).collect())
            }
            ConsoleRequest::ListRecordings { states } => ConsoleResponse::Recordings(
                self.recordings
                    .values()
                    .filter(|r| states.is_empty() || states.contains(&r.row.state))
                    .map(|r| self.recording_info(r))
                    .collect(),
            ),
            ConsoleRequest::ListRecordingsPage {
                states,
                limit,
                after,
            } => {
                // Interim, from memory by id (the fleet rewrite replaces it).
                let limit = match limit {
                    0 => recfleet_protocol::LIST_DEFAULT,
                    n => n.min(recfleet_protocol::LIST_MAX),
                } as usize;
                let mut recordings: Vec<_> = self
                    .recordings
                    .iter()
                    .filter(|(id, _)| after.as_deref().is_none_or(|a| id.as_str() > a))
                    .filter(|(_, r)| states.is_empty() || states.contains(&r.row.state))
                    .take(limit + 1)
                    .map(|(_, r)| self.recording_info(r))
                    .collect();
                let next = (recordings.len() > limit).then(|| {
                    recordings.truncate(limit);
                    recordings.last().map(|r| r.id.to_string())
                });
                ConsoleResponse::RecordingsPage {
                    recordings,
                    next: next.flatten(),
                }
            }
            ConsoleRequest::ShowRecording { id } => {
                match (self.recordings.get(&id), self.manifest(&id)) {
                    (Some(r), Some(manifest)) => {
                        ConsoleResponse::Recording(Box::new(RecordingDetail {
                            info: self.recording_info(r),
                            spec: r.row.spec.clone(),
                            manifest,
                        }))
                    }
                    _ => error(ErrorCode::NotFound, format!("no recording \"{id}\"")),
                }
            }
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
                    let others_have_room = self.workers.iter().any(|(n, w)| {
                        n != &worker
                            && w.session.is_some()
                            && w.info.state == WorkerState::Ready
                            && w.info.capacity > self.used_on(n)
                    });
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
        let _ = reply.send(response);
    }

    fn start_recording(&mut self, spec: recfleet_protocol::RecordingSpec) -> ConsoleResponse {
        if let Err(problems) = spec.validate() {
            return ConsoleResponse::Error(
                WireError::new(
                    ErrorCode::InvalidInput,
                    format!("the recording request has {} problem(s)", problems.len()),
                )
                .with_details(problems.iter().map(|p| p.to_string()).collect()),
            );
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
            created_at: now_ms(),
            started_at: None,
            ended_at: None,
            reason: None,
            restarts: 0,
            failed_placements: 0,
        };
        // Durable before it is acknowledged: a request the caller saw
        // accepted survives a crash of the coordinator.
        if let Err(e) = self.store.put_recording(&row) {
            return error(
                ErrorCode::Unavailable,
                format!("cannot store the recording: {e}"),
            );
        }
        self.recordings.insert(id.clone(), Recording::new(row));
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
