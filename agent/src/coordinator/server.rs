//! The coordinator's QUIC side: accepts connections, authorizes each stream
//! by the certificate's role, and bridges streams to the fleet actor.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use quinn::{Connection, Endpoint, RecvStream, SendStream, VarInt};
use recfleet_certs::{Identity, Role};
use recfleet_protocol::error::close;
use recfleet_protocol::quic::{self, TransportError};
use recfleet_protocol::{
    ConsoleRequest, ConsoleResponse, CoordinatorMessage, ErrorCode, OpenStream, SubscriptionFrame,
    WireError, WorkerHello, WorkerMessage,
};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::cmd::{Cmd, FleetTx};

static SESSIONS: AtomicU64 = AtomicU64::new(1);

/// Accepts connections until `shutdown` fires.
pub async fn serve(
    endpoint: Endpoint,
    fleet: FleetTx,
    telemetry_ms: u32,
    _silence: Duration,
    shutdown: CancellationToken,
) {
    loop {
        let incoming = tokio::select! {
            i = endpoint.accept() => match i {
                Some(i) => i,
                None => break,
            },
            _ = shutdown.cancelled() => break,
        };
        let fleet = fleet.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let remote = incoming.remote_address();
            match quic::accept(incoming).await {
                Ok(peer) => {
                    tracing::debug!(%remote, identity = %peer.identity, "connection");
                    connection(
                        peer.connection,
                        Arc::new(peer.identity),
                        fleet,
                        telemetry_ms,
                        shutdown,
                    )
                    .await;
                }
                Err(e) => tracing::warn!(%remote, error = %e, "connection refused"),
            }
        });
    }
    endpoint.close(
        VarInt::from_u32(close::SHUTDOWN),
        b"coordinator shutting down",
    );
}

async fn connection(
    conn: Connection,
    identity: Arc<Identity>,
    fleet: FleetTx,
    telemetry_ms: u32,
    shutdown: CancellationToken,
) {
    loop {
        let (send, recv) = tokio::select! {
            s = conn.accept_bi() => match s {
                Ok(s) => s,
                Err(_) => break,
            },
            _ = shutdown.cancelled() => break,
        };
        let (conn, identity, fleet) = (conn.clone(), identity.clone(), fleet.clone());
        tokio::spawn(async move {
            stream(conn, identity, fleet, send, recv, telemetry_ms).await;
        });
    }
}

async fn stream(
    conn: Connection,
    identity: Arc<Identity>,
    fleet: FleetTx,
    mut send: SendStream,
    mut recv: RecvStream,
    telemetry_ms: u32,
) {
    let first = match tokio::time::timeout(
        Duration::from_secs(10),
        quic::read_frame::<OpenStream>(&mut recv),
    )
    .await
    {
        Ok(Ok(Some(first))) => first,
        Ok(Ok(None)) => return,
        Ok(Err(e)) => {
            tracing::warn!(identity = %identity, error = %e, "bad first frame");
            quic::reject_stream(&mut send, &mut recv);
            return;
        }
        Err(_) => {
            quic::reject_stream(&mut send, &mut recv);
            return;
        }
    };
    match first {
        OpenStream::Worker(hello) => {
            if let Err(e) = authorize_worker(&identity, &hello) {
                tracing::warn!(identity = %identity, error = %e.message, "worker refused");
                let _ = quic::write_frame(&mut send, &CoordinatorMessage::Refused(e)).await;
                let _ = send.finish();
                return;
            }
            worker_session(conn, hello, fleet, send, recv, telemetry_ms).await;
        }
        OpenStream::Request(req) => {
            let response = match authorize_request(&identity, &req) {
                Err(e) => ConsoleResponse::Error(e),
                Ok(()) => {
                    let (reply, rx) = oneshot::channel();
                    let _ = fleet
                        .send(Cmd::Request {
                            identity: (*identity).clone(),
                            req,
                            reply,
                        })
                        .await;
                    rx.await.unwrap_or_else(|_| {
                        ConsoleResponse::Error(WireError::new(
                            ErrorCode::Unavailable,
                            "the coordinator is shutting down",
                        ))
                    })
                }
            };
            let _ = quic::write_frame(&mut send, &response).await;
            let _ = send.finish();
        }
        OpenStream::Subscribe => {
            if !identity.role().can_read_fleet() {
                let refused = SubscriptionFrame::Refused(forbidden(&identity, "watch the fleet"));
                let _ = quic::write_frame(&mut send, &refused).await;
                let _ = send.finish();
                return;
            }
            subscription(fleet, send).await;
        }
    }
}

