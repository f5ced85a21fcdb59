//! Scenarios on the fleet core in simulated time: no processes, no sockets,
//! milliseconds each. A [`Sim`] plays the workers and the consoles; after
//! every turn it checks the capacity index against a recount.

use std::collections::{BTreeMap, HashMap};

use recfleet_certs::{Identity, Role};
use recfleet_protocol::manifest::SegmentEndReason;
use recfleet_protocol::{
    ConsoleRequest, ConsoleResponse, CoordinatorMessage, DrainMode, Epoch, ErrorCode, EventKind,
    RecordingId, RecordingSpec, RecordingState, RunningSegment, WorkerHello, WorkerMessage,
    WorkerName, WorkerState,
};

use super::{Effect, Fleet, FleetSettings, Input, Now, ReplyTo};
use crate::coordinator::store::RecordingRow;

const T0: u64 = 1_800_000_000_000;

struct Sim {
    fleet: Fleet,
    now: Now,
    next_reply: ReplyTo,
    next_session: u64,
    sessions: HashMap<WorkerName, u64>,
    /// Frames sent per session, not yet looked at.
    outbox: HashMap<u64, Vec<CoordinatorMessage>>,
    replies: HashMap<ReplyTo, ConsoleResponse>,
    events: Vec<EventKind>,
    writes: usize,
    closed: Vec<u64>,
    steps: u64,
    webhooks: Vec<crate::coordinator::webhook::WebhookEvent>,
    /// How the output writer answers: None stitches, Some says why not.
    stitch_error: Option<String>,
    /// Finalizations asked for.
    finalizes: Vec<RecordingId>,
    /// The writer does not answer (its queue was full, or it went away).
    writer_silent: bool,
    /// Each worker's host (default: a host of its own, `host-NAME`).
    hosts: HashMap<String, String>,
}

fn w(n: &str) -> WorkerName {
    WorkerName::new(n).unwrap()
}
fn rid(n: &str) -> RecordingId {
    RecordingId::new(n).unwrap()
}
fn operator() -> Identity {
    Identity::new(Role::Operator, "alice").unwrap()
}

impl Sim {
    fn new() -> Sim {
        Sim::with(FleetSettings::default(), 1, Vec::new())
    }

    fn with(
        settings: FleetSettings,
        boot: u64,
        loaded: Vec<(
            RecordingRow,
            Vec<recfleet_protocol::manifest::ManifestSegment>,
        )>,
    ) -> Sim {
        Sim {
            fleet: Fleet::new(settings, boot, loaded),
            now: Now {
                mono_ms: 1000,
                wall_ms: T0,
            },
            next_reply: 1,
            next_session: 1,
            sessions: HashMap::new(),
            outbox: HashMap::new(),
            replies: HashMap::new(),
            events: Vec::new(),
            writes: 0,
            closed: Vec::new(),
            steps: 0,
            webhooks: Vec::new(),
            stitch_error: None,
            finalizes: Vec::new(),
            writer_silent: false,
            hosts: HashMap::new(),
        }
    }

    fn step(&mut self, input: Input) {
        let effects = self.fleet.handle(self.now, input);
        let mut finalized = Vec::new();
        for e in effects {
            match e {
                // The output writer's answer: the stitched file is made.
                Effect::Finalize { spec, .. } if self.writer_silent => {
                    self.finalizes.push(spec.id.clone());
                }
                Effect::Finalize { spec, .. } => {
                    self.finalizes.push(spec.id.clone());
                    finalized.push(Input::Finalized {
                        id: spec.id.clone(),
                        outputs: recfleet_protocol::Outputs {
                            location: format!("file:///out/{}", spec.id),
                            error: self.stitch_error.clone(),
                            ..Default::default()
                        },
                        stored: Vec::new(),
                    })
                }
                Effect::Send { session, msg } => self.outbox.entry(session).or_default().push(msg),
                Effect::Reply { to, response } => {
                    self.replies.insert(to, response);
                }
                Effect::Event(ev) => self.events.push(ev.kind),
                Effect::CloseSession { session } => self.closed.push(session),
                Effect::Webhook(ev) => {
                    self.webhooks.push(ev);
                    self.writes += 1;
                }
                e if e.is_store_write() => self.writes += 1,
                _ => {}
            }
        }
        // The recount is O(recordings): every turn in small fleets, every
        // 500th in the burst.
        self.steps += 1;
        if self.fleet.recordings.len() <= 2_000 || self.steps.is_multiple_of(500) {
            self.check_index();
        }
        for input in finalized {
            self.step(input);
        }
    }

    /// The capacity index agrees with a recount from the recordings.
    fn check_index(&self) {
        let mut used: BTreeMap<WorkerName, u32> = BTreeMap::new();
        for r in self.fleet.recordings.values() {
            for h in r.holds() {
                *used.entry(h.worker).or_default() += h.cost;
            }
        }
        for name in self.fleet.workers.keys() {
            assert_eq!(
                self.fleet.placements.used(name),
                used.get(name).copied().unwrap_or(0),
                "index of {name} drifted"
            );
        }
        let waiting = self.fleet.recordings.values().filter(|r| r.waits()).count();
        assert_eq!(self.fleet.queue.len(), waiting, "queue drifted");
    }

    /// Lets `ms` pass, ticking every 250 ms as the driver does.
    fn advance(&mut self, ms: u64) {
        let mut left = ms;
        while left > 0 {
            let d = left.min(250);
            self.now.mono_ms += d;
            self.now.wall_ms += d;
            left -= d;
            self.step(Input::Tick);
        }
    }

    fn hello_with(&mut self, name: &str, capacity: u32, running: Vec<RunningSegment>) -> u64 {
        let session = self.next_session;
        self.next_session += 1;
        self.sessions.insert(w(name), session);
        let reply = self.next_reply;
        self.next_reply += 1;
        self.step(Input::Hello {
            session,
            address: "127.0.0.1:1".into(),
            hello: WorkerHello {
                name: w(name),
                version: "test".into(),
                capacity,
                labels: BTreeMap::new(),
                running,
                draining: false,
                host: self
                    .hosts
                    .get(name)
                    .cloned()
                    .unwrap_or_else(|| format!("host-{name}")),
            },
            reply,
        });
        session
    }

    fn hello(&mut self, name: &str, capacity: u32) -> u64 {
        self.hello_with(name, capacity, Vec::new())
    }

