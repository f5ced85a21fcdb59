//! A standby coordinator's QUIC side: it accepts connections as the leader
//! would (same certificates, same ALPN) and answers every stream with
//! "not the leader", naming the leader when it knows it, so that workers
//! and consoles go there. It holds no fleet state and acts on nothing.

use std::sync::Arc;
use std::time::Duration;

use quinn::{Connection, Endpoint, RecvStream, SendStream, VarInt};
use recfleet_protocol::error::close;
use recfleet_protocol::quic;
use recfleet_protocol::{
    ConsoleResponse, CoordinatorMessage, OpenStream, QueryFrame, SubscriptionFrame, WireError,
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::replies::write_small;
use super::FIRST_FRAME_TIMEOUT;

/// How long an answer may take to write.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Streams a standby serves at once per connection (they are answered at
/// once; a client has no reason to open many).
const STREAMS: u32 = 16;

/// Serves `endpoint` as a standby until `shutdown`; `leader` says where the
/// leader is (`host:port`), when known. The endpoint stays open for the
/// caller (a standby that takes over closes it and binds its own).
pub async fn serve(
    endpoint: Endpoint,
    leader: watch::Receiver<Option<String>>,
    shutdown: CancellationToken,
) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let incoming = tokio::select! {
            i = endpoint.accept() => match i {
                Some(i) => i,
                None => break,
            },
            _ = shutdown.cancelled() => break,
        };
        let (leader, shutdown) = (leader.clone(), shutdown.clone());
        connections.spawn(async move {
            let remote = incoming.remote_address();
            match quic::accept(incoming).await {
                Ok(peer) => connection(peer.connection, leader, shutdown).await,
                Err(e) => tracing::debug!(%remote, error = %e, "connection refused"),
            }
        });
        while connections.try_join_next().is_some() {}
    }
    connections.shutdown().await;
}

async fn connection(
    conn: Connection,
    leader: watch::Receiver<Option<String>>,
    shutdown: CancellationToken,
) {
    conn.set_max_concurrent_bi_streams(VarInt::from_u32(STREAMS));
    loop {
        let (send, recv) = tokio::select! {
            s = conn.accept_bi() => match s {
                Ok(s) => s,
                Err(_) => return,
            },
            _ = shutdown.cancelled() => {
                conn.close(VarInt::from_u32(close::SHUTDOWN), b"standby taking over");
                return;
            }
        };
        let answer = WireError::not_leader(leader.borrow().as_deref());
        tokio::spawn(refuse(send, recv, Arc::new(answer)));
    }
}

/// Answers one stream's first frame with `answer`, in that stream's terms.
async fn refuse(mut send: SendStream, mut recv: RecvStream, answer: Arc<WireError>) {
    let first = tokio::time::timeout(
        FIRST_FRAME_TIMEOUT,
        quic::read_frame::<OpenStream>(&mut recv),
    )
    .await;
    let e = (*answer).clone();
    let written = match first {
        Ok(Ok(Some(OpenStream::Worker(_) | OpenStream::WorkerGone(_)))) => {
            write_small(&mut send, &CoordinatorMessage::Refused(e), WRITE_TIMEOUT).await
        }
        Ok(Ok(Some(OpenStream::Request(_)))) => {
            write_small(&mut send, &ConsoleResponse::Error(e), WRITE_TIMEOUT).await
        }
        Ok(Ok(Some(OpenStream::Subscribe))) => {
            write_small(&mut send, &SubscriptionFrame::Refused(e), WRITE_TIMEOUT).await
        }
        Ok(Ok(Some(OpenStream::Query(_)))) => {
            write_small(&mut send, &QueryFrame::Error(e), WRITE_TIMEOUT).await
        }
        _ => {
            quic::reject_stream(&mut send, &mut recv);
            return;
        }
    };
    if written.is_ok() {
        let _ = send.finish();
    }
}
