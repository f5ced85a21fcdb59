//! A console's event subscription: the snapshot in parts, then events,
//! with a write deadline per frame.

use super::*;

/// A console subscription: the snapshot's frames in order, then events; a
/// subscriber that falls behind the event buffer is told how many it missed
/// and gets a fresh snapshot. A subscriber that cannot take a frame within
/// the event write timeout is cut off (its stream reset with
/// `UNRESPONSIVE`): it reconnects and resyncs.
pub(super) async fn subscription(
    shared: &Shared,
    budget: &ConnectionBudget,
    turns: &Turns,
    mut send: SendStream,
) {
    let timeout = shared.limits.event_write_timeout;
    // Resolves when the console stops the stream or the connection ends, so
    // a quiet fleet does not keep a gone subscriber's task.
    let gone = send.stopped();
    tokio::pin!(gone);
    loop {
        let until = Instant::now() + REQUEST_DEADLINE;
        let started = match take_turn(turns, until).await {
            Err(e) => Err(e),
            Ok(turn) => match ask(&shared.fleet, until, |reply| Cmd::Subscribe { reply }).await {
                Err(e) => Err(e),
                Ok(Subscription { frames, events }) => {
                    let budget = budget.clone();
                    let admitted =
                        tokio::task::spawn_blocking(move || admit_snapshot(frames, &budget))
                            .await
                            .unwrap_or_else(|e| {
                                tracing::error!(error = %e, "encoding a snapshot failed");
                                Err(WireError::new(
                                    ErrorCode::Internal,
                                    "the snapshot could not be encoded",
                                ))
                            });
                    drop(turn);
                    admitted.map(|(parts, held)| (parts, held, events))
                }
            },
        };
        let (parts, held, mut events) = match started {
            Ok(admitted) => admitted,
            Err(refusal) => {
                if write_small(&mut send, &SubscriptionFrame::Refused(refusal), timeout)
                    .await
                    .is_ok()
                {
                    let _ = send.finish();
                }
                return;
            }
        };
        for part in &parts {
            if write_bytes(&mut send, part, timeout).await.is_err() {
                return;
            }
        }
        drop((parts, held));
        loop {
            let frame = tokio::select! {
                ev = events.recv() => match ev {
                    Ok(ev) => SubscriptionFrame::Event(ev),
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        if write_small(&mut send, &SubscriptionFrame::Lagged { missed }, timeout)
                            .await
                            .is_err()
                        {
                            return;
                        }
                        break; // resync from a fresh snapshot
                    }
                    Err(broadcast::error::RecvError::Closed) => {
                        let _ = send.finish();
                        return;
                    }
                },
                _ = &mut gone => return,
            };
            if write_small(&mut send, &frame, timeout).await.is_err() {
                return;
            }
        }
    }
}

/// Encodes a snapshot's frames, in order, and charges them all to the
/// budgets; the error is the refusal to send instead.
pub(super) fn admit_snapshot(
    frames: Vec<SubscriptionFrame>,
    budget: &ConnectionBudget,
) -> Result<(Vec<Vec<u8>>, Reserved), WireError> {
    let mut parts = Vec::with_capacity(frames.len());
    for f in frames {
        match frame::encode(&f) {
            Ok(bytes) => parts.push(bytes),
            Err(e) => {
                tracing::error!(error = %e, "a snapshot part could not be encoded");
                return Err(too_large(&e));
            }
        }
    }
    let total = parts.iter().map(Vec::len).sum();
    let held = budget.reserve(total).map_err(|_| budget_exhausted())?;
    Ok((parts, held))
}
