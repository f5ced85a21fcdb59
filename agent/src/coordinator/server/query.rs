//! Queries about one recording relayed to its worker (thumbnail, logs,
//! processes): the coordinator opens a stream on the worker's connection,
//! sends the console's [`WorkerQuery`] and copies the worker's frames back
//! until either side ends. The coordinator holds one frame at a time per
//! query; a console that stops reading holds its worker's stream back
//! through QUIC flow control, never the coordinator's memory.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use quinn::{Connection, SendStream};
use recfleet_certs::Identity;
use recfleet_protocol::quic::{self, TransportError};
use recfleet_protocol::{
    ConsoleRequest, ConsoleResponse, ErrorCode, QueryFrame, RecordingState, WireError, WorkerName,
    WorkerQuery,
};
use tokio::time::Instant;

use super::replies::write_small;
use super::{ask, forbidden, Shared};
use crate::coordinator::cmd::{Cmd, REQUEST_DEADLINE};

/// How long the worker may take to open the stream and send its first
/// frame (a thumbnail is read from disk, processes sampled for 200 ms).
const FIRST_ANSWER: Duration = Duration::from_secs(5);
/// How long a frame may take to write to the console.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// The live connection of each worker, for queries.
#[derive(Debug, Default)]
pub struct WorkerConnections {
    live: Mutex<HashMap<WorkerName, Connection>>,
}

impl WorkerConnections {
    /// A worker's session started on `conn`.
    pub fn insert(&self, name: &WorkerName, conn: &Connection) {
        self.live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.clone(), conn.clone());
    }

    /// A worker's session on `conn` ended (a newer one stays).
    pub fn remove(&self, name: &WorkerName, conn: &Connection) {
        let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        if live
            .get(name)
            .is_some_and(|c| c.stable_id() == conn.stable_id())
        {
            live.remove(name);
        }
    }

    fn get(&self, name: &WorkerName) -> Option<Connection> {
        self.live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned()
    }
}

/// Answers one console query stream.
pub(super) async fn relay(
    shared: &Shared,
    identity: &Identity,
    query: WorkerQuery,
    mut send: SendStream,
) {
    match open_to_worker(shared, identity, &query).await {
        Err(e) => {
            if write_small(&mut send, &QueryFrame::Error(e), WRITE_TIMEOUT)
                .await
                .is_ok()
            {
                let _ = send.finish();
            }
        }
        Ok((worker, mut from_worker, first)) => {
            let Some(first) = first else {
                let _ = send.finish();
                return;
            };
            let write = quic::write_frame(&mut send, &first);
            if !matches!(tokio::time::timeout(WRITE_TIMEOUT, write).await, Ok(Ok(()))) {
                return;
            }
            copy(&worker, &mut from_worker, &mut send).await;
        }
    }
}

/// Finds the recording's worker and opens the query stream to it; the
/// stream's first frame has arrived (or the worker failed plainly).
async fn open_to_worker(
    shared: &Shared,
    identity: &Identity,
    query: &WorkerQuery,
) -> Result<(WorkerName, quinn::RecvStream, Option<QueryFrame>), WireError> {
    if !identity.role().can_read_fleet() {
        super::audit_refusal(shared, identity, "ask a worker about a recording");
        return Err(forbidden(identity, "ask a worker about a recording"));
    }
    let id = query.recording().clone();
    let until = Instant::now() + REQUEST_DEADLINE;
    let shown = ask(&shared.fleet, until, |reply| Cmd::Request {
        identity: identity.clone(),
        req: ConsoleRequest::ShowRecording { id: id.clone() },
        reply,
    })
    .await?;
    let info = match shown {
        ConsoleResponse::Recording(d) => d.info,
        ConsoleResponse::Error(e) => return Err(e),
        _ => return Err(WireError::new(ErrorCode::Internal, "unexpected answer")),
    };
    let worker = match (&info.worker, info.state) {
        (Some(w), s) if s.holds_capacity() => w.clone(),
        _ => {
            return Err(WireError::new(
                ErrorCode::NotFound,
                format!(
                    "recording {id} is {} and runs on no worker: its processes are gone \
                     (their logs are stored beside the recording, under logs/)",
                    info.state
                ),
            ))
        }
    };
    let Some(conn) = shared.connections.get(&worker) else {
        let lost = info.state == RecordingState::Interrupted;
        return Err(WireError::new(
            ErrorCode::Unavailable,
            format!(
                "worker {worker} is not connected{}: its logs are on its own disk until it \
                 comes back (and stored beside the recording when a part ends)",
                if lost { " (lost)" } else { "" }
            ),
        ));
    };
    let open = async {
        let (mut to, mut from) = conn.open_bi().await.map_err(TransportError::from)?;
        quic::write_frame(&mut to, query).await?;
        let _ = to.finish();
        // Wait for the worker to speak: an unknown recording is said at once.
        let first = quic::read_frame::<QueryFrame>(&mut from).await?;
        Ok::<_, TransportError>((from, first))
    };
    let (from, first) = match tokio::time::timeout(FIRST_ANSWER, open).await {
        Err(_) => {
            return Err(WireError::new(
                ErrorCode::Unavailable,
                format!(
                    "worker {worker} did not answer within {} s",
                    FIRST_ANSWER.as_secs()
                ),
            ))
        }
        Ok(Err(e)) => {
            return Err(WireError::new(
                ErrorCode::Unavailable,
                format!("worker {worker}: {e}"),
            ))
        }
        Ok(Ok(x)) => x,
    };
    Ok((worker, from, first))
}

/// Copies frames worker -> console until one side ends.
async fn copy(worker: &WorkerName, from: &mut quinn::RecvStream, to: &mut SendStream) {
    loop {
        let frame = tokio::select! {
            f = quic::read_frame::<QueryFrame>(from) => f,
            // The console went away: stop asking the worker.
            _ = to.stopped() => return,
        };
        match frame {
            Ok(Some(frame)) => {
                let write = quic::write_frame(to, &frame);
                match tokio::time::timeout(WRITE_TIMEOUT, write).await {
                    Ok(Ok(())) => {}
                    _ => return,
                }
            }
            Ok(None) => {
                let _ = to.finish();
                return;
            }
            Err(e) => {
                let end = QueryFrame::Error(WireError::new(
                    ErrorCode::Unavailable,
                    format!("worker {worker}: {e}"),
                ));
                if write_small(to, &end, WRITE_TIMEOUT).await.is_ok() {
                    let _ = to.finish();
                }
                return;
            }
        }
    }
}
