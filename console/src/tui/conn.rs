//! The connection task: connects, subscribes, reports everything as
//! [`ConnEvent`]s, carries out actions, and reconnects with capped backoff
//! (resyncing from the fresh snapshot every subscription starts with).

use std::time::Duration;

use recfleet_protocol::{now_ms, ConsoleRequest, ConsoleResponse, RecordingId, SubscriptionFrame};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

use super::state::ConnEvent;
use crate::backoff;
use crate::client::{request_on, Client};
use crate::context::Context;
use crate::error::{ConsoleError, Exit};

/// What the main loop asks of the connection.
#[derive(Debug, Clone, PartialEq)]
pub enum ToConn {
    /// An action.
    Send {
        /// For the result line.
        what: String,
        /// The request.
        request: ConsoleRequest,
    },
    /// Fetch a recording's detail.
    Show(RecordingId),
}

/// Why a connected session ended.
enum Ended {
    /// The main loop is gone: stop.
    Quit,
    /// Lost or refused: retry.
    Failed(ConsoleError),
}

/// Runs until `cmds` closes (the TUI quit).
pub async fn run(
    ctx: Context,
    events: UnboundedSender<ConnEvent>,
    mut cmds: UnboundedReceiver<ToConn>,
) {
    let mut attempt: u32 = 0;
    let _ = events.send(ConnEvent::Connecting {
        addr: ctx.coordinator.clone(),
    });
    loop {
        let err = match session(&ctx, &events, &mut cmds, &mut attempt).await {
            Ended::Quit => return,
            Ended::Failed(e) => e,
        };
        let delay = backoff::next_delay(attempt);
        attempt = attempt.saturating_add(1);
        let retry_at = now_ms() + u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        let reason = err.to_string();
        let ev = if err.exit() == Exit::Forbidden {
            ConnEvent::Refused { reason, retry_at }
        } else {
            ConnEvent::Disconnected { reason, retry_at }
        };
        if events.send(ev).is_err() {
            return;
        }
        if !wait_answering(delay, &events, &mut cmds).await {
            return;
        }
    }
}

/// Sleeps `delay`; actions asked meanwhile fail at once with a reason.
async fn wait_answering(
    delay: Duration,
    events: &UnboundedSender<ConnEvent>,
    cmds: &mut UnboundedReceiver<ToConn>,
) -> bool {
    let sleep = tokio::time::sleep(delay);
    tokio::pin!(sleep);
    loop {
        tokio::select! {
            () = &mut sleep => return true,
            cmd = cmds.recv() => match cmd {
                None => return false,
                Some(ToConn::Send { what, .. }) => {
                    let _ = events.send(ConnEvent::ActionDone {
                        what,
                        result: Err("not connected to the coordinator; nothing was done".to_string()),
                    });
                }
                Some(ToConn::Show(_)) => {}
            }
        }
    }
}

async fn session(
    ctx: &Context,
    events: &UnboundedSender<ConnEvent>,
    cmds: &mut UnboundedReceiver<ToConn>,
    attempt: &mut u32,
) -> Ended {
    let client = match Client::connect(ctx).await {
        Ok(c) => c,
        Err(e) => return Ended::Failed(e),
    };
    let (role, name) = match client.request(ConsoleRequest::WhoAmI).await {
        Ok(ConsoleResponse::Identity { role, name, .. }) => (role, name),
        Ok(_) => return Ended::Failed(ConsoleError::Unexpected("expected an identity".into())),
        Err(e) => return Ended::Failed(e),
    };
    let mut sub = match client.subscribe().await {
        Ok(s) => s,
        Err(e) => return Ended::Failed(e),
    };
    let _ = events.send(ConnEvent::Connected {
        addr: ctx.coordinator.clone(),
        role,
        name,
    });
    loop {
        tokio::select! {
            frame = sub.next() => match frame {
                Ok(Some(SubscriptionFrame::Refused(e))) => {
                    let _ = events.send(ConnEvent::Frame(SubscriptionFrame::Refused(e.clone())));
                    return Ended::Failed(ConsoleError::Wire(e));
                }
                Ok(Some(f)) => {
                    if matches!(f, SubscriptionFrame::Snapshot { .. }) {
                        // A working subscription: the next loss starts from the base delay.
                        *attempt = 0;
                    }
                    if events.send(ConnEvent::Frame(f)).is_err() {
                        return Ended::Quit;
                    }
                }
                Ok(None) => return Ended::Failed(ConsoleError::Unexpected(
                    "the coordinator ended the subscription".into(),
                )),
                Err(e) => return Ended::Failed(e),
            },
            cmd = cmds.recv() => match cmd {
                None => {
                    client.close();
                    return Ended::Quit;
                }
                Some(cmd) => {
                    let conn = client.connection();
                    let events = events.clone();
                    tokio::spawn(async move { carry_out(conn, cmd, events).await });
                }
            },
        }
    }
}

async fn carry_out(conn: quinn::Connection, cmd: ToConn, events: UnboundedSender<ConnEvent>) {
    match cmd {
        ToConn::Send { what, request } => {
            let result = match request_on(&conn, request).await {
                Ok(ConsoleResponse::Accepted { message }) => Ok(message),
                Ok(ConsoleResponse::Started { recording, created }) => Ok(format!(
                    "{} ({})",
                    if created { "started" } else { "already exists" },
                    recording.state
                )),
                Ok(_) => Ok("done".to_string()),
                Err(e) => Err(match e.hint() {
                    Some(h) => format!("{e} ({})", h),
                    None => e.to_string(),
                }),
            };
            let _ = events.send(ConnEvent::ActionDone { what, result });
        }
        ToConn::Show(id) => {
            if let Ok(ConsoleResponse::Recording(d)) =
                request_on(&conn, ConsoleRequest::ShowRecording { id }).await
            {
                let _ = events.send(ConnEvent::Detail(d));
            }
        }
    }
}
