//! `watch`: events as they happen.

use recfleet_client::subscription::Update;
use recfleet_protocol::SubscriptionFrame;

use super::Session;
use crate::cli::Output;
use crate::describe;
use crate::error::ConsoleError;
use crate::event_filter::EventFilter;

/// Prints events until interrupted. A subscription that is cut (the
/// coordinator restarts, or cuts a watcher that stopped reading, e.g. one
/// suspended with Ctrl-Z) is taken up again with backoff and starts over
/// from a fresh snapshot: the output says so in a line.
///
/// Events that `filter` does not keep are not printed; snapshot, lag and
/// disconnection lines always are.
pub(super) async fn watch(s: &Session, filter: &EventFilter) -> Result<(), ConsoleError> {
    // Connect first, so that a wrong address or certificate fails at once
    // with its own message and exit code.
    s.client.whoami().await?;
    let mut sub = s.client.subscription();
    // The number of the snapshot whose parts are arriving.
    let mut snapshot_seq = 0;
    loop {
        let frame = match sub.next().await {
            None => {
                return Err(ConsoleError::Unexpected(
                    "the subscription stopped".to_string(),
                ))
            }
            Some(Update::Connected { .. }) => continue,
            Some(Update::Disconnected { error, retry_in }) => {
                if !s.output.structured() {
                    s.text(&format!(
                        "# disconnected: {error}; subscribing again in {} ms",
                        retry_in.as_millis()
                    ))?;
                } else {
                    s.json(&serde_json::json!({
                        "disconnected": { "error": error.to_string(), "retry_in_ms": retry_in.as_millis() as u64 }
                    }))?;
                }
                continue;
            }
            Some(Update::Frame(frame)) => *frame,
        };
        match frame {
            SubscriptionFrame::Snapshot {
                seq,
                workers,
                recordings,
            } => {
                snapshot_seq = seq;
                if !s.output.structured() {
                    s.text(&format!(
                        "# snapshot at #{seq}: {} workers, {} recordings",
                        workers.len(),
                        recordings.len()
                    ))?;
                } else {
                    s.json(&serde_json::json!({
                        "snapshot": { "seq": seq, "workers": workers.len(), "recordings": recordings.len() }
                    }))?;
                }
            }
            // A large snapshot comes in parts: one line per further part,
            // counting what it adds.
            SubscriptionFrame::SnapshotMore {
                workers,
                recordings,
            } => {
                if !s.output.structured() {
                    s.text(&format!(
                        "# snapshot at #{snapshot_seq}, continued: {} more workers, {} more recordings",
                        workers.len(),
                        recordings.len()
                    ))?;
                } else {
                    s.json(&serde_json::json!({
                        "snapshot_more": { "seq": snapshot_seq, "workers": workers.len(), "recordings": recordings.len() }
                    }))?;
                }
            }
            SubscriptionFrame::Event(e) if !filter.keeps(&e.kind) => {}
            SubscriptionFrame::Event(e) => match s.output {
                Output::Table | Output::Wide => s.text(&describe::event_line(&e))?,
                Output::Json | Output::Yaml => s.json(&serde_json::json!({
                    "seq": e.seq,
                    "at": e.at,
                    "type": describe::kind_name(&e.kind),
                    "event": e.kind,
                    "by": e.by,
                }))?,
            },
            SubscriptionFrame::Lagged { missed } => match s.output {
                Output::Table | Output::Wide => s.text(&format!(
                    "# fell behind: {missed} events missed; a fresh snapshot follows"
                ))?,
                Output::Json | Output::Yaml => {
                    s.json(&serde_json::json!({ "lagged": { "missed": missed } }))?
                }
            },
            SubscriptionFrame::Refused(e) => return Err(ConsoleError::Wire(e)),
        }
    }
}
