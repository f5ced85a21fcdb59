//! Event subscriptions: one stream ([`EventStream`]), or a subscription
//! that outlives connections ([`Subscription`]).
//!
//! The coordinator starts every subscription with its state: a
//! [`SubscriptionFrame::Snapshot`] frame, then as many
//! [`SubscriptionFrame::SnapshotMore`] parts as it needs (each adds workers
//! and recordings), then numbered events. Nothing says which part is the
//! last: only the first frame that is not a part shows that the snapshot
//! was complete, and in a quiet fleet that frame may come minutes later.
//! So both kinds of subscription pass the parts on as they arrive (the
//! console's TUI state applies them one by one); a consumer that wants one
//! value puts them together with an [`Assembler`].
//!
//! After `Lagged` the coordinator itself sends a fresh snapshot on the same
//! stream, so neither kind resubscribes for it. When the stream or the
//! connection is cut, a [`Subscription`] says so
//! ([`Update::Disconnected`]), waits with backoff, reconnects and
//! resubscribes: the fresh snapshot it then receives replaces what the
//! consumer knew.

use std::net::SocketAddr;
use std::time::Duration;

use quinn::{Connection, RecvStream, SendStream};
use recfleet_protocol::quic::{self, TransportError};
use recfleet_protocol::{OpenStream, RecordingInfo, SubscriptionFrame, WorkerInfo};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::backoff;
use crate::client::{Client, Identity};
use crate::error::ClientError;

/// Opens a subscription stream on `conn`: the send side (to keep open as
/// long as the subscription; the coordinator may take a finished stream as
/// "gone") and the receive side the frames arrive on.
pub async fn open(conn: &Connection) -> Result<(SendStream, RecvStream), ClientError> {
    let (mut send, recv) = conn.open_bi().await.map_err(TransportError::from)?;
    quic::write_frame(&mut send, &OpenStream::Subscribe).await?;
    Ok((send, recv))
}

/// One subscription stream on one connection: the coordinator's frames as
/// they come, ending with the stream (no reconnect).
#[derive(Debug)]
pub struct EventStream {
    _send: SendStream,
    recv: RecvStream,
}

impl EventStream {
    /// Opens the stream on `conn`.
    pub async fn open(conn: &Connection) -> Result<EventStream, ClientError> {
        let (send, recv) = open(conn).await?;
        Ok(EventStream { _send: send, recv })
    }

    /// The next frame; `Ok(None)` when the coordinator finished the stream.
    /// Not cancel-safe (a frame half read is lost): do not race it in a
    /// `select!` that goes on reading; [`Subscription::next`] is.
    pub async fn next(&mut self) -> Result<Option<SubscriptionFrame>, ClientError> {
        Ok(quic::read_frame::<SubscriptionFrame>(&mut self.recv).await?)
    }
}

/// What a [`Subscription`] reports.
#[derive(Debug)]
pub enum Update {
    /// Connected and subscribed (the first time, or again after
    /// [`Update::Disconnected`]); the snapshot follows as frames.
    Connected {
        /// The address reached.
        addr: SocketAddr,
        /// Who the coordinator sees.
        identity: Identity,
    },
    /// A frame as the coordinator sent it: `Snapshot` (replaces all that
    /// the consumer knew), `SnapshotMore` (adds to it), `Event`, `Lagged`
    /// (a fresh `Snapshot` follows on the same stream) or `Refused`
    /// (followed by [`Update::Disconnected`]).
    /// (Boxed: a frame is large, the other updates small.)
    Frame(Box<SubscriptionFrame>),
    /// The connection or the subscription failed or was refused; the next
    /// attempt starts after `retry_in`.
    Disconnected {
        /// Why.
        error: ClientError,
        /// When the next attempt starts, from now.
        retry_in: Duration,
    },
}

/// How many updates wait for a slow consumer. Past that the subscription
/// stops reading, the coordinator's queue for it fills, and it is told
/// `Lagged` and a fresh snapshot: a slow consumer resyncs instead of
/// holding events without bound.
const QUEUE: usize = 256;

/// A subscription that reconnects and resubscribes by itself, with capped
/// exponential backoff (reset by every snapshot received), until dropped.
/// It runs as a task of the current tokio runtime and shares the
/// [`Client`]'s connection.
#[derive(Debug)]
pub struct Subscription {
    updates: mpsc::Receiver<Update>,
    task: JoinHandle<()>,
}

