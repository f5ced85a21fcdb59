//! Questions only a recording's worker can answer (its thumbnail, its
//! logs, its processes), asked through the coordinator on a stream of
//! their own ([`recfleet_protocol::WorkerQuery`]); and a recording's event
//! track, which the coordinator reads from the store.

use quinn::{RecvStream, SendStream};
use recfleet_protocol::quic::{self, TransportError};
use recfleet_protocol::{
    ErrorCode, Event, EventsRequest, OpenStream, ProcessInfo, QueryFrame, RecordingId, Thumbnail,
    TrackEvent, WorkerName, WorkerQuery,
};

use crate::client::Client;
use crate::error::ClientError;

/// The frames answering one query, as they come.
#[derive(Debug)]
pub struct QueryStream {
    _send: SendStream,
    recv: RecvStream,
}

impl QueryStream {
    /// The next frame; `Ok(None)` when the stream ends. An error frame is
    /// [`ClientError::Wire`]. Not cancel-safe (see `EventStream::next`).
    pub async fn next(&mut self) -> Result<Option<QueryFrame>, ClientError> {
        match quic::read_frame::<QueryFrame>(&mut self.recv).await? {
            Some(QueryFrame::Error(e)) => Err(ClientError::Wire(e)),
            other => Ok(other),
        }
    }
}

impl Client {
    /// Opens a query stream, following a standby's `not_leader` to the
    /// leader (the first frame tells).
    pub async fn query(
        &self,
        q: WorkerQuery,
    ) -> Result<(QueryStream, Option<QueryFrame>), ClientError> {
        self.open_query(OpenStream::Query(q)).await
    }

    /// A recording's event track so far (`types`: only those; `tail`: the
    /// last N), read by the coordinator from the recording's destination.
    pub async fn events(
        &self,
        recording: RecordingId,
        types: Vec<String>,
        tail: Option<u32>,
    ) -> Result<Vec<TrackEvent>, ClientError> {
        let req = EventsRequest {
            recording,
            types,
            tail,
        };
        let (mut stream, mut frame) = self.open_query(OpenStream::Events(req)).await?;
        let mut out = Vec::new();
        loop {
            match frame {
                None | Some(QueryFrame::End { .. }) => return Ok(out),
                Some(QueryFrame::Events(batch)) => out.extend(batch),
                Some(other) => {
                    return Err(ClientError::Unexpected(format!(
                        "expected events, got {other:?}"
                    )))
                }
            }
            frame = tokio::time::timeout(self.request_timeout(), stream.next())
                .await
                .map_err(|_| ClientError::Unexpected("the event track stopped coming".into()))??;
        }
    }

    /// Opens a stream of [`QueryFrame`]s with `open`, following a
    /// standby's `not_leader` to the leader (the first frame tells).
    async fn open_query(
        &self,
        open_with: OpenStream,
    ) -> Result<(QueryStream, Option<QueryFrame>), ClientError> {
        let mut hops = 0;
        loop {
            let live = self.connection().await?;
            let open = async {
                let (mut send, recv) = live
                    .connection
                    .open_bi()
                    .await
                    .map_err(TransportError::from)?;
                quic::write_frame(&mut send, &open_with).await?;
                let mut stream = QueryStream { _send: send, recv };
                let first = stream.next().await;
                Ok::<_, ClientError>((stream, first))
            };
            let (stream, first) = tokio::time::timeout(self.request_timeout(), open)
                .await
                .map_err(|_| ClientError::NoAnswer {
                    addr: live.addr.to_string(),
                    after: self.request_timeout(),
                })??;
            match first {
                Err(ClientError::Wire(e)) if e.code == ErrorCode::NotLeader && hops < 3 => {
                    hops += 1;
                    self.redirect(e.leader());
                }
                Err(e) => return Err(e),
                Ok(first) => return Ok((stream, first)),
            }
        }
    }

    /// A recording's latest picture and sound level.
    pub async fn thumbnail(&self, id: RecordingId) -> Result<Thumbnail, ClientError> {
        match self
            .query(WorkerQuery::Thumbnail { recording: id })
            .await?
            .1
        {
            Some(QueryFrame::Thumbnail(t)) => Ok(t),
            other => Err(ClientError::Unexpected(format!(
                "expected a thumbnail, got {other:?}"
            ))),
        }
    }

    /// A recording's processes with pid, CPU and memory.
    pub async fn processes(&self, id: RecordingId) -> Result<Vec<ProcessInfo>, ClientError> {
        match self
            .query(WorkerQuery::Processes { recording: id })
            .await?
            .1
        {
            Some(QueryFrame::Processes(p)) => Ok(p),
            other => Err(ClientError::Unexpected(format!(
                "expected processes, got {other:?}"
            ))),
        }
    }

    /// The latest `limit` entries of the audit trail, oldest first.
    pub async fn audit(
        &self,
        limit: u32,
    ) -> Result<Vec<recfleet_protocol::AuditEntry>, ClientError> {
        match self
            .request(recfleet_protocol::ConsoleRequest::Audit { limit })
            .await?
        {
            recfleet_protocol::ConsoleResponse::Audit(entries) => Ok(entries),
            other => Err(ClientError::unexpected("audit entries", &other)),
        }
    }

    /// The latest events about a recording or a worker, oldest first.
    pub async fn history(
        &self,
        recording: Option<RecordingId>,
        worker: Option<WorkerName>,
        limit: u32,
    ) -> Result<Vec<Event>, ClientError> {
        let req = recfleet_protocol::ConsoleRequest::History {
            recording,
            worker,
            limit,
        };
        match self.request(req).await? {
            recfleet_protocol::ConsoleResponse::History(events) => Ok(events),
            other => Err(ClientError::unexpected("events", &other)),
        }
    }
}
