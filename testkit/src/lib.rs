//! Dev-only test support for recfleet: what the cross-process tests
//! (tests/) and the benchmarks (bench/) share, so that a fleet is started
//! one way everywhere. Not published, not shipped.
//!
//! - [`pki`]: a throwaway fleet CA with certificate files for a coordinator,
//!   an operator, a viewer and agents, and certificates in memory.
//! - [`fleet`]: [`TestFleet`], a coordinator process from the built
//!   `recfleet-agent` with real worker processes or simulated workers.
//! - [`sim`]: the simulated worker (real QUIC and mTLS, fake slots).
//! - [`procs`]: binaries, CPU and RSS from /proc, leftover processes.
//! - [`http`]: GETs of /metrics, /healthz and /readyz.
//! - [`watch`]: an event subscriber read in the background.
//! - [`netns`]: a network namespace of the test's own, behind a veth pair.
//!
//! Modules depend only downwards: `fleet` on `sim`, `pki`, `procs`, `watch`;
//! `sim` on `pki`; the others on nothing here.

#![forbid(unsafe_code)]

pub mod fleet;
pub mod http;
pub mod netns;
pub mod pki;
pub mod postgres;
pub mod procs;
pub mod s3;
pub mod segments;
pub mod sim;
pub mod tcp_cut;
pub mod watch;

pub use fleet::{FleetOptions, TestFleet};
pub use http::{http_get, wait_http};
pub use pki::Pki;
pub use procs::workspace_bin;
pub use s3::S3Server;
