//! recfleet-agent as a library: the worker's recording engine and the
//! commands of the `recfleet-agent` binary, so tests can drive them in
//! process as well as through the binary.

#![forbid(unsafe_code)]

pub mod backoff;
pub mod coordinator;
pub mod demo;
pub mod dev;
pub mod exit;
pub mod health;
pub mod http;
pub mod output;
pub mod record;
pub mod settings;
pub mod signals;
pub mod worker;

/// This machine's host name, if it has one.
pub fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
}
