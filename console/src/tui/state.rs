//! The fleet as the TUI knows it. It changes in one place, [`State::update`],
//! and only from connection events; views only read it.

use std::collections::{BTreeMap, VecDeque};

use recfleet_protocol::{
    Event, EventKind, RecordingDetail, RecordingId, RecordingInfo, RecordingState,
    SubscriptionFrame, UnixMillis, WorkerInfo, WorkerName, WorkerState,
};

use crate::describe;

/// Lines kept in the event log.
pub const EVENT_LOG_LEN: usize = 1000;

/// The end of a snapshot's log line after a resync.
const RESYNCED: &str = " (resynced)";

/// The connection, always on screen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnStatus {
    /// The first attempt is under way.
    Connecting {
        /// The coordinator address.
        addr: String,
    },
    /// Connected and subscribed.
    Connected {
        /// The coordinator address.
        addr: String,
        /// `operator` or `viewer`.
        role: String,
        /// The certificate's name.
        name: String,
    },
    /// Lost; the next attempt is at `at`.
    Reconnecting {
        /// The coordinator address.
        addr: String,
        /// When the next attempt starts.
        at: UnixMillis,
        /// Why the last attempt or connection failed.
        reason: String,
    },
    /// The coordinator or TLS refused this console; retried at `at`.
    Refused {
        /// The coordinator address.
        addr: String,
        /// Why.
        reason: String,
        /// When the next attempt starts (0: not scheduled).
        at: UnixMillis,
    },
}

/// What the connection task reports; the only input of [`State::update`].
#[derive(Debug, Clone, PartialEq)]
pub enum ConnEvent {
    /// The clock moved (ages and countdowns).
    Tick(UnixMillis),
    /// An attempt started.
    Connecting {
        /// The coordinator address.
        addr: String,
    },
    /// Connected; a subscription follows.
    Connected {
        /// The coordinator address.
        addr: String,
        /// The role the coordinator sees.
        role: String,
        /// The name it sees.
        name: String,
    },
    /// A subscription frame.
    Frame(Box<SubscriptionFrame>),
    /// The connection failed or was lost.
    Disconnected {
        /// Why.
        reason: String,
        /// When the next attempt starts.
        retry_at: UnixMillis,
    },
    /// The console was refused (TLS, role).
    Refused {
        /// Why.
        reason: String,
        /// When the next attempt starts.
        retry_at: UnixMillis,
    },
    /// An action's answer.
    ActionDone {
        /// What was asked, e.g. "drain w1".
        what: String,
        /// The coordinator's message, or the error.
        result: Result<String, String>,
    },
    /// A recording's detail (answer to `ShowRecording`).
    Detail(Box<RecordingDetail>),
    /// The coordinators (answer to `ListCoordinators`).
    Coordinators(Vec<recfleet_protocol::CoordinatorInfo>),
    /// A recording's latest picture, decoded.
    Thumbnail(Box<Thumb>),
    /// No picture could be had (not running yet, an external capture, ...).
    NoThumbnail {
        /// The recording.
        id: RecordingId,
        /// Why.
        reason: String,
    },
    /// A recording's latest events.
    Track {
        /// The recording.
        id: RecordingId,
        /// Its last events, oldest first.
        events: Vec<recfleet_protocol::TrackEvent>,
    },
    /// The text of `describe` for a recording.
    Described {
        /// The recording.
        id: RecordingId,
        /// The text (or why it could not be had).
        text: String,
    },
    /// Lines of a followed log.
    Logs {
        /// The recording.
        id: RecordingId,
        /// The lines, as printed by `recfleet logs`.
        lines: Vec<String>,
    },
    /// The followed log ended.
    LogsEnded {
        /// The recording.
        id: RecordingId,
        /// Why.
        reason: String,
    },
}

/// A recording's picture as the detail pane shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Thumb {
    /// The recording.
    pub id: RecordingId,
    /// When the worker took it.
    pub taken_at: UnixMillis,
    /// The picture (None: why not, in `missing`).
    pub picture: Option<super::picture::Picture>,
    /// Why there is no picture.
    pub missing: Option<String>,
    /// The sound level, dBFS.
    pub level_db: Option<i16>,
}

