//! Shared harness for recfleet's cross-process tests.

#![forbid(unsafe_code)]

pub mod console;
pub mod hooks;
pub mod media;
pub mod recordings;
pub mod tls;
