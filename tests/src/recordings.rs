//! Steps of a recording's life that many cross-process tests take.

use recfleet_protocol::spec::{RecordingSpec, Viewport};
use recfleet_protocol::{ConsoleRequest, Manifest, RecordingId, RecordingState};
use recfleet_testkit::TestFleet;

/// Stops a recording, waits (up to 90 s) until it has ended, asserts that
/// it completed, and returns its manifest.
pub async fn stop_and_complete(fleet: &mut TestFleet, id: &RecordingId) -> Manifest {
    fleet
        .request(ConsoleRequest::StopRecording { id: id.clone() })
        .await
        .unwrap();
    wait_completed(fleet, id, 90).await
}

/// Waits up to `secs` until a recording has ended, asserts that it
/// completed, and returns its manifest.
pub async fn wait_completed(fleet: &mut TestFleet, id: &RecordingId, secs: u64) -> Manifest {
    let d = fleet
        .wait_for(id, secs, |d| d.info.state.is_terminal())
        .await
        .unwrap();
    assert_eq!(
        d.info.state,
        RecordingState::Completed,
        "{id}: {:?}",
        d.info
    );
    d.manifest
}

/// A small recording: 640x360 without sound, at most ten minutes (cheap on
/// two cores, for tests about something else than the picture).
pub fn small_spec(id: &RecordingId, url: String) -> RecordingSpec {
    let mut spec = RecordingSpec::new(id.clone(), url);
    spec.viewport = Viewport {
        width: 640,
        height: 360,
    };
    spec.audio = false;
    spec.stop.max_duration_secs = Some(600);
    spec
}

/// Wall-clock time from the first frame any segment captured to the last.
pub fn wall_span_ms(m: &Manifest) -> u64 {
    let first = m
        .segments
        .iter()
        .filter_map(|s| s.first_frame_at)
        .min()
        .unwrap();
    let last = m
        .segments
        .iter()
        .filter_map(|s| s.last_frame_at)
        .max()
        .unwrap();
    last - first
}
