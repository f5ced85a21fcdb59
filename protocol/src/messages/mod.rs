//! Every message of the three conversations. A client opens a QUIC stream and
//! sends an [`OpenStream`] frame first; it names the conversation, and the
//! frames that follow on that stream are of that conversation's types.
//!
//! Wire compatibility within a version (`recfleet/6`): postcard encodes enum variants by
//! index and struct fields by position, so new variants may only be appended
//! at the end of an enum, and struct fields never change. See docs/protocol.md.

mod console;
mod info;
mod query;
mod worker;

pub use console::*;
pub use info::*;
pub use query::*;
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
    /// A question for the worker that runs a recording (its thumbnail, its
    /// logs, its processes), relayed by the coordinator: the answer is a
    /// series of [`QueryFrame`]s ending with the stream (operator or viewer).
    Query(WorkerQuery),
    /// A recording's event track so far, read by the coordinator from the
    /// store: a series of [`QueryFrame::Events`] ending with
    /// [`QueryFrame::End`] (operator or viewer).
    Events(EventsRequest),
    /// A worker's guard reports the worker's death (agent certificates
    /// only, the worker's own). The coordinator ends the stream, or answers
    /// [`CoordinatorMessage::Refused`].
    WorkerGone(WorkerGone),
}

/// Milliseconds since the Unix epoch (UTC), as all wall-clock times on the wire.
pub type UnixMillis = u64;
