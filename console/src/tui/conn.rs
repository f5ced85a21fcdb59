//! The connection task: runs the client's [`Subscription`] (which connects,
//! subscribes, and reconnects with capped backoff, resyncing from the fresh
//! snapshot every subscription starts with), reports it as [`ConnEvent`]s,
//! and carries out actions on the same connection.

use recfleet_client::{Client, Subscription, Update};
use recfleet_protocol::{
    now_ms, ConsoleRequest, ConsoleResponse, LogRequest, QueryFrame, RecordingId, WorkerQuery,
};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

use super::picture::Picture;
use super::state::{ConnEvent, Thumb};
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
    /// Fetch a recording's picture.
    Thumbnail(RecordingId),
    /// Fetch what `describe` shows of a recording.
    Describe(RecordingId),
    /// Fetch a recording's latest events.
    Events(RecordingId),
    /// Follow a recording's logs (ending any other).
    FollowLogs(RecordingId),
    /// Stop following.
    StopLogs,
}

/// Events of the selected recording shown in the detail pane.
pub const TRACK_SHOWN: u32 = 6;

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
    // The one followed log (the logs view shows one at a time).
    let mut follow: Option<tokio::task::JoinHandle<()>> = None;
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
                    Some(Update::Frame(f)) => ConnEvent::frame(*f),
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
                    if let Some(f) = follow.take() {
                        f.abort();
                    }
                    drop(sub);
                    client.close();
                    return;
                }
                Some(ToConn::StopLogs) => {
                    if let Some(f) = follow.take() {
                        f.abort();
                    }
                }
                Some(ToConn::FollowLogs(id)) => {
                    if let Some(f) = follow.take() {
                        f.abort();
                    }
                    let (client, events) = (client.clone(), events.clone());
                    follow = Some(tokio::spawn(async move { follow_logs(&client, id, &events).await }));
                }
                Some(ToConn::Send { what, .. }) if !connected => {
                    let _ = events.send(ConnEvent::ActionDone {
                        what,
                        result: Err("not connected to the coordinator; nothing was done".to_string()),
                    });
                }
                Some(ToConn::Show(_) | ToConn::Thumbnail(_) | ToConn::Describe(_) | ToConn::Events(_)) if !connected => {}
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
        ToConn::Thumbnail(id) => {
            let ev = match client.thumbnail(id.clone()).await {
                // Decoded here, off the drawing loop.
                Ok(t) => match Picture::from_jpeg(&t.jpeg) {
                    Ok(p) => ConnEvent::Thumbnail(Box::new(Thumb {
                        id,
                        taken_at: t.taken_at,
                        picture: Some(p),
                        missing: None,
                        level_db: t.level_db,
                    })),
                    Err(reason) => ConnEvent::NoThumbnail { id, reason },
                },
                Err(e) => ConnEvent::NoThumbnail {
                    id,
                    reason: ConsoleError::from(e).to_string(),
                },
            };
            let _ = events.send(ev);
        }
        ToConn::Describe(id) => {
            let text = describe_text(client, id.clone()).await;
            let _ = events.send(ConnEvent::Described { id, text });
        }
        ToConn::Events(id) => {
            // A recording with no track yet (or no store to read) shows none.
            let track = client
                .events(id.clone(), Vec::new(), Some(TRACK_SHOWN))
                .await
                .unwrap_or_default();
            let _ = events.send(ConnEvent::Track { id, events: track });
        }
        // Handled by the loop.
        ToConn::FollowLogs(_) | ToConn::StopLogs => {}
    }
}

/// The text `recfleet describe recording` prints, or why there is none.
async fn describe_text(client: &Client, id: RecordingId) -> String {
    let detail = match client.show(id.clone()).await {
        Ok(d) => d,
        Err(e) => return format!("cannot describe {id}: {}", ConsoleError::from(e)),
    };
    let processes = if detail.info.state.holds_capacity() {
        client
            .processes(id.clone())
            .await
            .map_err(|e| ConsoleError::from(e).to_string())
    } else {
        Err("not running: no processes".to_string())
    };
    let events = client.history(Some(id), None, 30).await.unwrap_or_default();
    crate::commands::describe::recording_text(&detail, &processes, &events, now_ms())
}

/// Follows a recording's logs until the stream ends or the task is aborted.
async fn follow_logs(client: &Client, id: RecordingId, events: &UnboundedSender<ConnEvent>) {
    let req = LogRequest {
        recording: id.clone(),
        process: None,
        follow: true,
        since: None,
        tail: Some(200),
    };
    let ended = |reason: String| ConnEvent::LogsEnded {
        id: id.clone(),
        reason,
    };
    let (mut stream, mut frame) = match client.query(WorkerQuery::Logs(req)).await {
        Ok(x) => x,
        Err(e) => {
            let _ = events.send(ended(ConsoleError::from(e).to_string()));
            return;
        }
    };
    loop {
        match frame {
            Some(QueryFrame::Logs(lines)) => {
                let lines = lines.iter().map(crate::commands::logs::line_text).collect();
                if events
                    .send(ConnEvent::Logs {
                        id: id.clone(),
                        lines,
                    })
                    .is_err()
                {
                    return;
                }
            }
            Some(QueryFrame::End { reason }) => {
                let _ = events.send(ended(reason));
                return;
            }
            None => {
                let _ = events.send(ended("the stream ended".into()));
                return;
            }
            Some(_) => {}
        }
        frame = match stream.next().await {
            Ok(f) => f,
            Err(e) => {
                let _ = events.send(ended(ConsoleError::from(e).to_string()));
                return;
            }
        };
    }
}