fn forbidden(identity: &Identity, what: &str) -> WireError {
    let hint = match identity.role() {
        Role::Agent => "agent certificates may only speak the worker protocol",
        Role::Viewer => "a viewer may only watch; use an operator certificate to act",
        Role::Coordinator => "a coordinator certificate is a server identity",
        Role::Operator => "",
    };
    WireError::new(
        ErrorCode::Forbidden,
        format!("{identity} may not {what}: {hint}"),
    )
}

/// Only an agent certificate registers a worker, and only under its own name.
fn authorize_worker(identity: &Identity, hello: &WorkerHello) -> Result<(), WireError> {
    if identity.role() != Role::Agent {
        return Err(WireError::new(
            ErrorCode::Forbidden,
            format!("{identity} may not register as a worker: only agent certificates may"),
        ));
    }
    if identity.name() != hello.name.as_str() {
        return Err(WireError::new(
            ErrorCode::Forbidden,
            format!(
                "certificate agent/{} may not register as worker \"{}\"",
                identity.name(),
                hello.name
            ),
        ));
    }
    Ok(())
}

/// Viewers read, operators also act, nobody else speaks the console protocol.
pub fn authorize_request(identity: &Identity, req: &ConsoleRequest) -> Result<(), WireError> {
    let role = identity.role();
    if !role.can_read_fleet() {
        return Err(forbidden(identity, "use the console protocol"));
    }
    if req.is_action() && !role.can_operate() {
        return Err(forbidden(identity, "change the fleet"));
    }
    Ok(())
}

/// A worker's control stream. Frames are read by a task of their own (a
/// frame read is not cancel-safe, so it must not sit in a select).
async fn worker_session(
    conn: Connection,
    hello: WorkerHello,
    fleet: FleetTx,
    mut send: SendStream,
    mut recv: RecvStream,
    telemetry_ms: u32,
) {
    let session = SESSIONS.fetch_add(1, Ordering::Relaxed);
    let name = hello.name.clone();
    let (tx, mut outbox) = mpsc::channel(super::cmd::WORKER_OUTBOX);
    let (reply, verdict) = oneshot::channel();
    let _ = fleet
        .send(Cmd::Hello {
            session,
            address: conn.remote_address().to_string(),
            hello,
            tx,
            reply,
        })
        .await;
    match verdict.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            let _ = quic::write_frame(&mut send, &CoordinatorMessage::Refused(e)).await;
            let _ = send.finish();
            return;
        }
        Err(_) => return,
    }
    let welcome = CoordinatorMessage::Welcome {
        version: env!("CARGO_PKG_VERSION").to_string(),
        telemetry_interval_ms: telemetry_ms,
    };
    if quic::write_frame(&mut send, &welcome).await.is_err() {
        let _ = fleet
            .send(Cmd::WorkerClosed {
                session,
                name,
                why: "welcome not delivered".into(),
            })
            .await;
        return;
    }
    let (in_tx, mut inbox) = mpsc::unbounded_channel::<Result<WorkerMessage, TransportError>>();
    let reader = tokio::spawn(async move {
        loop {
            match quic::read_frame::<WorkerMessage>(&mut recv).await {
                Ok(Some(m)) => {
                    if in_tx.send(Ok(m)).is_err() {
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    let _ = in_tx.send(Err(e));
                    break;
                }
            }
        }
    });
    let why = loop {
        tokio::select! {
            m = inbox.recv() => match m {
                Some(Ok(msg)) => {
                    let rtt_us = conn.rtt().as_micros().min(u128::from(u32::MAX)) as u32;
                    let _ = fleet.send(Cmd::FromWorker { session, name: name.clone(), msg, rtt_us }).await;
                }
                Some(Err(TransportError::Frame(e))) => {
                    conn.close(VarInt::from_u32(close::PROTOCOL_ERROR), e.to_string().as_bytes());
                    break format!("protocol error: {e}");
                }
                Some(Err(e)) => break e.to_string(),
                None => break "the worker closed its control stream".to_string(),
            },
            out = outbox.recv() => match out {
                Some(msg) => {
                    if let Err(e) = quic::write_frame(&mut send, &msg).await {
                        break e.to_string();
                    }
                }
                None => {
                    // The fleet dropped this session (a newer one, or lost).
                    conn.close(VarInt::from_u32(close::SUPERSEDED), b"session replaced or declared lost");
                    break "session closed by the coordinator".to_string();
                }
            },
        }
    };
    reader.abort();
    let _ = fleet.send(Cmd::WorkerClosed { session, name, why }).await;
}