    fn request(&mut self, req: ConsoleRequest) -> Option<ConsoleResponse> {
        let reply = self.next_reply;
        self.next_reply += 1;
        self.step(Input::Request {
            identity: operator(),
            req,
            reply,
        });
        self.replies.remove(&reply)
    }

    fn start(&mut self, id: &str) -> ConsoleResponse {
        self.request(ConsoleRequest::StartRecording(RecordingSpec::new(
            rid(id),
            "https://class.example/room",
        )))
        .expect("a start is answered in its turn")
    }

    fn from(&mut self, worker: &str, msg: WorkerMessage) {
        let session = self.sessions[&w(worker)];
        self.step(Input::FromWorker {
            session,
            name: w(worker),
            msg,
            rtt_us: 100,
        });
    }

    fn close(&mut self, worker: &str, why: &str) {
        let session = self.sessions[&w(worker)];
        self.step(Input::WorkerClosed {
            session,
            name: w(worker),
            why: why.into(),
        });
    }

    /// StartSegments sent to `worker` since last asked.
    fn starts(&mut self, worker: &str) -> Vec<(RecordingId, Epoch)> {
        let session = self.sessions[&w(worker)];
        let frames = self.outbox.remove(&session).unwrap_or_default();
        let mut out = Vec::new();
        let mut rest = Vec::new();
        for f in frames {
            match f {
                CoordinatorMessage::StartSegment { epoch, spec, .. } => out.push((spec.id, epoch)),
                other => rest.push(other),
            }
        }
        self.outbox.insert(session, rest);
        out
    }

    /// StopSegments sent to `worker` since last asked.
    fn stops(&mut self, worker: &str) -> Vec<(RecordingId, Epoch, SegmentEndReason)> {
        let session = self.sessions[&w(worker)];
        let frames = self.outbox.remove(&session).unwrap_or_default();
        let mut out = Vec::new();
        let mut rest = Vec::new();
        for f in frames {
            match f {
                CoordinatorMessage::StopSegment {
                    recording,
                    epoch,
                    reason,
                } => out.push((recording, epoch, reason)),
                other => rest.push(other),
            }
        }
        self.outbox.insert(session, rest);
        out
    }

    /// The worker reports the placement capturing.
    fn capture(&mut self, worker: &str, id: &RecordingId, epoch: Epoch) {
        let at = self.now.wall_ms;
        self.from(
            worker,
            WorkerMessage::SegmentStarted {
                recording: id.clone(),
                epoch,
                part: 0,
                file: format!("{id}/{id}-e{}-p0.mp4", epoch.0),
                at,
            },
        );
        self.from(
            worker,
            WorkerMessage::FirstFrame {
                recording: id.clone(),
                epoch,
                part: 0,
                at,
            },
        );
    }

    fn ended(&mut self, worker: &str, id: &RecordingId, epoch: Epoch, reason: SegmentEndReason) {
        self.from(
            worker,
            WorkerMessage::PlacementEnded {
                recording: id.clone(),
                epoch,
                reason,
            },
        );
    }

    fn state(&self, id: &RecordingId) -> RecordingState {
        self.fleet.recordings[id].row.state
    }

    fn worker_of(&self, id: &RecordingId) -> Option<WorkerName> {
        self.fleet.recordings[id].row.worker.clone()
    }
}

fn code(r: &ConsoleResponse) -> Option<ErrorCode> {
    match r {
        ConsoleResponse::Error(e) => Some(e.code),
        _ => None,
    }
}

/// Two workers, one recording capturing on w1.
fn recording_on_w1() -> (Sim, RecordingId) {
    let mut sim = Sim::new();
    sim.hello("w1", 2);
    sim.start("r1");
    let started = sim.starts("w1");
    assert_eq!(started, vec![(rid("r1"), Epoch(1))]);
    sim.capture("w1", &rid("r1"), Epoch(1));
    sim.hello("w2", 2);
    assert_eq!(sim.state(&rid("r1")), RecordingState::Recording);
    (sim, rid("r1"))
}

#[test]
fn a_request_is_stored_placed_and_recorded() {
    let mut sim = Sim::new();
    sim.hello("w1", 1);
    let r = sim.start("r1");
    assert!(
        matches!(r, ConsoleResponse::Started { created: true, .. }),
        "{r:?}"
    );
    assert!(sim.writes >= 2, "the request and its placement are stored");
    assert_eq!(sim.starts("w1"), vec![(rid("r1"), Epoch(1))]);
    assert_eq!(sim.state(&rid("r1")), RecordingState::Assigned);
    sim.capture("w1", &rid("r1"), Epoch(1));
    assert_eq!(sim.state(&rid("r1")), RecordingState::Recording);
    // the same id again is idempotent; a different spec under it is refused
    assert!(matches!(
        sim.start("r1"),
        ConsoleResponse::Started { created: false, .. }
    ));
    let other = sim
        .request(ConsoleRequest::StartRecording(RecordingSpec::new(
            rid("r1"),
            "https://elsewhere.example/",
        )))
        .unwrap();
    assert_eq!(code(&other), Some(ErrorCode::Conflict));
}

#[test]
fn lost_by_connection_close_or_silence_fails_over_with_a_new_epoch() {
    for why in ["connection lost: timed out", "silent past the limit"] {
        let (mut sim, id) = recording_on_w1();
        if let Some(w1) = sim.fleet.workers.get_mut(&w("w1")) {
            w1.info.cpu_millicores = 900;
            w1.info.rss_bytes = 1 << 30;
        }
        sim.close("w1", why);
        let lost = &sim.fleet.workers[&w("w1")].info;
        assert_eq!(lost.state, WorkerState::Lost);
        // A lost worker's last load is no longer true: not shown.
        assert_eq!((lost.cpu_millicores, lost.rss_bytes), (0, 0), "{why}");
        assert!(sim
            .events
            .iter()
            .any(|e| matches!(e, EventKind::WorkerLost { name } if name.as_str() == "w1")));
        assert_eq!(sim.starts("w2"), vec![(id.clone(), Epoch(2))], "{why}");
        assert_eq!(sim.worker_of(&id), Some(w("w2")));
        assert_eq!(sim.state(&id), RecordingState::Assigned);
        let seg = &sim.fleet.recordings[&id].segments[0];
        assert_eq!(seg.end_reason, Some(SegmentEndReason::WorkerLost));
    }
}

