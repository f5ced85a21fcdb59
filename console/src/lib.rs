//! The recfleet operator console: a ratatui TUI and scriptable commands over
//! the same requests. A library as well as the `recfleet` binary, so that
//! the agent can write the context file ([`context::Context::write`]) and
//! tests can drive the TUI on a `TestBackend`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod backoff;
pub mod cells;
pub mod cli;
pub mod client;
pub mod commands;
pub mod context;
pub mod describe;
pub mod error;
pub mod format;
pub mod tui;
