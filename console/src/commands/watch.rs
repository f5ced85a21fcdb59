//! `watch`: events as they happen.

use recfleet_protocol::SubscriptionFrame;

use super::Session;
use crate::cli::Output;
use crate::describe;
use crate::error::ConsoleError;

pub(super) async fn watch(s: &Session) -> Result<(), ConsoleError> {
    let mut sub = s.client.subscribe().await?;
    loop {
        let Some(frame) = sub.next().await? else {
            return Err(ConsoleError::Unexpected(
                "the coordinator ended the event stream".to_string(),
            ));
        };
        match frame {
            SubscriptionFrame::Snapshot {
                seq,
                workers,
                recordings,
            } => {
                if s.output == Output::Table {
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
            SubscriptionFrame::Event(e) => match s.output {
                Output::Table => s.text(&describe::event_line(&e))?,
                Output::Json => s.json(&serde_json::json!({
                    "seq": e.seq,
                    "at": e.at,
                    "type": describe::kind_name(&e.kind),
                    "event": e.kind,
                }))?,
            },
            SubscriptionFrame::Lagged { missed } => match s.output {
                Output::Table => s.text(&format!(
                    "# fell behind: {missed} events missed; a fresh snapshot follows"
                ))?,
                Output::Json => s.json(&serde_json::json!({ "lagged": { "missed": missed } }))?,
            },
            SubscriptionFrame::SnapshotMore { .. } => {}
            SubscriptionFrame::Refused(e) => return Err(ConsoleError::Wire(e)),
        }
    }
}