/// A console subscription: a snapshot, then events; a subscriber that falls
/// behind is told how many it missed and gets a fresh snapshot.
async fn subscription(fleet: FleetTx, mut send: SendStream) {
    loop {
        let (reply, rx) = oneshot::channel();
        if fleet.send(Cmd::Subscribe { reply }).await.is_err() {
            return;
        }
        let Ok(sub) = rx.await else {
            return;
        };
        let mut events = sub.events;
        for frame in &sub.frames {
            if quic::write_frame(&mut send, frame).await.is_err() {
                return;
            }
        }
        loop {
            match events.recv().await {
                Ok(ev) => {
                    if quic::write_frame(&mut send, &SubscriptionFrame::Event(ev))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    if quic::write_frame(&mut send, &SubscriptionFrame::Lagged { missed })
                        .await
                        .is_err()
                    {
                        return;
                    }
                    break; // resync from a fresh snapshot
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use recfleet_protocol::{RecordingId, WorkerName};

    fn id(role: Role, name: &str) -> Identity {
        Identity::new(role, name).unwrap()
    }

    #[test]
    fn roles_decide_what_may_be_asked() {
        let stop = ConsoleRequest::StopRecording {
            id: RecordingId::new("r").unwrap(),
        };
        let list = ConsoleRequest::ListWorkers;
        assert!(authorize_request(&id(Role::Operator, "o"), &stop).is_ok());
        assert!(authorize_request(&id(Role::Viewer, "v"), &list).is_ok());
        let e = authorize_request(&id(Role::Viewer, "v"), &stop).unwrap_err();
        assert_eq!(e.code, ErrorCode::Forbidden);
        assert!(
            e.message.contains("viewer/v may not change the fleet"),
            "{}",
            e.message
        );
        let e = authorize_request(&id(Role::Agent, "w1"), &list).unwrap_err();
        assert!(
            e.message.contains("only speak the worker protocol"),
            "{}",
            e.message
        );
    }

    #[test]
    fn only_an_agent_registers_and_only_as_itself() {
        let hello = WorkerHello {
            name: WorkerName::new("w1").unwrap(),
            version: "t".into(),
            capacity: 1,
            labels: Default::default(),
            running: vec![],
            draining: false,
        };
        assert!(authorize_worker(&id(Role::Agent, "w1"), &hello).is_ok());
        assert!(authorize_worker(&id(Role::Agent, "w2"), &hello).is_err());
        assert!(authorize_worker(&id(Role::Operator, "w1"), &hello).is_err());
        assert!(authorize_worker(&id(Role::Viewer, "w1"), &hello).is_err());
    }
}
