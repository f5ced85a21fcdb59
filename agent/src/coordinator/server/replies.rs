//! Replies: encoded, charged to the reply budgets (or replaced by a small
//! error when they do not fit), and written with a deadline.

use super::*;

/// Encodes a reply and charges it to the budgets. What cannot be sent as it
/// is (too large for a frame, or over budget) is replaced by a small error
/// made by `error`, which is not charged: one per stream at most, and a
/// connection has at most 1024 streams.
pub(super) fn admit<T: Serialize>(
    msg: &T,
    budget: &ConnectionBudget,
    error: impl Fn(WireError) -> T,
) -> (Vec<u8>, Option<Reserved>) {
    let refusal = match frame::encode(msg) {
        Ok(bytes) => match budget.reserve(bytes.len()) {
            Ok(held) => return (bytes, Some(held)),
            Err(_) => budget_exhausted(),
        },
        Err(e) => {
            tracing::warn!(error = %e, "a reply could not be encoded");
            too_large(&e)
        }
    };
    (encode_small(&error(refusal)), None)
}

pub(super) fn too_large(e: &FrameError) -> WireError {
    WireError::new(
        ErrorCode::Internal,
        format!("the answer cannot be sent ({e}); ask for less, e.g. one page at a time"),
    )
}

/// Answers that may be megabytes (lists, pages, a recording's manifest).
pub(super) fn may_be_large(response: &ConsoleResponse) -> bool {
    matches!(
        response,
        ConsoleResponse::Workers(_)
            | ConsoleResponse::Recordings(_)
            | ConsoleResponse::RecordingsPage { .. }
            | ConsoleResponse::Recording(_)
    )
}

/// [`admit`] for a console answer. Encoding (and freeing) a large answer
/// takes milliseconds of CPU: that runs on the blocking pool, so that the
/// runtime's threads stay free for QUIC and the other streams.
pub(super) async fn admit_reply(
    response: ConsoleResponse,
    budget: ConnectionBudget,
) -> (Vec<u8>, Option<Reserved>) {
    if !may_be_large(&response) {
        return admit(&response, &budget, ConsoleResponse::Error);
    }
    tokio::task::spawn_blocking(move || admit(&response, &budget, ConsoleResponse::Error))
        .await
        .unwrap_or_else(|e| {
            tracing::error!(error = %e, "encoding a reply failed");
            let e = WireError::new(ErrorCode::Internal, "the answer could not be encoded");
            (encode_small(&ConsoleResponse::Error(e)), None)
        })
}

/// Encodes a frame known to be small (an error, a refusal, an event).
pub(super) fn encode_small<T: Serialize>(msg: &T) -> Vec<u8> {
    frame::encode(msg).unwrap_or_else(|e| {
        // Not reachable for small messages; an empty write is harmless.
        tracing::error!(error = %e, "a small frame did not encode");
        Vec::new()
    })
}

/// Writes a small frame with a timeout.
pub(super) async fn write_small<T: Serialize>(
    send: &mut SendStream,
    msg: &T,
    timeout: Duration,
) -> Result<(), String> {
    write_bytes(send, &encode_small(msg), timeout).await
}

/// Writes encoded bytes within `timeout`; a write that does not finish in
/// time resets the stream with `UNRESPONSIVE` (the peer is not reading).
pub(super) async fn write_bytes(
    send: &mut SendStream,
    bytes: &[u8],
    timeout: Duration,
) -> Result<(), String> {
    match tokio::time::timeout(timeout, send.write_all(bytes)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => {
            let _ = send.reset(VarInt::from_u32(close::UNRESPONSIVE));
            Err(format!(
                "a frame could not be written within {} s: the peer does not read",
                timeout.as_secs_f32()
            ))
        }
    }
}
