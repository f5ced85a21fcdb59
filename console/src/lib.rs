//! The recfleet operator console: a ratatui TUI and scriptable commands over
//! the same requests, on the shared client (`recfleet-client`: connection,
//! context files, requests, subscriptions). A library as well as the
//! `recfleet` binary, so that tests can drive the TUI on a `TestBackend`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod cells;
pub mod cli;
pub mod commands;
pub mod describe;
pub mod error;
pub mod event_filter;
pub mod finished;
pub mod format;
pub mod sort;
pub mod tui;
pub mod yaml;

/// The context files, from the client crate (where the console's context
/// module moved); `recfleet_console::context` keeps working.
pub use recfleet_client::context;