#[test]
fn a_restarted_worker_that_no_longer_runs_it_loses_it_after_a_short_wait() {
    let (mut sim, id) = recording_on_w1();
    // w1 restarts: a new session whose hello does not list the recording.
    let old = sim.sessions[&w("w1")];
    sim.hello("w1", 2);
    assert!(sim.closed.contains(&old), "the old session is closed");
    assert_eq!(sim.state(&id), RecordingState::Recording, "not at once");
    sim.advance(1000);
    assert_eq!(sim.state(&id), RecordingState::Recording);
    sim.advance(1000);
    // Placed again. A worker that shut down is not avoided (it may simply
    // have restarted), so either worker may take it: exactly one does.
    let w1 = sim.starts("w1");
    let w2 = sim.starts("w2");
    assert_eq!(w1.len() + w2.len(), 1, "{w1:?} {w2:?}");
    assert_eq!(sim.state(&id), RecordingState::Assigned);
}

#[test]
fn a_reconnect_that_still_runs_it_keeps_it_without_a_new_placement() {
    let (mut sim, id) = recording_on_w1();
    sim.hello_with(
        "w1",
        2,
        vec![RunningSegment {
            recording: id.clone(),
            epoch: Epoch(1),
            part: 0,
            started_at: T0,
            last_frame_at: Some(T0 + 500),
        }],
    );
    sim.advance(3000);
    assert_eq!(sim.state(&id), RecordingState::Recording);
    assert!(sim.starts("w1").is_empty() && sim.starts("w2").is_empty());
}

#[test]
fn a_slot_that_gives_up_is_placed_elsewhere_and_fails_for_good_after_three() {
    let (mut sim, id) = recording_on_w1();
    let gave_up = SegmentEndReason::GaveUp {
        reason: "chromium exited 5 times".into(),
    };
    sim.ended("w1", &id, Epoch(1), gave_up.clone());
    assert_eq!(sim.starts("w2"), vec![(id.clone(), Epoch(2))], "avoids w1");
    sim.ended("w2", &id, Epoch(2), gave_up.clone());
    assert_eq!(sim.starts("w1"), vec![(id.clone(), Epoch(3))], "avoids w2");
    sim.ended("w1", &id, Epoch(3), gave_up);
    assert_eq!(sim.state(&id), RecordingState::Failed);
    let reason = sim.fleet.recordings[&id].row.reason.clone().unwrap();
    assert!(reason.contains("after 3 placements"), "{reason}");
    assert!(sim.starts("w1").is_empty() && sim.starts("w2").is_empty());
}

#[test]
fn partition_heal_fences_the_stale_placement() {
    let (mut sim, id) = recording_on_w1();
    sim.close("w1", "connection lost: timed out");
    assert_eq!(sim.starts("w2"), vec![(id.clone(), Epoch(2))]);
    sim.capture("w2", &id, Epoch(2));
    // the partition heals: w1 comes back still recording epoch 1
    sim.hello_with(
        "w1",
        2,
        vec![RunningSegment {
            recording: id.clone(),
            epoch: Epoch(1),
            part: 0,
            started_at: T0,
            last_frame_at: Some(T0 + 4000),
        }],
    );
    let stops = sim.stops("w1");
    assert_eq!(
        stops,
        vec![(id.clone(), Epoch(1), SegmentEndReason::Superseded)]
    );
    assert_eq!(sim.worker_of(&id), Some(w("w2")));
    assert_eq!(sim.fleet.recordings[&id].row.epoch, Epoch(2));
    // a late frame of the stale epoch changes nothing
    sim.from(
        "w1",
        WorkerMessage::FirstFrame {
            recording: id.clone(),
            epoch: Epoch(1),
            part: 0,
            at: T0,
        },
    );
    assert_eq!(sim.worker_of(&id), Some(w("w2")));
    assert_eq!(sim.state(&id), RecordingState::Recording);
}

fn drain(sim: &mut Sim, worker: &str, mode: DrainMode, deadline_secs: Option<u32>) {
    let r = sim
        .request(ConsoleRequest::Drain {
            worker: w(worker),
            mode,
            deadline_secs,
            force: false,
        })
        .unwrap();
    assert!(matches!(r, ConsoleResponse::Accepted { .. }), "{r:?}");
}

fn drain_complete(sim: &Sim, worker: &str) -> bool {
    sim.events.iter().any(|e| {
        matches!(e, EventKind::DrainProgress { worker: d, complete: true, .. } if d.as_str() == worker)
    })
}

#[test]
fn drain_wait_migrates_what_remains_at_its_deadline() {
    let (mut sim, id) = recording_on_w1();
    drain(&mut sim, "w1", DrainMode::Wait, Some(10));
    sim.advance(9000);
    assert!(sim.starts("w2").is_empty(), "waits until the deadline");
    sim.advance(1500);
    assert_eq!(sim.starts("w2"), vec![(id.clone(), Epoch(2))]);
    // make-before-break: w1 stops 2 s after w2's first frame
    sim.capture("w2", &id, Epoch(2));
    assert_eq!(sim.worker_of(&id), Some(w("w2")));
    assert!(sim.stops("w1").is_empty());
    sim.advance(2250);
    assert_eq!(
        sim.stops("w1"),
        vec![(id.clone(), Epoch(1), SegmentEndReason::Reassigned)]
    );
    assert!(!drain_complete(&sim, "w1"), "not before its slot is reaped");
    sim.ended("w1", &id, Epoch(1), SegmentEndReason::Reassigned);
    sim.advance(250);
    assert!(drain_complete(&sim, "w1"));
    assert_eq!(sim.state(&id), RecordingState::Recording);
}

#[test]
fn drain_migrate_moves_at_once_and_a_drained_worker_takes_nothing() {
    let (mut sim, id) = recording_on_w1();
    drain(&mut sim, "w1", DrainMode::Migrate, None);
    assert_eq!(sim.starts("w2"), vec![(id.clone(), Epoch(2))]);
    sim.start("r2");
    assert_eq!(
        sim.starts("w1"),
        vec![],
        "a draining worker takes nothing new"
    );
    assert_eq!(sim.starts("w2"), vec![(rid("r2"), Epoch(1))]);
}

