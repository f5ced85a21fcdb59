//! `recfleet-agent`: the recfleet daemon and its tools.

#![forbid(unsafe_code)]

use std::process::ExitCode;

use recfleet_agent::{coordinator, dev, record, worker};

use clap::{Parser, Subcommand};

/// The recfleet agent: records live classes with real browsers.
#[derive(Debug, Parser)]
#[command(name = "recfleet-agent", version, about)]
struct Cli {
    /// Log format: text for people, json (one object per line) for shippers.
    #[arg(
        long,
        global = true,
        env = "RECFLEET_LOG_FORMAT",
        default_value = "text"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the coordinator: registry, store, scheduler, failover, events.
    Coordinator(Box<coordinator::CoordinatorArgs>),
    /// Run a worker: records what the coordinator places on it.
    Worker(Box<worker::daemon::WorkerArgs>),
    /// A local fleet for a first run: CA, coordinator, workers, demo page.
    Dev(dev::DevArgs),
    /// Record one page on this machine (no coordinator) and write a manifest.
    Record(record::RecordArgs),
    /// Internal: kills a worker's leftover processes when the worker dies.
    #[command(hide = true)]
    Guard {
        /// The worker instance tag.
        #[arg(long)]
        tag: String,
    },
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("RECFLEET_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        // Span fields (worker, recording, epoch) go into every event.
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init(),
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Guard { tag } = &cli.command {
        // No runtime, no logging: the guard only waits and sweeps.
        return match worker::guard::run(tag) {
            Ok(()) => ExitCode::SUCCESS,
            Err(_) => ExitCode::FAILURE,
        };
    }
    init_logging(cli.log_format);
    // HTTPS clients (object stores, webhooks) use the process's rustls
    // provider: ring, as everything else here (no aws-lc-sys build).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Coordinator(args) => coordinator::main(*args).await,
            Command::Worker(args) => worker::daemon::main(*args).await,
            Command::Dev(args) => dev::main(args).await,
            Command::Record(args) => record::run(args).await,
            Command::Guard { .. } => Ok(()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("error: {:#}", f.error);
            ExitCode::from(f.code)
        }
    }
}