impl Subscription {
    /// Starts subscribing with the default backoff ([`backoff::BASE`] doubling
    /// to [`backoff::CAP`]).
    pub fn start(client: Client) -> Subscription {
        Subscription::with_backoff(client, backoff::BASE, backoff::CAP)
    }

    /// Starts subscribing; the delay before retry `n` is
    /// `min(cap, base * 2^n)`, jittered down to half.
    pub fn with_backoff(client: Client, base: Duration, cap: Duration) -> Subscription {
        let (tx, updates) = mpsc::channel(QUEUE);
        let task = tokio::spawn(run(client, tx, base, cap));
        Subscription { updates, task }
    }

    /// The next update. Cancel-safe: nothing is lost when the future is
    /// dropped (the reading happens in the subscription's task). `None`
    /// only if that task is gone.
    pub async fn next(&mut self) -> Option<Update> {
        self.updates.recv().await
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn run(client: Client, tx: mpsc::Sender<Update>, base: Duration, cap: Duration) {
    let mut attempt: u32 = 0;
    loop {
        let error = match session(&client, &tx, &mut attempt).await {
            Ok(()) => return,
            Err(e) => e,
        };
        let retry_in = backoff::delay(attempt, base, cap, fastrand::f64());
        attempt = attempt.saturating_add(1);
        if tx
            .send(Update::Disconnected { error, retry_in })
            .await
            .is_err()
        {
            return;
        }
        tokio::time::sleep(retry_in).await;
    }
}

/// One connected subscription, until it fails (`Err`) or the consumer is
/// gone (`Ok`).
async fn session(
    client: &Client,
    tx: &mpsc::Sender<Update>,
    attempt: &mut u32,
) -> Result<(), ClientError> {
    // WhoAmI first: a standby's answer sends the client to the leader, and
    // the stream then opens on the leader's connection.
    let identity = client.whoami().await?;
    let live = client.connection().await?;
    let mut stream = EventStream::open(&live.connection).await?;
    let connected = Update::Connected {
        addr: live.addr,
        identity,
    };
    if tx.send(connected).await.is_err() {
        return Ok(());
    }
    loop {
        let frame = stream.next().await?.ok_or(ClientError::SubscriptionEnded)?;
        let after = after_frame(&frame);
        if let SubscriptionFrame::Refused(e) = &frame {
            if e.code == recfleet_protocol::ErrorCode::NotLeader {
                client.redirect(e.leader());
            }
        }
        if after.working {
            // A working subscription: the next loss starts from the base delay.
            *attempt = 0;
        }
        if tx.send(Update::Frame(Box::new(frame))).await.is_err() {
            return Ok(());
        }
        if let Some(e) = after.ends {
            return Err(e);
        }
    }
}

/// What a frame means for the subscription besides being passed on.
#[derive(Debug)]
struct AfterFrame {
    /// The subscription works (a snapshot arrived): reset the backoff.
    working: bool,
    /// The stream is over: retry with backoff.
    ends: Option<ClientError>,
}

fn after_frame(frame: &SubscriptionFrame) -> AfterFrame {
    match frame {
        SubscriptionFrame::Snapshot { .. } => AfterFrame {
            working: true,
            ends: None,
        },
        SubscriptionFrame::Refused(e) => AfterFrame {
            working: false,
            ends: Some(ClientError::Wire(e.clone())),
        },
        SubscriptionFrame::SnapshotMore { .. }
        | SubscriptionFrame::Event(_)
        | SubscriptionFrame::Lagged { .. } => AfterFrame {
            working: false,
            ends: None,
        },
    }
}

/// A snapshot as one value: the `Snapshot` frame with every `SnapshotMore`
/// part after it added.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// The event number the snapshot includes; events that follow are newer.
    pub seq: u64,
    /// Every worker.
    pub workers: Vec<WorkerInfo>,
    /// Every recording not yet ended, plus recently ended ones.
    pub recordings: Vec<RecordingInfo>,
}

/// What [`Assembler::push`] has ready.
#[derive(Debug, Default, PartialEq)]
pub struct Assembled {
    /// A snapshot known complete because the frame pushed is not one of
    /// its parts.
    pub snapshot: Option<Snapshot>,
    /// The frame pushed, when it is not part of a snapshot (an event,
    /// `Lagged`, `Refused`), to handle after `snapshot`.
    pub frame: Option<SubscriptionFrame>,
}

/// Puts a snapshot's parts together. A snapshot is complete when a frame
/// that is not one of its parts arrives; [`Assembler::pending`] and
/// [`Assembler::finish`] give the parts so far to a consumer that cannot
/// wait for it (in a quiet fleet, the next event may be far off).
#[derive(Debug, Default)]
pub struct Assembler {
    parts: Option<Snapshot>,
}

impl Assembler {
    /// An assembler with nothing pending.
    pub fn new() -> Assembler {
        Assembler::default()
    }

