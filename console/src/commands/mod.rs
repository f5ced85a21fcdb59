//! Scripted commands: one file per group, each connecting, sending the
//! request and printing the answer as a table or as stable JSON
//! (docs/console.md lists every shape).

pub mod contexts;
pub mod describe;
mod drain;
pub mod generate;
pub mod list;
pub mod logs;
mod record;
mod watch;

pub use list::{next_page_command, recordings_table, workers_table};
pub use record::{final_summary, spec_from_args};

use std::io::Write;
use std::net::SocketAddr;

use recfleet_client::{Client, ClientError};
use recfleet_protocol::ConsoleResponse;
use serde::Serialize;

use crate::cli::{Command, ConnArgs, Output, RecordCommand};
use crate::context;
use crate::error::ConsoleError;

/// What a command needs: the connection and the output format.
#[derive(Debug)]
pub struct Session {
    /// The connected client.
    pub client: Client,
    /// The address the client connected to.
    pub addr: SocketAddr,
    /// Table, wide table, JSON or YAML.
    pub output: Output,
}

impl Session {
    /// Prints a value as one document: a JSON line, or a YAML document
    /// with `-o yaml`.
    pub fn json<T: Serialize>(&self, value: &T) -> Result<(), ConsoleError> {
        print_doc(self.output, value)
    }

    /// Prints text as is.
    pub fn text(&self, text: &str) -> Result<(), ConsoleError> {
        print_text(text)
    }

    /// Prints `{"accepted": true, "message": ...}` or the message.
    pub fn accepted(&self, message: &str) -> Result<(), ConsoleError> {
        if self.output.structured() {
            self.json(&serde_json::json!({ "accepted": true, "message": message }))
        } else {
            self.text(message)
        }
    }
}

/// The text of one document: a JSON line, or with `-o yaml` a YAML
/// document (`---` first).
pub fn doc_text<T: Serialize>(output: Output, value: &T) -> Result<String, ConsoleError> {
    let encode = |e: serde_json::Error| ConsoleError::Unexpected(format!("cannot encode: {e}"));
    if output == Output::Yaml {
        let v = serde_json::to_value(value).map_err(encode)?;
        Ok(crate::yaml::document(&v))
    } else {
        Ok(format!(
            "{}\n",
            serde_json::to_string(value).map_err(encode)?
        ))
    }
}

/// Prints one document on stdout ([`doc_text`]).
pub fn print_doc<T: Serialize>(output: Output, value: &T) -> Result<(), ConsoleError> {
    print_text(&doc_text(output, value)?)
}

/// Prints text on stdout, with a newline at the end.
pub fn print_text(text: &str) -> Result<(), ConsoleError> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    if !text.ends_with('\n') {
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

/// Runs a command to completion.
pub async fn run(command: Command, conn: &ConnArgs, output: Output) -> Result<(), ConsoleError> {
    // Commands on this machine only: no context needed, no connection.
    match command {
        Command::Context(c) => return contexts::run(c, conn, output),
        Command::Completion { shell } => return generate::completion(shell),
        Command::Man => return generate::man(),
        _ => {}
    }
    // Refuse an unconfirmable drain before connecting: a script without
    // --yes learns it at once, whatever the coordinator's state.
    if let Command::Drain(args) = &command {
        if !args.yes && !drain::can_ask() {
            return Err(ConsoleError::Aborted(
                "not confirmed: there is no terminal to ask on".to_string(),
            ));
        }
    }
    let ctx = context::resolve(&conn.overrides())?;
    let client = Client::from_context(&ctx)?;
    // Connect before anything else: an unreachable coordinator is reported
    // as such, whatever the command.
    let addr = client.connection().await?.addr;
    let session = Session {
        client,
        addr,
        output,
    };
    let result = dispatch(command, &session).await;
    session.client.close();
    result
}

async fn dispatch(command: Command, s: &Session) -> Result<(), ConsoleError> {
    match command {
        Command::Record(RecordCommand::Start(args)) => record::start(s, args).await,
        Command::Record(RecordCommand::Stop { id }) => record::stop(s, id).await,
        Command::Record(RecordCommand::Show { id }) => record::show(s, id).await,
        Command::Record(RecordCommand::Thumbnail { id, file }) => {
            record::thumbnail(s, id, &file).await
        }
        Command::Record(RecordCommand::Events { id, types, tail }) => {
            record::events(s, id, types, tail).await
        }
        Command::Logs(args) => logs::logs(s, args).await,
        Command::Describe { what } => describe::describe(s, what).await,
        Command::Drain(args) => drain::drain(s, args).await,
        Command::Undrain {
            worker,
            keep_ineligible,
        } => drain::undrain(s, worker, keep_ineligible).await,
        Command::Reassign { id, to } => drain::reassign(s, id, to).await,
        Command::Workers { sort_by } => list::workers(s, sort_by).await,
        Command::Coordinators => list::coordinators(s).await,
        Command::Recordings {
            states,
            limit,
            after,
            sort_by,
            finished_within,
            all,
        } => {
            let view = list::RecordingsView {
                sort_by,
                finished_within: (!all).then_some(finished_within),
            };
            list::recordings(s, states, limit, after, view).await
        }
        Command::Watch(args) => watch::watch(s, &args.filter()).await,
        Command::Whoami => list::whoami(s).await,
        Command::Audit { limit } => list::audit(s, limit).await,
        // Handled by `run` before connecting.
        Command::Context(_) | Command::Completion { .. } | Command::Man => Ok(()),
    }
}

/// The error for an answer of the wrong kind.
pub fn unexpected(what: &str, got: &ConsoleResponse) -> ConsoleError {
    ClientError::unexpected(what, got).into()
}

/// Prints an error for a person on stderr (and as JSON or YAML on stdout
/// with `-o json` or `-o yaml`), and returns its exit code.
pub fn report_error(err: &ConsoleError, output: Output) -> u8 {
    let exit = err.exit();
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "error: {err}");
    for d in err.details() {
        let _ = writeln!(stderr, "  - {d}");
    }
    if let Some(h) = err.hint() {
        let _ = writeln!(stderr, "hint: {h}");
    }
    if output.structured() {
        let doc = serde_json::json!({
            "error": {
                "kind": err.kind(),
                "exit_code": exit.code(),
                "message": err.to_string(),
                "details": err.details(),
                "hint": err.hint(),
            }
        });
        let _ = print_doc(output, &doc);
    }
    exit.code()
}
