//! Console requests. Authorization happened at the connection; here each
//! request is validated and applied.

use recfleet_certs::Identity;
use recfleet_protocol::manifest::SegmentEndReason;
use recfleet_protocol::{
    now_ms, ConsoleRequest, ConsoleResponse, CoordinatorMessage, DrainMode, ErrorCode, EventKind,
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
                deadline_secs: _,
                force: _,
            } => {
                if mode == DrainMode::Migrate {
                    error(
                        ErrorCode::Unavailable,
                        "drain with migrate is not available in this build; use --mode wait",
                    )
                } else {
                    match self.workers.get_mut(&worker) {
                        None => error(ErrorCode::NotFound, format!("no worker \"{worker}\"")),
                        Some(w) => {
                            w.info.state = WorkerState::Draining;
                            let _ = w.session.as_ref().map(|s| {
                                s.tx.send(CoordinatorMessage::DrainState { draining: true })
                            });
                            self.worker_changed(&worker);
                            self.drain_progress(&worker);
                            ConsoleResponse::Accepted {
                                message: format!("{worker} takes no new recordings; its recordings run to their end"),
                            }
                        }
                    }
                }
            }
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
                    let _ = w.session.as_ref().map(|s| {
                        s.tx.send(CoordinatorMessage::DrainState {
                            draining: keep_ineligible,
                        })
                    });
                    self.worker_changed(&worker);
                    self.schedule();
                    ConsoleResponse::Accepted {
                        message: format!("{worker} is back in service"),
                    }
                }
            },
            ConsoleRequest::Reassign { .. } => error(
                ErrorCode::Unavailable,
                "reassign is not available in this build",
            ),
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

    /// Tells subscribers where a drain stands.
    pub(super) fn drain_progress(&mut self, worker: &recfleet_protocol::WorkerName) {
        let remaining = self.recordings_on(worker);
        let complete = remaining.is_empty();
        let message = if complete {
            format!("{worker} is drained: no recording runs on it")
        } else {
            format!(
                "{worker} drains: {} recording(s) still running to their end",
                remaining.len()
            )
        };
        self.emit(EventKind::DrainProgress {
            worker: worker.clone(),
            remaining,
            message,
            complete,
        });
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
