//! `context list|use|current`: the named contexts of the context file
//! (`--context FILE`, else the default path). Nothing is connected to;
//! only `use` writes the file.

use std::path::Path;

use crate::cli::{ConnArgs, ContextCommand, Output};
use crate::context::{self, ContextError, ContextFile};
use crate::error::ConsoleError;
use crate::format;

/// One line of `context list`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ContextRow {
    /// The context's name.
    pub name: String,
    /// Its coordinator(s), as written.
    pub coordinator: Option<String>,
    /// Its server name, as written (`localhost` when absent).
    pub server_name: Option<String>,
    /// Whether it is the current context.
    pub current: bool,
}

/// The rows of `context list`, by name.
pub fn rows(file: &ContextFile) -> Vec<ContextRow> {
    file.contexts
        .iter()
        .map(|(name, e)| ContextRow {
            name: name.clone(),
            coordinator: e.coordinator.clone(),
            server_name: e.server_name.clone(),
            current: file.current.as_deref() == Some(name),
        })
        .collect()
}

/// The table of `context list`: `*` marks the current context, as kubectl does.
pub fn table(rows: &[ContextRow]) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                if r.current { "*" } else { "" }.to_string(),
                r.name.clone(),
                r.coordinator.clone().unwrap_or_else(|| "-".into()),
                r.server_name
                    .clone()
                    .unwrap_or_else(|| format!("({})", context::DEFAULT_SERVER_NAME)),
            ]
        })
        .collect();
    format::table(&["CURRENT", "NAME", "COORDINATOR", "SERVER NAME"], &cells)
}

pub(super) fn run(
    command: ContextCommand,
    conn: &ConnArgs,
    output: Output,
) -> Result<(), ConsoleError> {
    let path = context::file_path(&conn.overrides())?;
    match command {
        ContextCommand::List => {
            let rows = rows(&ContextFile::load_or_empty(&path)?);
            if output.structured() {
                super::print_doc(output, &rows)
            } else {
                super::print_text(&table(&rows))
            }
        }
        ContextCommand::Use { name } => {
            let mut file = ContextFile::load_or_empty(&path)?;
            file.use_context(&name, &path)?;
            file.write(&path)?;
            let message = format!("current context: {name} (in {})", path.display());
            if output.structured() {
                super::print_doc(output, &serde_json::json!({ "current": name }))
            } else {
                super::print_text(&message)
            }
        }
        ContextCommand::Current => {
            let name = current(&ContextFile::load_or_empty(&path)?, &path)?;
            if output.structured() {
                super::print_doc(output, &serde_json::json!({ "current": name }))
            } else {
                super::print_text(&name)
            }
        }
    }
}

/// The current context's name; the only one when none is set.
fn current(file: &ContextFile, path: &Path) -> Result<String, ConsoleError> {
    if let Some(c) = &file.current {
        return Ok(c.clone());
    }
    match file.names().as_slice() {
        [only] => Ok(only.clone()),
        [] => Err(ContextError::NoContexts {
            file: path.display().to_string(),
        }
        .into()),
        _ => Err(ContextError::NoCurrent {
            file: path.display().to_string(),
            known: file.names(),
        }
        .into()),
    }
}
