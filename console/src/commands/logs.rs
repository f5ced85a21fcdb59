//! `recfleet logs ID [--process P] [--follow] [--since D] [--tail N]`:
//! lines of a recording's processes streamed from its worker through the
//! coordinator. One line each: `[process pN] text` (JSON lines with -o json).

use recfleet_protocol::{now_ms, LogLine, LogRequest, QueryFrame, WorkerQuery};

use super::Session;
use crate::cli::LogsArgs;
use crate::error::ConsoleError;

/// Runs `logs`.
pub(super) async fn logs(s: &Session, args: LogsArgs) -> Result<(), ConsoleError> {
    let req = LogRequest {
        recording: args.id,
        process: args.process,
        follow: args.follow,
        since: args
            .since
            .map(|d| now_ms().saturating_sub(d.as_millis() as u64)),
        tail: args.tail,
    };
    let (mut stream, first) = s.client.query(WorkerQuery::Logs(req)).await?;
    let mut frame = first;
    loop {
        match frame {
            None => return Ok(()),
            Some(QueryFrame::Logs(lines)) => {
                for l in &lines {
                    print_line(s, l)?;
                }
            }
            Some(QueryFrame::End { reason }) => {
                eprintln!("logs end: {reason}");
                return Ok(());
            }
            Some(other) => {
                return Err(ConsoleError::Unexpected(format!(
                    "expected log lines, got {other:?}"
                )))
            }
        }
        frame = stream.next().await?;
    }
}

fn print_line(s: &Session, l: &LogLine) -> Result<(), ConsoleError> {
    if s.output.structured() {
        s.json(l)
    } else {
        s.text(&line_text(l))
    }
}

/// A log line for people: `[ffmpeg p0] text`.
pub fn line_text(l: &LogLine) -> String {
    format!("[{} p{}] {}", l.process, l.part, l.text)
}
