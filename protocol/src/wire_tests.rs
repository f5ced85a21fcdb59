//! Wire tests: every message round-trips, a few have golden bytes so an
//! accidental wire change fails here, and bad bytes give errors, never panics.

use proptest::prelude::*;

use crate::error::ErrorCode;
use crate::frame::{self, FrameError, MAX_FRAME_LEN};
use crate::ids::{Epoch, RecordingId, WorkerName};
use crate::messages::*;
use crate::spec::RecordingSpec;

impl Arbitrary for RecordingId {
    type Parameters = ();
    type Strategy = BoxedStrategy<Self>;
    fn arbitrary_with(_: ()) -> Self::Strategy {
        "[A-Za-z0-9._-]{1,128}"
            .prop_map(|s| RecordingId::new(s).expect("valid by construction"))
            .boxed()
    }
}

impl Arbitrary for WorkerName {
    type Parameters = ();
    type Strategy = BoxedStrategy<Self>;
    fn arbitrary_with(_: ()) -> Self::Strategy {
        "[a-z0-9][A-Za-z0-9._-]{0,62}"
            .prop_map(|s| WorkerName::new(s).expect("valid by construction"))
            .boxed()
    }
}

impl Arbitrary for Epoch {
    type Parameters = ();
    type Strategy = BoxedStrategy<Self>;
    fn arbitrary_with(_: ()) -> Self::Strategy {
        any::<u64>().prop_map(Epoch).boxed()
    }
}

impl Arbitrary for ErrorCode {
    type Parameters = ();
    type Strategy = BoxedStrategy<Self>;
    fn arbitrary_with(_: ()) -> Self::Strategy {
        any::<u16>().prop_map(ErrorCode::from).boxed()
    }
}

fn round_trip<T>(msg: &T)
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let bytes = frame::encode(msg).expect("encodes");
    let (back, used): (T, usize) = frame::decode(&bytes).expect("decodes");
    assert_eq!(used, bytes.len());
    assert_eq!(&back, msg);
    // Every strict prefix is reported as truncated, never as a message.
    for cut in [0, 1, 3, bytes.len() / 2, bytes.len() - 1] {
        if cut < bytes.len() {
            assert!(matches!(
                frame::decode::<T>(&bytes[..cut]),
                Err(FrameError::Truncated { .. })
            ));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn open_stream_round_trips(m: OpenStream) { round_trip(&m); }
    #[test]
    fn worker_messages_round_trip(m: WorkerMessage) { round_trip(&m); }
    #[test]
    fn coordinator_messages_round_trip(m: CoordinatorMessage) { round_trip(&m); }
    #[test]
    fn console_requests_round_trip(m: ConsoleRequest) { round_trip(&m); }


    /// Garbage never panics the decoder; it is either a message or an error.
    #[test]
    fn garbage_gives_errors(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = frame::decode::<OpenStream>(&bytes);
        let _ = frame::decode::<WorkerMessage>(&bytes);
        let _ = frame::decode::<ConsoleResponse>(&bytes);
        let _ = frame::decode_payload::<SubscriptionFrame>(&bytes);
    }
}

// Responses and snapshots nest lists of lists: fewer cases keep them fast.
proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    // Segments of chunks: up to ~10,000 generated rows a case, 60-90 s of a
    // debug build at 256 cases.
    #[test]
    fn manifests_round_trip_as_json(m: crate::manifest::Manifest) {
        let json = serde_json::to_string(&m).unwrap();
        let back: crate::manifest::Manifest = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(back, m);
    }

    #[test]
    fn console_responses_round_trip(m: ConsoleResponse) { round_trip(&m); }
    #[test]
    fn subscription_frames_round_trip(m: SubscriptionFrame) { round_trip(&m); }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn sample_spec() -> RecordingSpec {
    let mut spec = RecordingSpec::new(
        RecordingId::new("class-42").unwrap(),
        "https://school.example/room/42",
    );
    spec.stop.max_duration_secs = Some(3600);
    spec.labels.insert("zone".into(), "eu".into());
    spec
}

/// Golden bytes: if one of these fails, the wire format changed. That is a
/// `recfleet/6` change unless only new enum variants were appended (see
/// docs/protocol.md); do not just update the constant.
#[test]
fn golden_bytes() {
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "subscribe",
            frame::encode(&OpenStream::Subscribe).unwrap(),
            GOLDEN_SUBSCRIBE,
        ),
        (
            "start recording",
            frame::encode(&OpenStream::Request(ConsoleRequest::StartRecording(
                sample_spec(),
            )))
            .unwrap(),
            GOLDEN_START,
        ),
        (
            "stop segment",
            frame::encode(&CoordinatorMessage::StopSegment {
                recording: RecordingId::new("class-42").unwrap(),
                epoch: Epoch(7),
                reason: crate::manifest::SegmentEndReason::Reassigned,
            })
            .unwrap(),
            GOLDEN_STOP_SEGMENT,
        ),
        (
            "error",
            frame::encode(&ConsoleResponse::Error(crate::error::WireError::new(
                ErrorCode::NotFound,
                "no recording \"x\"",
            )))
            .unwrap(),
            GOLDEN_ERROR,
        ),
    ];
    for (name, bytes, golden) in cases {
        assert_eq!(hex(&bytes), golden, "wire bytes of {name} changed");
    }
}