#[test]
fn reassign_to_a_full_worker_is_refused_and_to_a_free_one_moves() {
    let (mut sim, id) = recording_on_w1();
    sim.hello("w3", 1);
    sim.start("r2");
    sim.start("r3");
    // r2 and r3 go to the emptiest workers: w2 (2 free) and w3 (1 free)
    let on_w3: Vec<_> = sim.starts("w3");
    assert_eq!(on_w3.len(), 1, "w3 holds one: {on_w3:?}");
    let r = sim
        .request(ConsoleRequest::Reassign {
            id: id.clone(),
            to: Some(w("w3")),
        })
        .unwrap();
    assert_eq!(code(&r), Some(ErrorCode::NoCapacity), "{r:?}");
    let ConsoleResponse::Error(e) = &r else {
        unreachable!()
    };
    assert!(
        e.message.contains("w3 has no free capacity"),
        "{}",
        e.message
    );
    assert_eq!(sim.worker_of(&id), Some(w("w1")), "nothing moved");
    let r = sim
        .request(ConsoleRequest::Reassign {
            id: id.clone(),
            to: Some(w("w2")),
        })
        .unwrap();
    assert!(matches!(r, ConsoleResponse::Accepted { .. }), "{r:?}");
    let w2: Vec<_> = sim
        .starts("w2")
        .into_iter()
        .filter(|(r, _)| r == &id)
        .collect();
    assert_eq!(w2, vec![(id.clone(), Epoch(2))]);
    let unknown = sim
        .request(ConsoleRequest::Reassign {
            id: rid("nope"),
            to: None,
        })
        .unwrap();
    assert_eq!(code(&unknown), Some(ErrorCode::NotFound));
}

#[test]
fn a_restarted_coordinator_keeps_what_runs_and_replaces_what_did_not_come_back() {
    let row = |id: &str, worker: &str| RecordingRow {
        spec: RecordingSpec::new(rid(id), "https://class.example/room"),
        state: RecordingState::Recording,
        epoch: Epoch(1),
        worker: Some(w(worker)),
        created_at: T0 - 60_000,
        started_at: Some(T0 - 59_000),
        ended_at: None,
        reason: None,
        restarts: 0,
        failed_placements: 0,
        outputs: None,
    };
    let loaded = vec![(row("a", "w1"), vec![]), (row("b", "w9"), vec![])];
    let mut sim = Sim::with(FleetSettings::default(), 2, loaded);
    assert!(
        sim.fleet.seq() >= 2 << 40,
        "event numbers grow across boots"
    );
    sim.hello_with(
        "w1",
        4,
        vec![RunningSegment {
            recording: rid("a"),
            epoch: Epoch(1),
            part: 0,
            started_at: T0 - 59_000,
            last_frame_at: Some(T0),
        }],
    );
    sim.advance(4000);
    assert_eq!(sim.state(&rid("b")), RecordingState::Recording, "grace");
    sim.advance(1250);
    assert_eq!(sim.state(&rid("a")), RecordingState::Recording);
    assert_eq!(sim.starts("w1"), vec![(rid("b"), Epoch(2))], "b replaced");
}

#[test]
fn capacity_exhausted_then_freed_starts_the_next_in_request_order() {
    let mut sim = Sim::new();
    sim.hello("w1", 2);
    for id in ["r1", "r2", "r3", "r4"] {
        sim.start(id);
        sim.now.wall_ms += 1;
    }
    let placed = sim.starts("w1");
    assert_eq!(placed, vec![(rid("r1"), Epoch(1)), (rid("r2"), Epoch(1))]);
    let info = sim.fleet.info(&rid("r3")).unwrap();
    assert_eq!(info.state, RecordingState::Pending);
    assert!(
        info.reason
            .as_deref()
            .unwrap_or("")
            .contains("waiting for capacity"),
        "{info:?}"
    );
    sim.capture("w1", &rid("r2"), Epoch(1));
    sim.request(ConsoleRequest::StopRecording { id: rid("r2") })
        .unwrap();
    assert_eq!(
        sim.stops("w1"),
        vec![(rid("r2"), Epoch(1), SegmentEndReason::Stopped)]
    );
    assert!(sim.starts("w1").is_empty(), "stopping still holds the slot");
    sim.ended("w1", &rid("r2"), Epoch(1), SegmentEndReason::Stopped);
    assert_eq!(sim.state(&rid("r2")), RecordingState::Completed);
    assert_eq!(
        sim.starts("w1"),
        vec![(rid("r3"), Epoch(1))],
        "r3 before r4"
    );
}

#[test]
fn the_start_of_hour_burst_places_what_fits_and_queues_the_rest_in_order() {
    for total in [2_000usize, 10_000] {
        let mut sim = Sim::new();
        for i in 0..100 {
            sim.hello(&format!("w{i:03}"), 4);
        }
        for i in 0..total {
            let r = sim.start(&format!("r{i:05}"));
            assert!(matches!(r, ConsoleResponse::Started { .. }), "{r:?}");
            if i % 10 == 0 {
                sim.advance(10);
            }
        }
        let mut placed: Vec<RecordingId> = Vec::new();
        for i in 0..100 {
            placed.extend(sim.starts(&format!("w{i:03}")).into_iter().map(|(r, _)| r));
        }
        placed.sort();
        let first: Vec<RecordingId> = (0..400).map(|i| rid(&format!("r{i:05}"))).collect();
        assert_eq!(placed, first, "the first 400 requests start");
        assert_eq!(sim.fleet.queue.len(), total - 400);
        assert!(sim
            .fleet
            .workers
            .values()
            .all(|w| w.info.state == WorkerState::Ready));
        // a worker's recording ends: the oldest waiting one takes its slot
        let first_on_w000 = sim.fleet.placements.on(&w("w000"))[0].clone();
        sim.request(ConsoleRequest::StopRecording {
            id: first_on_w000.clone(),
        });
        sim.ended("w000", &first_on_w000, Epoch(1), SegmentEndReason::Stopped);
        let next: Vec<_> = sim.starts("w000").into_iter().map(|(r, _)| r).collect();
        assert!(next.contains(&rid("r00400")), "{next:?}");
    }
}

#[test]
fn a_ping_to_a_worker_that_never_answers_gets_an_error_at_its_deadline() {
    let mut sim = Sim::new();
    sim.hello("w1", 1);
    let reply = sim.next_reply;
    let none = sim.request(ConsoleRequest::PingWorker {
        worker: w("w1"),
        payload: vec![1],
    });
    assert!(none.is_none(), "answered when the pong comes");
    sim.advance(4750);
    assert!(!sim.replies.contains_key(&reply));
    sim.advance(500);
    let r = sim
        .replies
        .remove(&reply)
        .expect("answered at the deadline");
    assert_eq!(code(&r), Some(ErrorCode::Unavailable));
}

