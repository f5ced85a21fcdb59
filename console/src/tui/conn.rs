//! The connection task: runs the client's [`Subscription`] (which connects,
//! subscribes, and reconnects with capped backoff, resyncing from the fresh
//! snapshot every subscription starts with), reports it as [`ConnEvent`]s,
//! and carries out actions on the same connection.

use recfleet_client::{Client, Subscription, Update};
use recfleet_protocol::{now_ms, ConsoleRequest, ConsoleResponse, RecordingId};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

use super::state::ConnEvent;
use crate::error::{ConsoleError, Exit};

/// What the main loop asks of the connection.
#[derive(Debug, Clone, PartialEq)]
pub enum ToConn {
    /// An action.
    Send {
        /// For the result line.
        what: String,
        /// The request (boxed: a recording's spec is large).
        request: Box<ConsoleRequest>,
    },
    /// Fetch a recording's detail.
    Show(RecordingId),
    /// Fetch the coordinators.
    Coordinators,
}

/// Runs until `cmds` closes (the TUI quit).
pub async fn run(
    client: Client,
    events: UnboundedSender<ConnEvent>,
    mut cmds: UnboundedReceiver<ToConn>,
) {
    let addr = client.coordinator().to_string();
    let _ = events.send(ConnEvent::Connecting { addr: addr.clone() });
    let mut sub: Subscription = client.subscription();
    // Between a loss and the next subscription, actions fail at once: the
    // person sees the state may be stale, and nothing is sent blindly.
    let mut connected = false;
    loop {
        tokio::select! {
            update = sub.next() => {
                let ev = match update {
                    // The subscription's task is gone (it only ends with `sub`).
                    None => return,
                    // The address of the coordinator that answered (of
                    // several, the leader): the status bar shows it, and a
                    // failover shows as a new address.
                    Some(Update::Connected { identity, addr: at }) => {
                        connected = true;
                        ConnEvent::Connected {
                            addr: at.to_string(),
                            role: identity.role,
                            name: identity.name,
                        }
                    }
                    Some(Update::Frame(f)) => ConnEvent::Frame(f),
                    Some(Update::Disconnected { error, retry_in }) => {
                        connected = false;
                        let err = ConsoleError::from(error);
                        let retry_at =
                            now_ms() + u64::try_from(retry_in.as_millis()).unwrap_or(u64::MAX);
                        let reason = err.to_string();
                        if err.exit() == Exit::Forbidden {
                            ConnEvent::Refused { reason, retry_at }
                        } else {
                            ConnEvent::Disconnected { reason, retry_at }
                        }
                    }
                };
                if events.send(ev).is_err() {
                    return;
                }
            },
            cmd = cmds.recv() => match cmd {
                None => {
                    drop(sub);
                    client.close();
                    return;
                }
                Some(ToConn::Send { what, .. }) if !connected => {
                    let _ = events.send(ConnEvent::ActionDone {
                        what,
                        result: Err("not connected to the coordinator; nothing was done".to_string()),
                    });
                }
                Some(ToConn::Show(_)) if !connected => {}
                Some(cmd) => {
                    let client = client.clone();
                    let events = events.clone();
                    tokio::spawn(async move { carry_out(&client, cmd, events).await });
                }
            },
        }
    }
}

async fn carry_out(client: &Client, cmd: ToConn, events: UnboundedSender<ConnEvent>) {
    match cmd {
        ToConn::Send { what, request } => {
            let result = match client.request(*request).await.map_err(ConsoleError::from) {
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
            if let Ok(d) = client.show(id).await {
                let _ = events.send(ConnEvent::Detail(Box::new(d)));
            }
        }
        ToConn::Coordinators => {
            if let Ok(list) = client.coordinators().await {
                let _ = events.send(ConnEvent::Coordinators(list));
            }
        }
    }
}
