//! A worker's control stream: hello, frames both ways, liveness on the
//! session's own clock, undecodable frames skipped.

use super::*;

/// What a worker session's reader hands to the session.
#[derive(Debug)]
pub(super) enum Inbound {
    /// A frame that decoded.
    Message(WorkerMessage),
    /// The stream is over for reading: why, and whether it broke the
    /// protocol (then the session resets its send side with
    /// `PROTOCOL_ERROR`; the reader has stopped the receive side).
    End { why: String, protocol: bool },
}

/// Does a frame go to the driver even when its queue is full? Telemetry is
/// dropped then (the next one follows in a second); every other frame
/// changes the fleet and waits for room.
pub(super) fn droppable(msg: &WorkerMessage) -> bool {
    matches!(msg, WorkerMessage::Telemetry(_))
}

/// Hands a worker frame to the driver; `Err` when the driver is gone.
pub(super) async fn forward(fleet: &FleetTx, cmd: Cmd, droppable: bool) -> Result<(), ()> {
    if !droppable {
        return fleet.send(cmd).await.map_err(|_| ());
    }
    match fleet.try_send(cmd) {
        Ok(()) => Ok(()),
        Err(mpsc::error::TrySendError::Full(_)) => {
            let n = TELEMETRY_DROPPED.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(dropped = n, "the fleet driver is behind: telemetry dropped");
            }
            Ok(())
        }
        Err(mpsc::error::TrySendError::Closed(_)) => Err(()),
    }
}

/// Reads a worker's frames (a frame read is not cancel-safe, so it runs in
/// a task of its own, not in the session's select). Stamps `liveness` at
/// every frame; skips frames that do not decode (a newer worker's
/// variants), and gives the stream up after
/// [`MAX_UNDECODABLE_IN_A_ROW`] of them.
pub(super) async fn read_worker(
    mut recv: RecvStream,
    name: recfleet_protocol::WorkerName,
    liveness: Arc<Liveness>,
    inbox: mpsc::Sender<Inbound>,
) {
    let mut run = UndecodableRun::default();
    let end = loop {
        match quic::read_frame_lenient::<WorkerMessage>(&mut recv).await {
            Ok(Some(frame)) => {
                liveness.heard(Instant::now());
                match frame {
                    LenientFrame::Message(msg) => {
                        run.decoded();
                        if inbox.send(Inbound::Message(msg)).await.is_err() {
                            return;
                        }
                    }
                    LenientFrame::Undecodable(e) => {
                        let give_up = run.undecodable();
                        tracing::warn!(worker = %name, error = %e, in_a_row = run.len(),
                            "skipped a worker frame that does not decode (a newer worker?)");
                        if give_up {
                            let _ = recv.stop(VarInt::from_u32(close::PROTOCOL_ERROR));
                            break Inbound::End {
                                why: format!(
                                    "protocol error: {MAX_UNDECODABLE_IN_A_ROW} frames in a row did not decode (last: {e})"
                                ),
                                protocol: true,
                            };
                        }
                    }
                }
            }
            Ok(None) => {
                break Inbound::End {
                    why: "the worker closed its control stream".into(),
                    protocol: false,
                }
            }
            Err(TransportError::Frame(e)) => {
                // Framing is broken: the next frame cannot be found.
                let _ = recv.stop(VarInt::from_u32(close::PROTOCOL_ERROR));
                break Inbound::End {
                    why: format!("protocol error: {e}"),
                    protocol: true,
                };
            }
            Err(e) => {
                break Inbound::End {
                    why: e.to_string(),
                    protocol: false,
                }
            }
        }
    };
    let _ = inbox.send(end).await;
}