#[test]
fn finished_recordings_leave_memory_after_the_retention() {
    let settings = FleetSettings {
        retention: std::time::Duration::from_secs(60),
        ..Default::default()
    };
    let mut sim = Sim::with(settings, 1, Vec::new());
    sim.hello("w1", 1);
    sim.start("r1");
    sim.capture("w1", &rid("r1"), Epoch(1));
    sim.request(ConsoleRequest::StopRecording { id: rid("r1") });
    sim.ended("w1", &rid("r1"), Epoch(1), SegmentEndReason::Stopped);
    assert_eq!(sim.state(&rid("r1")), RecordingState::Completed);
    sim.advance(59_000);
    assert!(sim.fleet.info(&rid("r1")).is_some());
    sim.advance(1_500);
    assert!(sim.fleet.info(&rid("r1")).is_none(), "left memory");
    assert_eq!(sim.fleet.recordings_in_memory(), 0);
}

#[test]
fn a_snapshot_of_many_recordings_comes_in_parts() {
    let mut sim = Sim::new();
    for i in 0..1_234 {
        sim.start(&format!("r{i:05}"));
    }
    let frames = sim.fleet.snapshot();
    assert_eq!(frames.len(), 3, "500 recordings per frame");
    let total: usize = frames
        .iter()
        .map(|f| match f {
            recfleet_protocol::SubscriptionFrame::Snapshot { recordings, .. }
            | recfleet_protocol::SubscriptionFrame::SnapshotMore { recordings, .. } => {
                recordings.len()
            }
            _ => 0,
        })
        .sum();
    assert_eq!(total, 1_234);
    let _ = sim.fleet.in_state(RecordingState::Pending);
}

/// Started, interrupted, resumed and completed, each once, in order, with
/// ids that differ; nothing at all without webhook URLs.
#[test]
fn webhook_events_follow_the_recording_through_a_failover() {
    use crate::coordinator::webhook::WebhookKind as K;
    let settings = FleetSettings {
        webhook_urls: vec!["https://platform.example/hooks".into()],
        ..Default::default()
    };
    let mut sim = Sim::with(settings, 1, Vec::new());
    sim.hello("w1", 1);
    sim.hello("w2", 1);
    sim.start("r1");
    let (on, first) = if sim.starts("w1").is_empty() {
        ("w2", "w1")
    } else {
        ("w1", "w2")
    };
    let id = rid("r1");
    sim.capture(on, &id, Epoch(1));
    sim.close(on, "connection lost");
    assert_eq!(sim.starts(first), vec![(id.clone(), Epoch(2))]);
    sim.capture(first, &id, Epoch(2));
    sim.request(ConsoleRequest::StopRecording { id: id.clone() })
        .unwrap();
    sim.ended(first, &id, Epoch(2), SegmentEndReason::Stopped);
    assert_eq!(sim.state(&id), RecordingState::Completed);
    let kinds: Vec<K> = sim.webhooks.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        vec![K::Started, K::Interrupted, K::Resumed, K::Completed]
    );
    let mut ids: Vec<&str> = sim.webhooks.iter().map(|e| e.id.as_str()).collect();
    ids.dedup();
    assert_eq!(ids.len(), 4, "{ids:?}");
    assert!(sim.webhooks.iter().all(|e| e.recording == id));
    assert!(sim.webhooks[1].reason.is_some(), "interrupted says why");
    assert!(sim.webhooks[3].output.is_some(), "completed says where");

    // no URLs: no webhook effects
    let (mut sim, id) = recording_on_w1();
    sim.close("w1", "connection lost");
    sim.request(ConsoleRequest::StopRecording { id }).unwrap();
    assert!(sim.webhooks.is_empty());
}

#[test]
fn a_recording_stopped_before_its_first_frame_is_cancelled_by_webhook() {
    let settings = FleetSettings {
        webhook_urls: vec!["https://platform.example/hooks".into()],
        ..Default::default()
    };
    let mut sim = Sim::with(settings, 1, Vec::new());
    sim.start("r1");
    sim.request(ConsoleRequest::StopRecording { id: rid("r1") })
        .unwrap();
    let kinds: Vec<_> = sim.webhooks.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, vec!["recording.cancelled"]);
}

#[test]
fn a_recording_completes_once_its_outputs_are_stored_and_fails_if_they_cannot_be() {
    let mut sim = Sim::new();
    sim.hello("w1", 2);
    for (id, error) in [("ok", None), ("bad", Some("segments cannot be joined"))] {
        sim.stitch_error = error.map(String::from);
        sim.start(id);
        sim.capture("w1", &rid(id), Epoch(1));
        sim.ended("w1", &rid(id), Epoch(1), SegmentEndReason::Stopped);
        assert_eq!(sim.finalizes.last(), Some(&rid(id)));
    }
    assert_eq!(sim.state(&rid("ok")), RecordingState::Completed);
    let outputs = sim.fleet.recordings[&rid("ok")]
        .row
        .outputs
        .clone()
        .unwrap();
    assert_eq!(outputs.location, "file:///out/ok");
    assert_eq!(sim.state(&rid("bad")), RecordingState::Failed);
    let reason = sim.fleet.recordings[&rid("bad")]
        .row
        .reason
        .clone()
        .unwrap();
    assert!(
        reason.contains("recording.mp4 could not be made"),
        "{reason}"
    );
}

#[test]
fn an_unanswered_finalization_is_asked_again_and_after_a_restart() {
    let mut sim = Sim::new();
    sim.hello("w1", 1);
    sim.start("r1");
    let id = rid("r1");
    sim.capture("w1", &id, Epoch(1));
    sim.writer_silent = true;
    sim.ended("w1", &id, Epoch(1), SegmentEndReason::Stopped);
    assert_eq!(sim.state(&id), RecordingState::Finalizing);
    assert_eq!(sim.finalizes.len(), 1);
    sim.advance(30_000);
    assert_eq!(sim.finalizes.len(), 1, "asked again too early");
    sim.advance(31_000);
    assert_eq!(sim.finalizes.len(), 2);
    // A coordinator that starts with a recording in Finalizing asks at once.
    let row = sim.fleet.recordings[&id].row.clone();
    let mut again = Sim::with(FleetSettings::default(), 2, vec![(row, Vec::new())]);
    again.advance(250);
    assert_eq!(again.finalizes, vec![id.clone()]);
    assert_eq!(again.state(&id), RecordingState::Completed);
}

