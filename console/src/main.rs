//! `recfleet`: the operator console. The TUI with no command; otherwise a
//! scripted command whose exit code tells what happened (docs/console.md).

#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use recfleet_console::cli::Cli;
use recfleet_console::{commands, tui};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let output = cli.output;
    let result = match cli.command {
        Some(command) => runtime.block_on(commands::run(command, &cli.conn, output)),
        None => runtime.block_on(tui::run(&cli.conn, cli.readonly)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => ExitCode::from(commands::report_error(&e, output)),
    }
}