/// A followed log, as the logs view shows it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FollowedLog {
    /// The recording.
    pub id: Option<RecordingId>,
    /// Its latest lines (at most [`LOG_KEEP`]).
    pub lines: VecDeque<String>,
    /// Why it ended, once it has.
    pub ended: Option<String>,
}

/// Log lines the logs view keeps.
pub const LOG_KEEP: usize = 2000;

/// Where a drain stands, from its last progress event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrainStatus {
    /// Recordings still on the worker.
    pub remaining: Vec<RecordingId>,
    /// The coordinator's sentence.
    pub message: String,
    /// Whether it is finished.
    pub complete: bool,
}

/// One line of the event log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// When (coordinator clock for events, local for the console's own lines).
    pub at: UnixMillis,
    /// The event number, for coordinator events.
    pub seq: Option<u64>,
    /// `recording_changed`, `console`, ...
    pub kind: &'static str,
    /// What happened.
    pub text: String,
}

/// The last action's outcome, shown on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flash {
    /// Whether it went well.
    pub ok: bool,
    /// What to show.
    pub text: String,
}

/// Why actions are hidden.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readonly {
    /// `--readonly` was given.
    Flag,
    /// The certificate is not an operator's.
    Role,
}

/// The fleet and the connection.
#[derive(Debug, Clone, PartialEq)]
pub struct State {
    /// Now, for ages and countdowns.
    pub now: UnixMillis,
    /// The connection.
    pub connection: ConnStatus,
    /// `--readonly`.
    pub readonly_flag: bool,
    /// The role seen at the last connect.
    pub role: Option<String>,
    /// Every worker known.
    pub workers: BTreeMap<WorkerName, WorkerInfo>,
    /// Every recording known.
    pub recordings: BTreeMap<RecordingId, RecordingInfo>,
    /// Details fetched for the detail pane.
    pub details: BTreeMap<RecordingId, RecordingDetail>,
    /// The coordinators, as last fetched (the coordinators view asks every
    /// second while it is shown).
    pub coordinators: Vec<recfleet_protocol::CoordinatorInfo>,
    /// Drain progress by worker.
    pub drains: BTreeMap<WorkerName, DrainStatus>,
    /// The event log, oldest first.
    pub events: VecDeque<LogLine>,
    /// The last event number applied.
    pub last_seq: Option<u64>,
    /// Events were missed; waiting for the fresh snapshot.
    pub resyncing: bool,
    /// The last action's outcome.
    pub flash: Option<Flash>,
    /// The selected recording's picture, as last fetched.
    pub thumb: Option<Thumb>,
    /// The `describe` text, as last fetched.
    pub described: Option<(RecordingId, String)>,
    /// The selected recording's latest events, as last fetched.
    pub track: Option<(RecordingId, Vec<recfleet_protocol::TrackEvent>)>,
    /// The followed log.
    pub log: FollowedLog,
}

impl ConnEvent {
    /// A subscription frame as an event.
    pub fn frame(f: SubscriptionFrame) -> ConnEvent {
        ConnEvent::Frame(Box::new(f))
    }
}

impl State {
    /// An empty fleet, connecting to `addr`.
    pub fn new(addr: impl Into<String>, readonly_flag: bool, now: UnixMillis) -> State {
        State {
            now,
            connection: ConnStatus::Connecting { addr: addr.into() },
            readonly_flag,
            role: None,
            workers: BTreeMap::new(),
            recordings: BTreeMap::new(),
            details: BTreeMap::new(),
            coordinators: Vec::new(),
            drains: BTreeMap::new(),
            events: VecDeque::new(),
            last_seq: None,
            resyncing: false,
            flash: None,
            thumb: None,
            track: None,
            described: None,
            log: FollowedLog::default(),
        }
    }

    /// Why actions are hidden, if they are.
    pub fn readonly(&self) -> Option<Readonly> {
        if self.readonly_flag {
            Some(Readonly::Flag)
        } else if self.role.as_deref().is_some_and(|r| r != "operator") {
            Some(Readonly::Role)
        } else {
            None
        }
    }