#[test]
fn a_request_may_name_only_the_coordinators_output_or_an_allowed_one() {
    let settings = FleetSettings {
        destination: "s3://rec/main".into(),
        allowed_destinations: vec!["s3://rec/tenants/".into()],
        ..FleetSettings::default()
    };
    let mut sim = Sim::with(settings, 1, Vec::new());
    let with = |id: &str, dest: Option<&str>| {
        let mut s = RecordingSpec::new(rid(id), "https://class.example/room");
        s.destination = dest.map(String::from);
        ConsoleRequest::StartRecording(s)
    };
    let default = sim.request(with("d", None)).unwrap();
    assert!(
        matches!(default, ConsoleResponse::Started { .. }),
        "{default:?}"
    );
    let spec = &sim.fleet.recordings[&rid("d")].row.spec;
    assert_eq!(spec.destination.as_deref(), Some("s3://rec/main"));
    // The same request again is the same request (the default is filled in
    // before specs are compared).
    let again = sim.request(with("d", None)).unwrap();
    assert!(
        matches!(again, ConsoleResponse::Started { created: false, .. }),
        "{again:?}"
    );
    let allowed = sim
        .request(with("t", Some("s3://rec/tenants/acme")))
        .unwrap();
    assert!(
        matches!(allowed, ConsoleResponse::Started { .. }),
        "{allowed:?}"
    );
    for bad in ["s3://other/x", "s3://rec/tenants-evil", "file:///etc"] {
        let refused = sim.request(with("x", Some(bad))).unwrap();
        assert_eq!(
            code(&refused),
            Some(ErrorCode::InvalidInput),
            "{bad}: {refused:?}"
        );
    }
}

/// A worker's telemetry: its CPU, what it may use, and its recordings'
/// costs as (id, epoch, media ms, cpu, repeated per mille).
fn telemetry(cpu: u32, capacity: u32, slots: &[(&str, Epoch, u64, u32, u16)]) -> WorkerMessage {
    WorkerMessage::Telemetry(recfleet_protocol::WorkerTelemetry {
        at: T0,
        cpu_millicores: cpu,
        rss_bytes: 0,
        slots: slots
            .iter()
            .map(
                |(id, epoch, media_ms, cpu, repeated)| recfleet_protocol::SlotProgress {
                    recording: Some(rid(id)),
                    epoch: *epoch,
                    media_ms: *media_ms,
                    cpu_millicores: *cpu,
                    repeated_permille: *repeated,
                    ..Default::default()
                },
            )
            .collect(),
        upload_buffer_bytes: 0,
        upload_buffer_full: false,
        ready: Default::default(),
        capacity: recfleet_protocol::MachineCapacity {
            cpu_millicores: capacity,
            memory_available_bytes: 16 << 30,
        },
    })
}

#[test]
fn admission_places_by_measured_cost_within_the_slots() {
    let mut sim = Sim::new();
    sim.hello("w1", 8);
    // Two cores, nearly idle: by the default estimate (0.7 core) two
    // recordings fit below 90%, though eight slots are free.
    sim.from("w1", telemetry(100, 2000, &[]));
    for id in ["r1", "r2", "r3"] {
        sim.start(id);
    }
    assert_eq!(
        sim.starts("w1"),
        vec![(rid("r1"), Epoch(1)), (rid("r2"), Epoch(1))]
    );
    let info = sim.fleet.info(&rid("r3")).unwrap();
    assert_eq!(info.state, RecordingState::Pending, "{info:?}");
    let w1 = &sim.fleet.workers[&w("w1")].info.admission;
    assert_eq!((w1.takes, w1.estimate_millicores), (0, 700), "{w1:?}");
    assert!(w1.limit.starts_with("CPU"), "{w1:?}");

    // Measured: the two cost 0.45 core each, the worker 1 core in all.
    // The estimate follows what is measured and room opens for a third.
    for _ in 0..10 {
        sim.from(
            "w1",
            telemetry(
                1000,
                2000,
                &[
                    ("r1", Epoch(1), 20_000, 450, 0),
                    ("r2", Epoch(1), 20_000, 450, 0),
                ],
            ),
        );
    }
    assert_eq!(sim.starts("w1"), vec![(rid("r3"), Epoch(1))]);
    let w1 = sim.fleet.workers[&w("w1")].info.admission.clone();
    assert!(w1.measured && w1.estimate_millicores == 450, "{w1:?}");

    // One of them repeats frames: the worker takes nothing more, whatever
    // its figures say, and the next goes to a worker that measures nothing
    // (its slots alone count).
    sim.from(
        "w1",
        telemetry(
            900,
            2000,
            &[
                ("r1", Epoch(1), 30_000, 300, 120),
                ("r2", Epoch(1), 30_000, 300, 0),
                ("r3", Epoch(1), 10_000, 300, 0),
            ],
        ),
    );
    let w1 = sim.fleet.workers[&w("w1")].info.admission.clone();
    assert_eq!(w1.takes, 0, "{w1:?}");
    assert!(w1.limit.contains("r1 repeats 12.0%"), "{w1:?}");
    sim.start("r4");
    assert!(sim.starts("w1").is_empty());
    sim.hello("w2", 1);
    assert_eq!(sim.starts("w2"), vec![(rid("r4"), Epoch(1))]);
    assert!(!sim.fleet.workers[&w("w2")].info.admission.measured);
}

/// The frames of a segment that captured from `from` to `to` (wall ms):
/// the worker's report of its end.
fn segment_ended(
    id: &RecordingId,
    epoch: Epoch,
    from: u64,
    to: u64,
    reason: SegmentEndReason,
) -> WorkerMessage {
    WorkerMessage::SegmentEnded(recfleet_protocol::SegmentReport {
        recording: id.clone(),
        epoch,
        part: 0,
        file: format!("{id}/{id}-e{}-p0.mp4", epoch.0),
        bytes: 1000,
        sha256: "00".into(),
        started_at: from,
        ended_at: to,
        first_frame_at: Some(from),
        last_frame_at: Some(to),
        reason,
    })
}

fn redundant_spec(id: &str) -> RecordingSpec {
    let mut spec = RecordingSpec::new(rid(id), "https://class.example/room");
    spec.redundancy = 2;
    spec
}

