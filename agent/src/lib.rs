//! recfleet-agent as a library: the worker's recording engine and the
//! commands of the `recfleet-agent` binary, so tests can drive them in
//! process as well as through the binary.

#![forbid(unsafe_code)]

pub mod demo;
pub mod exit;
pub mod record;
pub mod worker;