const GOLDEN_SUBSCRIBE: &str = "0000000102";
// recfleet/3: the spec's `health` (six absent fields) at its end;
// recfleet/4: then its `events` (no watched element, no chapters).
// recfleet/6: then its `redundancy` (1).
const GOLDEN_START: &str = "0000004b010608636c6173732d34321e68747470733a2f2f7363686f6f6c2e6578616d706c652f726f6f6d2f3432800ad0050f0101901c000001047a6f6e6502657501000000000000000000000001";
const GOLDEN_STOP_SEGMENT: &str = "0000000c0308636c6173732d34320708";
const GOLDEN_ERROR: &str = "000000140002106e6f207265636f7264696e672022782200";

#[test]
fn oversized_frames_are_refused_before_allocation() {
    let mut bytes = ((MAX_FRAME_LEN + 1) as u32).to_be_bytes().to_vec();
    bytes.extend_from_slice(&[0; 16]);
    assert_eq!(
        frame::decode::<OpenStream>(&bytes).unwrap_err(),
        FrameError::Oversized {
            len: MAX_FRAME_LEN + 1,
            max: MAX_FRAME_LEN
        }
    );
    let huge = ConsoleRequest::Ping {
        payload: vec![0; MAX_FRAME_LEN],
    };
    assert!(matches!(
        frame::encode(&huge),
        Err(FrameError::Oversized { .. })
    ));
}

#[test]
fn unknown_variants_are_named() {
    // Variant index 200 of OpenStream does not exist.
    let bytes = [0, 0, 0, 2, 0xc8, 0x01];
    let err = frame::decode::<OpenStream>(&bytes).unwrap_err();
    assert!(err.to_string().contains("unknown variant"), "{err}");
}

#[test]
fn trailing_bytes_inside_a_frame_are_an_error() {
    let mut bytes = frame::encode(&OpenStream::Subscribe).unwrap();
    bytes.push(0);
    bytes[3] += 1;
    assert_eq!(
        frame::decode::<OpenStream>(&bytes).unwrap_err(),
        FrameError::TrailingBytes(1)
    );
}

#[test]
fn invalid_ids_inside_messages_are_rejected() {
    // A StopRecording whose id is "a b" (a space is not allowed).
    let req = ConsoleRequest::StopRecording {
        id: RecordingId::new("ab").unwrap(),
    };
    let mut bytes = frame::encode(&OpenStream::Request(req)).unwrap();
    let pos = bytes.len() - 1; // 'b'
    bytes[pos] = b' ';
    let err = frame::decode::<OpenStream>(&bytes).unwrap_err();
    assert!(matches!(err, FrameError::Malformed(_)), "{err}");
}

#[test]
fn frame_buffer_splits_a_stream() {
    let mut all = Vec::new();
    for i in 0..5u8 {
        all.extend(
            frame::encode(&ConsoleRequest::Ping {
                payload: vec![i; i as usize * 10],
            })
            .unwrap(),
        );
    }
    let mut fb = frame::FrameBuffer::default();
    let mut got = Vec::new();
    for chunk in all.chunks(7) {
        fb.extend(chunk);
        while let Some(m) = fb.next_frame::<ConsoleRequest>().unwrap() {
            got.push(m);
        }
    }
    assert_eq!(got.len(), 5);
    assert_eq!(fb.pending(), 0);
}
