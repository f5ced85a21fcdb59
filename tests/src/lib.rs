//! Shared harness for recfleet's cross-process tests.

#![forbid(unsafe_code)]

pub mod media;
pub mod pki;
pub mod procs;
