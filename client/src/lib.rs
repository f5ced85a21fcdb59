//! The recfleet operator client, written once for the console, `recfleet-agent
//! dev`, the cross-process tests and the benchmarks:
//!
//! - [`connect`]: an endpoint from TLS material, a connection to a
//!   coordinator address within a deadline, failures that name the address;
//! - [`context`]: the console's context files (where the coordinator is,
//!   which certificate to show it);
//! - [`Client`]: one connection, made again when lost; requests with a
//!   deadline and typed helpers ([`Client::whoami`], [`Client::workers`],
//!   [`Client::recordings_all`], [`Client::show`], [`Client::start`], ...);
//! - [`subscription`]: one event stream ([`EventStream`]) or a subscription
//!   that reconnects and resyncs by itself ([`Subscription`]);
//! - [`backoff`]: the reconnect delays.
//!
//! Nothing here prints or decides exit codes: that is the console's.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod backoff;
mod client;
pub mod connect;
pub mod context;
mod error;
pub mod pages;
mod query;
pub mod subscription;

pub use client::{request_on, Client, Identity, Started, REQUEST_TIMEOUT};
pub use connect::{Connected, CONNECT_TIMEOUT};
pub use context::Context;
pub use error::{response_name, ClientError};
pub use pages::Page;
pub use query::QueryStream;
pub use subscription::{EventStream, Subscription, Update};