#[test]
fn redundancy_two_records_on_another_host_and_a_death_costs_no_gap() {
    let mut sim = Sim::new();
    // w1 and w2 share a machine; w3 runs on another.
    sim.hosts.insert("w1".into(), "rack-a".into());
    sim.hosts.insert("w2".into(), "rack-a".into());
    sim.hosts.insert("w3".into(), "rack-b".into());
    sim.hello("w1", 2);
    sim.start("warm-up");
    sim.hello("w2", 2);
    sim.hello("w3", 2);
    let _ = (sim.starts("w1"), sim.starts("w2"), sim.starts("w3"));
    let id = rid("r1");
    sim.request(ConsoleRequest::StartRecording(redundant_spec("r1")));
    let first = sim.worker_of(&id).expect("placed");
    let e1 = sim.fleet.recordings[&id].row.epoch;
    sim.capture(first.as_str(), &id, e1);
    let t0 = sim.now.wall_ms;
    // The second copy goes to the other machine, never beside the first.
    let copy = sim.fleet.info(&id).unwrap().copy.expect("a second copy");
    let first_host = &sim.fleet.workers[&first].info.host;
    let copy_host = &sim.fleet.workers[&copy.worker].info.host;
    assert_ne!(
        first_host, copy_host,
        "first on {first}, copy on {}",
        copy.worker
    );
    assert!(!copy.capturing);
    assert_eq!(
        sim.starts(copy.worker.as_str()),
        vec![(id.clone(), copy.epoch)]
    );
    sim.advance(500);
    sim.capture(copy.worker.as_str(), &id, copy.epoch);
    let t1 = sim.now.wall_ms;
    assert!(sim.fleet.info(&id).unwrap().copy.unwrap().capturing);
    assert!(sim.events.iter().any(
        |e| matches!(e, EventKind::Notice { message, .. } if message.contains("recorded twice"))
    ));

    // The first copy's worker dies: the recording goes on where its copy
    // runs, without an interruption, and a new second copy is placed.
    sim.advance(10_000);
    let webhooks_before = sim.webhooks.len();
    let lost_at = sim.now.wall_ms;
    sim.close(first.as_str(), "connection lost: timed out");
    assert_eq!(sim.state(&id), RecordingState::Recording);
    assert_eq!(sim.worker_of(&id), Some(copy.worker.clone()));
    assert_eq!(sim.fleet.recordings[&id].row.epoch, copy.epoch);
    assert_eq!(
        sim.webhooks.len(),
        webhooks_before,
        "no interrupted webhook"
    );
    let new_copy = sim
        .fleet
        .info(&id)
        .unwrap()
        .copy
        .expect("a new second copy");
    assert_ne!(new_copy.worker, copy.worker);
    assert_ne!(new_copy.worker, first);
    assert!(new_copy.epoch > copy.epoch);

    // Stopped: both copies are told, and the manifest has no gap.
    sim.advance(5_000);
    sim.capture(new_copy.worker.as_str(), &id, new_copy.epoch);
    sim.request(ConsoleRequest::StopRecording { id: id.clone() });
    let stop_at = sim.now.wall_ms;
    for (w, e) in [
        (&copy.worker, copy.epoch),
        (&new_copy.worker, new_copy.epoch),
    ] {
        let stops = sim.stops(w.as_str());
        assert_eq!(stops.len(), 1, "{w}: {stops:?}");
        assert_eq!((stops[0].0.clone(), stops[0].1), (id.clone(), e));
    }
    // The lost worker's segment: what its telemetry last said (t0 + 3 s).
    if let Some(s) = sim
        .fleet
        .recordings
        .get_mut(&id)
        .and_then(|r| r.segments.iter_mut().find(|s| s.epoch == e1))
    {
        s.last_frame_at = Some(t0 + 3_000);
    }
    let _ = lost_at;
    sim.from(
        copy.worker.as_str(),
        segment_ended(&id, copy.epoch, t1, stop_at, SegmentEndReason::Stopped),
    );
    sim.ended(
        copy.worker.as_str(),
        &id,
        copy.epoch,
        SegmentEndReason::Stopped,
    );
    let t2 = sim.fleet.recordings[&id]
        .segments
        .iter()
        .find(|s| s.epoch == new_copy.epoch)
        .and_then(|s| s.first_frame_at)
        .unwrap();
    sim.from(
        new_copy.worker.as_str(),
        segment_ended(&id, new_copy.epoch, t2, stop_at, SegmentEndReason::Stopped),
    );
    sim.ended(
        new_copy.worker.as_str(),
        &id,
        new_copy.epoch,
        SegmentEndReason::Stopped,
    );
    assert_eq!(sim.state(&id), RecordingState::Completed);
    let m = sim.fleet.manifest(&id).unwrap();
    assert!(m.gaps.is_empty(), "{:?}", m.gaps);
    assert_eq!(m.segments.len(), 3);
}

#[test]
fn a_second_copy_shares_a_machine_only_when_no_other_exists_and_waits_for_room_there() {
    let mut sim = Sim::new();
    for n in ["w1", "w2"] {
        sim.hosts.insert(n.into(), "one-box".into());
    }
    sim.hello("w1", 1);
    sim.hello("w2", 1);
    let id = rid("r1");
    sim.request(ConsoleRequest::StartRecording(redundant_spec("r1")));
    let first = sim.worker_of(&id).unwrap();
    sim.capture(first.as_str(), &id, Epoch(1));
    let copy = sim
        .fleet
        .info(&id)
        .unwrap()
        .copy
        .expect("on the same machine: none other");
    assert_ne!(copy.worker, first);

    // With a full worker on another machine, the copy waits for room there.
    let mut sim = Sim::new();
    sim.hosts.insert("w1".into(), "a".into());
    sim.hosts.insert("w2".into(), "a".into());
    sim.hosts.insert("w3".into(), "b".into());
    sim.hello("w3", 1);
    sim.start("busy");
    sim.hello("w1", 1);
    sim.hello("w2", 1);
    sim.request(ConsoleRequest::StartRecording(redundant_spec("r1")));
    let first = sim.worker_of(&id).unwrap();
    assert_ne!(first, w("w3"));
    let e = sim.fleet.recordings[&id].row.epoch;
    sim.capture(first.as_str(), &id, e);
    sim.advance(1_000);
    assert!(sim.fleet.info(&id).unwrap().copy.is_none());
    let busy = rid("busy");
    sim.capture("w3", &busy, Epoch(1));
    sim.request(ConsoleRequest::StopRecording { id: busy.clone() });
    sim.ended("w3", &busy, Epoch(1), SegmentEndReason::Stopped);
    sim.advance(250);
    assert_eq!(
        sim.fleet.info(&id).unwrap().copy.map(|c| c.worker),
        Some(w("w3"))
    );
}