    /// Takes one frame in order. A `SnapshotMore` with no snapshot before
    /// it (a coordinator bug) starts one at `seq` 0 rather than being lost.
    pub fn push(&mut self, frame: SubscriptionFrame) -> Assembled {
        match frame {
            SubscriptionFrame::Snapshot {
                seq,
                workers,
                recordings,
            } => Assembled {
                snapshot: self.parts.replace(Snapshot {
                    seq,
                    workers,
                    recordings,
                }),
                frame: None,
            },
            SubscriptionFrame::SnapshotMore {
                workers,
                recordings,
            } => {
                let s = self.parts.get_or_insert_with(Snapshot::default);
                s.workers.extend(workers);
                s.recordings.extend(recordings);
                Assembled::default()
            }
            other => Assembled {
                snapshot: self.parts.take(),
                frame: Some(other),
            },
        }
    }

    /// The snapshot being put together, as far as it goes.
    pub fn pending(&self) -> Option<&Snapshot> {
        self.parts.as_ref()
    }

    /// Takes the snapshot being put together, as far as it goes.
    pub fn finish(&mut self) -> Option<Snapshot> {
        self.parts.take()
    }
}

/// Subscriptions of a [`Client`] (here, so that the client itself does not
/// depend on subscriptions).
impl Client {
    /// Opens one event stream on the connection (connecting first if
    /// needed): the coordinator's frames as they come, ending with the
    /// stream. For a subscription that outlives connections, see
    /// [`Client::subscription`].
    pub async fn subscribe(&self) -> Result<EventStream, ClientError> {
        let live = self.connection().await?;
        EventStream::open(&live.connection).await
    }