    /// Applies one connection event. The only way the state changes.
    pub fn update(&mut self, ev: ConnEvent) {
        match ev {
            ConnEvent::Tick(now) => self.now = now,
            ConnEvent::Connecting { addr } => self.connection = ConnStatus::Connecting { addr },
            ConnEvent::Connected { addr, role, name } => {
                self.log(
                    None,
                    "console",
                    format!("connected to {addr} as {role}/{name}"),
                );
                self.role = Some(role.clone());
                self.connection = ConnStatus::Connected { addr, role, name };
            }
            ConnEvent::Frame(frame) => self.apply_frame(*frame),
            ConnEvent::Disconnected { reason, retry_at } => {
                self.log(None, "console", format!("disconnected: {reason}"));
                let addr = self.addr().to_string();
                self.connection = ConnStatus::Reconnecting {
                    addr,
                    at: retry_at,
                    reason,
                };
            }
            ConnEvent::Refused { reason, retry_at } => {
                self.log(None, "console", format!("refused: {reason}"));
                let addr = self.addr().to_string();
                self.connection = ConnStatus::Refused {
                    addr,
                    reason,
                    at: retry_at,
                };
            }
            ConnEvent::ActionDone { what, result } => {
                let (ok, text) = match result {
                    Ok(m) => (true, format!("{what}: {m}")),
                    Err(e) => (false, format!("{what} failed: {e}")),
                };
                self.log(None, "action", text.clone());
                self.flash = Some(Flash { ok, text });
            }
            ConnEvent::Detail(d) => {
                self.details.insert(d.info.id.clone(), *d);
            }
            ConnEvent::Coordinators(list) => self.coordinators = list,
            ConnEvent::Thumbnail(t) => self.thumb = Some(*t),
            ConnEvent::NoThumbnail { id, reason } => {
                // Keep a picture of the same recording: a refresh that
                // failed once should not blank it.
                if self
                    .thumb
                    .as_ref()
                    .is_none_or(|t| t.id != id || t.picture.is_none())
                {
                    self.thumb = Some(Thumb {
                        id,
                        taken_at: 0,
                        picture: None,
                        missing: Some(reason),
                        level_db: None,
                    });
                }
            }
            ConnEvent::Described { id, text } => self.described = Some((id, text)),
            ConnEvent::Track { id, events } => self.track = Some((id, events)),
            ConnEvent::Logs { id, lines } => {
                if self.log.id.as_ref() == Some(&id) {
                    self.log.lines.extend(lines);
                    while self.log.lines.len() > LOG_KEEP {
                        self.log.lines.pop_front();
                    }
                }
            }
            ConnEvent::LogsEnded { id, reason } => {
                if self.log.id.as_ref() == Some(&id) {
                    self.log.ended = Some(reason);
                }
            }
        }
    }

    fn apply_frame(&mut self, frame: SubscriptionFrame) {
        match frame {
            SubscriptionFrame::Snapshot {
                seq,
                workers,
                recordings,
            } => {
                self.workers = workers.into_iter().map(|w| (w.name.clone(), w)).collect();
                self.recordings = recordings.into_iter().map(|r| (r.id.clone(), r)).collect();
                self.last_seq = Some(seq);
                let text = self.snapshot_text(seq, self.resyncing);
                self.resyncing = false;
                self.log(None, "snapshot", text);
            }
            // More of the snapshot just received: added to it. Its log line
            // is brought up to date rather than followed by one per part.
            SubscriptionFrame::SnapshotMore {
                workers,
                recordings,
            } => {
                self.workers
                    .extend(workers.into_iter().map(|w| (w.name.clone(), w)));
                self.recordings
                    .extend(recordings.into_iter().map(|r| (r.id.clone(), r)));
                let seq = self.last_seq.unwrap_or(0);
                let resynced = match self.events.back() {
                    Some(l) if l.kind == "snapshot" => l.text.ends_with(RESYNCED),
                    _ => false,
                };
                let text = self.snapshot_text(seq, resynced);
                match self.events.back_mut() {
                    Some(l) if l.kind == "snapshot" => l.text = text,
                    _ => self.log(None, "snapshot", text),
                }
            }
            SubscriptionFrame::Event(e) => self.apply_event(e),
            SubscriptionFrame::Lagged { missed } => {
                self.resyncing = true;
                self.log(
                    None,
                    "lagged",
                    format!("fell behind: {missed} events missed, resyncing"),
                );
            }
            SubscriptionFrame::Refused(e) => {
                self.log(
                    None,
                    "console",
                    format!("subscription refused: {}", e.message),
                );
                let addr = self.addr().to_string();
                self.connection = ConnStatus::Refused {
                    addr,
                    reason: e.message,
                    at: 0,
                };
            }
        }
    }