#[test]
fn a_failed_second_copy_is_replaced_and_a_drain_hands_over_to_it() {
    let (mut sim, id) = {
        let mut sim = Sim::new();
        sim.hello("w1", 2);
        sim.hello("w2", 2);
        sim.hello("w3", 2);
        sim.request(ConsoleRequest::StartRecording(redundant_spec("r1")));
        (sim, rid("r1"))
    };
    let first = sim.worker_of(&id).unwrap();
    sim.capture(first.as_str(), &id, Epoch(1));
    let copy = sim.fleet.info(&id).unwrap().copy.unwrap();
    // Its slot gives up: the recording does not notice, a new copy comes
    // after a rest, and not on the worker that failed.
    sim.ended(
        copy.worker.as_str(),
        &id,
        copy.epoch,
        SegmentEndReason::GaveUp {
            reason: "3 restarts in 60 s".into(),
        },
    );
    assert_eq!(sim.state(&id), RecordingState::Recording);
    assert_eq!(sim.fleet.recordings[&id].row.failed_placements, 0);
    assert!(sim.fleet.info(&id).unwrap().copy.is_none());
    sim.advance(6_000);
    let again = sim.fleet.info(&id).unwrap().copy.expect("placed again");
    assert_ne!(again.worker, copy.worker);
    assert_ne!(again.worker, first);
    sim.capture(again.worker.as_str(), &id, again.epoch);

    // Draining the first copy's worker hands the recording to its copy at
    // once (it captures already): no new browser, the old one stops later.
    let _ = sim.starts(first.as_str());
    drain(&mut sim, first.as_str(), DrainMode::Migrate, None);
    assert_eq!(sim.worker_of(&id), Some(again.worker.clone()));
    assert_eq!(sim.state(&id), RecordingState::Recording);
    sim.advance(2_500);
    let stops = sim.stops(first.as_str());
    assert_eq!(stops.len(), 1, "{stops:?}");
    assert!(!drain_complete(&sim, first.as_str()));
    sim.ended(first.as_str(), &id, Epoch(1), SegmentEndReason::Reassigned);
    sim.advance(250);
    assert!(drain_complete(&sim, first.as_str()));
    // The new second copy goes to the worker left.
    sim.advance(5_500);
    let third = sim.fleet.info(&id).unwrap().copy.expect("a third copy");
    assert_eq!(third.worker, copy.worker);
}

#[test]
fn a_restarted_worker_that_no_longer_runs_the_second_copy_gets_it_replaced() {
    let mut sim = Sim::new();
    sim.hello("w1", 2);
    sim.hello("w2", 2);
    sim.hello("w3", 2);
    let id = rid("r1");
    sim.request(ConsoleRequest::StartRecording(redundant_spec("r1")));
    let first = sim.worker_of(&id).unwrap();
    sim.capture(first.as_str(), &id, Epoch(1));
    let copy = sim.fleet.info(&id).unwrap().copy.unwrap();
    sim.capture(copy.worker.as_str(), &id, copy.epoch);
    // Its worker restarts and says hello without it.
    sim.hello(copy.worker.as_str(), 2);
    assert!(sim.fleet.info(&id).unwrap().copy.is_none());
    assert_eq!(sim.state(&id), RecordingState::Recording);
    sim.advance(5_250);
    let again = sim.fleet.info(&id).unwrap().copy.expect("placed again");
    assert!(again.epoch > copy.epoch);
    assert_ne!(again.worker, first);
}

#[test]
fn a_second_copy_given_up_is_stopped_again_when_its_worker_reports_it() {
    let mut sim = Sim::new();
    sim.hello("w1", 2);
    sim.hello("w2", 2);
    let id = rid("r1");
    sim.request(ConsoleRequest::StartRecording(redundant_spec("r1")));
    let first = sim.worker_of(&id).unwrap();
    sim.capture(first.as_str(), &id, Epoch(1));
    let copy = sim.fleet.info(&id).unwrap().copy.unwrap();
    // It never captures: given up after 60 s and told to stop.
    sim.advance(61_000);
    let stops = sim.stops(copy.worker.as_str());
    assert_eq!(stops.len(), 1, "{stops:?}");
    // Its worker reconnects still running it: stopped again, not adopted.
    sim.hello_with(
        copy.worker.as_str(),
        2,
        vec![RunningSegment {
            recording: id.clone(),
            epoch: copy.epoch,
            part: 0,
            started_at: T0,
            last_frame_at: None,
        }],
    );
    let stops = sim.stops(copy.worker.as_str());
    assert_eq!(stops.len(), 1, "{stops:?}");
    assert_eq!(stops[0].1, copy.epoch);
    assert!(sim
        .fleet
        .info(&id)
        .unwrap()
        .copy
        .is_none_or(|c| c.epoch != copy.epoch));
}

#[test]
fn a_restarted_coordinator_adopts_the_second_copy_its_worker_reports() {
    let mut sim = Sim::new();
    sim.hello("w1", 2);
    sim.hello("w2", 2);
    let id = rid("r1");
    sim.request(ConsoleRequest::StartRecording(redundant_spec("r1")));
    let first = sim.worker_of(&id).unwrap();
    sim.capture(first.as_str(), &id, Epoch(1));
    let copy = sim.fleet.info(&id).unwrap().copy.unwrap();
    sim.capture(copy.worker.as_str(), &id, copy.epoch);
    let r = &sim.fleet.recordings[&id];
    let loaded = vec![(r.row.clone(), r.segments.clone())];
    let mut sim = Sim::with(FleetSettings::default(), 2, loaded);
    let running = |epoch| {
        vec![RunningSegment {
            recording: id.clone(),
            epoch,
            part: 0,
            started_at: T0,
            last_frame_at: Some(T0 + 1000),
        }]
    };
    sim.hello_with(copy.worker.as_str(), 2, running(copy.epoch));
    sim.hello_with(first.as_str(), 2, running(Epoch(1)));
    assert!(sim.stops(copy.worker.as_str()).is_empty(), "not fenced");
    assert!(sim.starts(copy.worker.as_str()).is_empty());
    let info = sim.fleet.info(&id).unwrap();
    assert_eq!(info.worker, Some(first));
    assert_eq!(
        info.copy.map(|c| (c.worker, c.capturing)),
        Some((copy.worker, true))
    );
}