    /// A subscription that reconnects and resubscribes by itself, with
    /// backoff, until it is dropped.
    pub fn subscription(&self) -> Subscription {
        Subscription::start(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use recfleet_protocol::{
        Epoch, ErrorCode, Event, EventKind, RecordingId, RecordingState, WireError, WorkerName,
        WorkerState,
    };

    fn worker(name: &str) -> WorkerInfo {
        WorkerInfo {
            name: WorkerName::new(name).unwrap(),
            state: WorkerState::Ready,
            address: "10.0.0.1:4433".into(),
            version: "0.1.0".into(),
            capacity: 2,
            used: 0,
            labels: Default::default(),
            cpu_millicores: 0,
            rss_bytes: 0,
            rtt_us: 0,
            connected_at: 0,
            last_seen: 0,
            recordings: Vec::new(),
            upload_buffer_bytes: 0,
            upload_buffer_full: false,
            ready: Default::default(),
            admission: Default::default(),
            host: String::new(),
        }
    }

    fn recording(id: &str) -> RecordingInfo {
        RecordingInfo {
            id: RecordingId::new(id).unwrap(),
            state: RecordingState::Pending,
            url: format!("https://class.example/{id}"),
            worker: None,
            epoch: Epoch(1),
            created_at: 0,
            started_at: None,
            ended_at: None,
            bytes: 0,
            fps_milli: 0,
            repeated_permille: 0,
            restarts: 0,
            segments: 0,
            reason: None,
            upload_lag_ms: 0,
            health: Default::default(),
            level_db: None,
            copy: None,
        }
    }

    fn event(seq: u64) -> SubscriptionFrame {
        SubscriptionFrame::Event(Event {
            seq,
            at: 0,
            kind: EventKind::WorkerLeft {
                name: WorkerName::new("w1").unwrap(),
            },
            by: None,
        })
    }

    fn names(s: &Snapshot) -> (Vec<String>, Vec<String>) {
        (
            s.workers.iter().map(|w| w.name.to_string()).collect(),
            s.recordings.iter().map(|r| r.id.to_string()).collect(),
        )
    }

    #[test]
    fn parts_are_added_to_the_snapshot_until_an_event_arrives() {
        let mut a = Assembler::new();
        let first = a.push(SubscriptionFrame::Snapshot {
            seq: 7,
            workers: vec![worker("w1")],
            recordings: vec![recording("r1")],
        });
        assert_eq!(first, Assembled::default());
        let more = a.push(SubscriptionFrame::SnapshotMore {
            workers: vec![worker("w2")],
            recordings: vec![recording("r2"), recording("r3")],
        });
        assert_eq!(more, Assembled::default());
        a.push(SubscriptionFrame::SnapshotMore {
            workers: Vec::new(),
            recordings: vec![recording("r4")],
        });
        assert_eq!(a.pending().map(|s| s.recordings.len()), Some(4));

        let done = a.push(event(8));
        let snapshot = done.snapshot.expect("complete once an event arrives");
        assert_eq!(snapshot.seq, 7);
        assert_eq!(
            names(&snapshot),
            (
                vec!["w1".to_string(), "w2".to_string()],
                vec!["r1", "r2", "r3", "r4"]
                    .into_iter()
                    .map(String::from)
                    .collect()
            )
        );
        assert_eq!(done.frame, Some(event(8)));
        assert!(a.pending().is_none());
        // Events after it pass through alone.
        assert_eq!(
            a.push(event(9)),
            Assembled {
                snapshot: None,
                frame: Some(event(9))
            }
        );
    }

    #[test]
    fn a_new_snapshot_completes_the_previous_one_and_lagged_ends_one() {
        let mut a = Assembler::new();
        a.push(SubscriptionFrame::Snapshot {
            seq: 1,
            workers: vec![worker("w1")],
            recordings: Vec::new(),
        });
        let done = a.push(SubscriptionFrame::Snapshot {
            seq: 5,
            workers: Vec::new(),
            recordings: vec![recording("r9")],
        });
        assert_eq!(done.snapshot.map(|s| s.seq), Some(1));
        assert_eq!(done.frame, None);
        let lagged = a.push(SubscriptionFrame::Lagged { missed: 3 });
        assert_eq!(lagged.snapshot.map(|s| s.seq), Some(5));
        assert_eq!(lagged.frame, Some(SubscriptionFrame::Lagged { missed: 3 }));
    }

    #[test]
    fn a_quiet_fleet_can_take_the_parts_so_far() {
        let mut a = Assembler::new();
        a.push(SubscriptionFrame::Snapshot {
            seq: 2,
            workers: vec![worker("w1")],
            recordings: Vec::new(),
        });
        a.push(SubscriptionFrame::SnapshotMore {
            workers: vec![worker("w2")],
            recordings: Vec::new(),
        });
        let s = a.finish().unwrap();
        assert_eq!((s.seq, s.workers.len()), (2, 2));
        assert!(a.finish().is_none());
        // A stray part starts a snapshot rather than being dropped.
        a.push(SubscriptionFrame::SnapshotMore {
            workers: vec![worker("w3")],
            recordings: Vec::new(),
        });
        assert_eq!(a.pending().map(|s| (s.seq, s.workers.len())), Some((0, 1)));
    }

    #[test]
    fn a_snapshot_resets_the_backoff_and_a_refusal_ends_the_stream() {
        let snap = SubscriptionFrame::Snapshot {
            seq: 0,
            workers: Vec::new(),
            recordings: Vec::new(),
        };
        assert!(after_frame(&snap).working);
        assert!(after_frame(&snap).ends.is_none());
        for f in [
            event(1),
            SubscriptionFrame::Lagged { missed: 1 },
            SubscriptionFrame::SnapshotMore {
                workers: Vec::new(),
                recordings: Vec::new(),
            },
        ] {
            let a = after_frame(&f);
            assert!(!a.working && a.ends.is_none(), "{f:?}");
        }
        let refused = SubscriptionFrame::Refused(WireError::new(
            ErrorCode::Forbidden,
            "agents may not subscribe",
        ));
        match after_frame(&refused).ends {
            Some(ClientError::Wire(e)) => assert_eq!(e.code, ErrorCode::Forbidden),
            other => panic!("{other:?}"),
        }
    }
}