    fn snapshot_text(&self, seq: u64, resynced: bool) -> String {
        format!(
            "snapshot #{seq}: {} workers, {} recordings{}",
            self.workers.len(),
            self.recordings.len(),
            if resynced { RESYNCED } else { "" }
        )
    }

    fn apply_event(&mut self, e: Event) {
        // Events up to the snapshot's number are already in it.
        if self.last_seq.is_some_and(|s| e.seq <= s) {
            return;
        }
        self.last_seq = Some(e.seq);
        let text = describe::event_text(&e.kind) + &describe::by(&e);
        let kind = describe::kind_name(&e.kind);
        match e.kind {
            EventKind::WorkerUp(w) | EventKind::WorkerChanged(w) => {
                self.workers.insert(w.name.clone(), w);
            }
            EventKind::WorkerLeft { name } => self.set_worker_state(&name, WorkerState::Gone),
            EventKind::WorkerLost { name } => self.set_worker_state(&name, WorkerState::Lost),
            EventKind::RecordingChanged(r) => {
                self.recordings.insert(r.id.clone(), r);
            }
            EventKind::DrainProgress {
                worker,
                remaining,
                message,
                complete,
            } => {
                self.drains.insert(
                    worker,
                    DrainStatus {
                        remaining,
                        message,
                        complete,
                    },
                );
            }
            EventKind::Notice { .. } => {}
            EventKind::HealthChanged {
                recording, health, ..
            } => {
                if let Some(r) = self.recordings.get_mut(&recording) {
                    r.health = health;
                }
            }
        }
        self.log_at(e.at, Some(e.seq), kind, text);
    }

    fn set_worker_state(&mut self, name: &WorkerName, state: WorkerState) {
        if let Some(w) = self.workers.get_mut(name) {
            w.state = state;
            w.used = 0;
            w.recordings.clear();
        }
    }

    fn log(&mut self, seq: Option<u64>, kind: &'static str, text: String) {
        self.log_at(self.now, seq, kind, text);
    }

    fn log_at(&mut self, at: UnixMillis, seq: Option<u64>, kind: &'static str, text: String) {
        if self.events.len() == EVENT_LOG_LEN {
            self.events.pop_front();
        }
        self.events.push_back(LogLine {
            at,
            seq,
            kind,
            text,
        });
    }

    /// The coordinator address, whatever the status.
    pub fn addr(&self) -> &str {
        match &self.connection {
            ConnStatus::Connecting { addr }
            | ConnStatus::Connected { addr, .. }
            | ConnStatus::Reconnecting { addr, .. }
            | ConnStatus::Refused { addr, .. } => addr,
        }
    }

    /// Fleet totals for the status bar.
    pub fn totals(&self) -> Totals {
        let mut t = Totals::default();
        for w in self.workers.values() {
            match w.state {
                WorkerState::Ready => t.ready += 1,
                WorkerState::Draining => t.draining += 1,
                WorkerState::Ineligible => t.ineligible += 1,
                WorkerState::Lost => t.lost += 1,
                WorkerState::Gone => {}
            }
            if w.state == WorkerState::Ready {
                t.free += w.capacity.saturating_sub(w.used);
            }
        }
        for r in self.recordings.values() {
            *t.by_state.entry(r.state).or_default() += 1;
        }
        t
    }
}

/// Fleet totals.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Totals {
    /// Workers ready.
    pub ready: u32,
    /// Workers draining.
    pub draining: u32,
    /// Workers ineligible.
    pub ineligible: u32,
    /// Workers lost.
    pub lost: u32,
    /// Free capacity on ready workers.
    pub free: u32,
    /// Recordings by state.
    pub by_state: BTreeMap<RecordingState, u32>,
}
