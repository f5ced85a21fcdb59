//! `drain`, `undrain`, `reassign`.

use std::io::{BufRead, IsTerminal, Write};

use recfleet_protocol::{DrainMode, EventKind, RecordingId, SubscriptionFrame, WorkerName};

use super::Session;
use crate::cli::{duration_secs, DrainArgs, Output};
use crate::describe;
use crate::error::ConsoleError;

/// Whether a person can be asked (stdin and stderr are a terminal).
pub fn can_ask() -> bool {
    std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}

/// Asks `question [y/N]` on the terminal; without one, refuses.
pub fn confirm(question: &str) -> Result<(), ConsoleError> {
    if !can_ask() {
        return Err(ConsoleError::Aborted(
            "not confirmed: there is no terminal to ask on".to_string(),
        ));
    }
    let mut err = std::io::stderr().lock();
    write!(err, "{question} [y/N] ")?;
    err.flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    if is_yes(&answer) {
        Ok(())
    } else {
        Err(ConsoleError::Aborted(
            "not confirmed: nothing was done".to_string(),
        ))
    }
}

/// Whether an answer to a `[y/N]` question is yes.
pub fn is_yes(answer: &str) -> bool {
    matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

pub(super) async fn drain(s: &Session, args: DrainArgs) -> Result<(), ConsoleError> {
    let mode = DrainMode::from(args.mode);
    let deadline_secs = args.deadline.map(duration_secs);
    if !args.yes {
        let count = recordings_on(s, &args.worker).await;
        let effect = describe::drain_effect(mode, deadline_secs, args.force, count);
        let mode_name = if args.force {
            "migrate (forced)"
        } else {
            mode_str(mode)
        };
        confirm(&format!(
            "Drain worker {} (mode {mode_name})? {effect}",
            args.worker
        ))?;
    }
    // Subscribe before asking, so that no progress event is missed.
    let mut sub = if args.detach {
        None
    } else {
        Some(s.client.subscribe().await?)
    };
    let message = s
        .client
        .drain(args.worker.clone(), mode, deadline_secs, args.force)
        .await?;
    s.accepted(&message)?;
    let Some(sub) = sub.as_mut() else {
        return Ok(());
    };
    loop {
        let frame = sub.next().await?.ok_or_else(|| {
            ConsoleError::Unexpected("the coordinator ended the event stream".to_string())
        })?;
        let kind = match frame {
            SubscriptionFrame::Event(e) => e.kind,
            SubscriptionFrame::Refused(e) => return Err(ConsoleError::Wire(e)),
            SubscriptionFrame::Snapshot { .. }
            | SubscriptionFrame::SnapshotMore { .. }
            | SubscriptionFrame::Lagged { .. } => continue,
        };
        match &kind {
            EventKind::DrainProgress {
                worker,
                remaining,
                message,
                complete,
            } if *worker == args.worker => {
                match s.output {
                    Output::Json | Output::Yaml => s.json(&serde_json::json!({
                        "worker": worker,
                        "remaining": remaining,
                        "message": message,
                        "complete": complete,
                    }))?,
                    Output::Table | Output::Wide => s.text(&describe::event_text(&kind))?,
                }
                if *complete {
                    return Ok(());
                }
            }
            EventKind::WorkerLost { name } | EventKind::WorkerLeft { name }
                if *name == args.worker =>
            {
                let text = describe::event_text(&kind);
                return match s.output {
                    Output::Json | Output::Yaml => s.json(&serde_json::json!({
                        "worker": name,
                        "remaining": [],
                        "message": text,
                        "complete": true,
                    })),
                    Output::Table | Output::Wide => s.text(&text),
                };
            }
            _ => {}
        }
    }
}

fn mode_str(mode: DrainMode) -> &'static str {
    match mode {
        DrainMode::Wait => "wait",
        DrainMode::Migrate => "migrate",
    }
}

/// How many recordings the worker runs, if it can be found.
async fn recordings_on(s: &Session, worker: &WorkerName) -> Option<usize> {
    let ws = s.client.workers().await.ok()?;
    ws.iter()
        .find(|w| &w.name == worker)
        .map(|w| w.recordings.len())
}

pub(super) async fn undrain(
    s: &Session,
    worker: WorkerName,
    keep_ineligible: bool,
) -> Result<(), ConsoleError> {
    let message = s.client.undrain(worker, keep_ineligible).await?;
    s.accepted(&message)
}

pub(super) async fn reassign(
    s: &Session,
    id: RecordingId,
    to: Option<WorkerName>,
) -> Result<(), ConsoleError> {
    let message = s.client.reassign(id, to).await?;
    s.accepted(&message)
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_yes_is_yes() {
        for y in ["y", "Y", "yes\n", " YES "] {
            assert!(super::is_yes(y), "{y}");
        }
        for n in ["", "n", "no", "yep", "\n"] {
            assert!(!super::is_yes(n), "{n}");
        }
    }
}
