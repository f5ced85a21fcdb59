//! Every message of the three conversations. A client opens a QUIC stream and
//! sends an [`OpenStream`] frame first; it names the conversation, and the
//! frames that follow on that stream are of that conversation's types.
//!
//! Wire compatibility within a version (`recfleet/2`): postcard encodes enum variants by
//! index and struct fields by position, so new variants may only be appended
//! at the end of an enum, and struct fields never change. See docs/protocol.md.

mod console;
mod info;
mod worker;

pub use console::*;
pub use info::*;
pub use worker::*;

use serde::{Deserialize, Serialize};

/// The first frame on every client-opened stream.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum OpenStream {
    /// A worker's long-lived control stream (agent certificates only). The
    /// coordinator answers [`CoordinatorMessage::Welcome`] or
    /// [`CoordinatorMessage::Refused`]; then both sides send frames at will.
    Worker(WorkerHello),
    /// One request and one [`ConsoleResponse`] (operator or viewer).
    Request(ConsoleRequest),
    /// A console's event subscription: the coordinator sends a
    /// [`SubscriptionFrame::Snapshot`] and then numbered events.
    Subscribe,
}

/// Milliseconds since the Unix epoch (UTC), as all wall-clock times on the wire.
pub type UnixMillis = u64;
