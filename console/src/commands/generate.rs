//! `completion SHELL` and `man`: generated from the command line itself,
//! so that they list every command and flag of this build.

use clap::CommandFactory;

use crate::cli::Cli;
use crate::error::ConsoleError;

/// The completion script for `shell`.
pub fn completion_script(shell: clap_complete::Shell) -> String {
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "recfleet", &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// The manual page, in roff.
pub fn man_page() -> Result<String, ConsoleError> {
    let mut out = Vec::new();
    clap_mangen::Man::new(Cli::command()).render(&mut out)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

pub(super) fn completion(shell: clap_complete::Shell) -> Result<(), ConsoleError> {
    super::print_text(&completion_script(shell))
}

pub(super) fn man() -> Result<(), ConsoleError> {
    super::print_text(&man_page()?)
}