/// A worker's control stream: the hello, then frames both ways until the
/// stream ends, the driver drops the session, or the worker is silent past
/// the limit. The driver always hears `WorkerClosed` for a session it
/// accepted.
pub(super) async fn worker_session(
    shared: &Shared,
    conn: Connection,
    hello: WorkerHello,
    mut send: SendStream,
    recv: RecvStream,
) {
    let fleet = &shared.fleet;
    let write_timeout = shared.limits.reply_write_timeout;
    let session = next_session();
    let name = hello.name.clone();
    let (tx, mut outbox) = mpsc::channel(WORKER_OUTBOX);
    let (reply, verdict) = oneshot::channel();
    let hello = Cmd::Hello {
        session,
        address: conn.remote_address().to_string(),
        hello,
        tx,
        reply,
    };
    if fleet.send(hello).await.is_err() {
        let refused = CoordinatorMessage::Refused(shutting_down());
        let _ = write_small(&mut send, &refused, write_timeout).await;
        let _ = send.finish();
        return;
    }
    let closed = |why: &str| Cmd::WorkerClosed {
        session,
        name: name.clone(),
        why: why.to_string(),
    };
    match tokio::time::timeout(REQUEST_DEADLINE, verdict).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => {
            let _ = write_small(&mut send, &CoordinatorMessage::Refused(e), write_timeout).await;
            let _ = send.finish();
            return;
        }
        Ok(Err(_)) => return,
        Err(_) => {
            // The driver will see the hello, then this: it ends the session
            // it may have opened.
            let _ = write_small(
                &mut send,
                &CoordinatorMessage::Refused(busy()),
                write_timeout,
            )
            .await;
            let _ = send.finish();
            let _ = fleet
                .send(closed("the hello was not answered in time"))
                .await;
            return;
        }
    }
    let welcome = CoordinatorMessage::Welcome {
        version: env!("CARGO_PKG_VERSION").to_string(),
        telemetry_interval_ms: shared.telemetry_ms,
        term: shared.term,
        egress: shared.egress.clone(),
        session,
    };
    if let Err(e) = write_small(&mut send, &welcome, write_timeout).await {
        let _ = fleet
            .send(closed(&format!("welcome not delivered: {e}")))
            .await;
        return;
    }
    shared.connections.insert(&name, &conn);
    let liveness = Arc::new(Liveness::new(Instant::now()));
    let (in_tx, mut inbox) = mpsc::channel(WORKER_INBOX);
    let reader = tokio::spawn(read_worker(recv, name.clone(), liveness.clone(), in_tx));
    let silence = shared.silence;
    let why = loop {
        tokio::select! {
            m = inbox.recv() => match m {
                Some(Inbound::Message(msg)) => {
                    let rtt_us = conn.rtt().as_micros().min(u128::from(u32::MAX)) as u32;
                    let drop_ok = droppable(&msg);
                    let cmd = Cmd::FromWorker { session, name: name.clone(), msg, rtt_us };
                    if forward(fleet, cmd, drop_ok).await.is_err() {
                        break "the coordinator is shutting down".to_string();
                    }
                }
                Some(Inbound::End { why, protocol }) => {
                    if protocol {
                        // The stream only: never the connection for this.
                        let _ = send.reset(VarInt::from_u32(close::PROTOCOL_ERROR));
                    }
                    break why;
                }
                None => break "the worker's reader stopped".to_string(),
            },
            out = outbox.recv() => match out {
                Some(msg) => {
                    if let Err(e) = write_small(&mut send, &msg, write_timeout).await {
                        break e;
                    }
                }
                None => {
                    // The fleet dropped this session (a newer one, or lost).
                    conn.close(VarInt::from_u32(close::SUPERSEDED), b"session replaced or declared lost");
                    break "session closed by the coordinator".to_string();
                }
            },
            _ = tokio::time::sleep_until(liveness.deadline(silence)) => {
                // A frame may have been read since the sleep began: then
                // the next turn waits for the new deadline.
                if liveness.silent(Instant::now(), silence) {
                    conn.close(VarInt::from_u32(close::UNRESPONSIVE), b"silent past the limit");
                    break "silent past the limit".to_string();
                }
            }
        }
    };
    reader.abort();
    shared.connections.remove(&name, &conn);
    tracing::debug!(worker = %name, session, why = %why, "worker session ended");
    let _ = fleet.send(closed(&why)).await;
}
