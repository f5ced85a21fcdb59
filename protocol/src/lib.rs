//! The recfleet wire protocol: typed ids, the recording spec, the recording
//! state machine, every message of the worker and console conversations,
//! error codes, framing and limits. The core is pure (bytes in, values out);
//! the `quic` feature adds a thin adapter onto quinn streams and endpoints.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod egress;
pub mod error;
pub mod events;
pub mod frame;
pub mod health;
pub mod ids;
pub mod manifest;
pub mod messages;
pub mod spec;
pub mod state;
pub mod version;

#[cfg(feature = "quic")]
pub mod quic;

#[cfg(test)]
mod wire_tests;

pub use error::{ErrorCode, WireError};
pub use events::{EventOptions, EventSource, TrackEvent};
pub use health::{Health, HealthPolicy, HealthRequest, HealthState};
pub use ids::{Epoch, IdError, RecordingId, WorkerName};
pub use manifest::{
    Chunk, EventsOutput, Manifest, ManifestSegment, Outputs, SegmentEndReason, StoredFile,
};
pub use messages::*;
pub use spec::{RecordingSpec, Viewport};
pub use state::RecordingState;

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
