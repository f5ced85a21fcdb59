//! Arbitrary bytes as what recfleet takes from outside in JSON: a recording
//! spec (a platform's request, validated), and an event track line (a
//! store's object). Parsing and validation return a value or an error,
//! never a panic; an event that parses writes back to the same event.

#![no_main]

use libfuzzer_sys::fuzz_target;
use recfleet_protocol::{RecordingSpec, TrackEvent};

fuzz_target!(|data: &[u8]| {
    if let Ok(spec) = serde_json::from_slice::<RecordingSpec>(data) {
        let _ = spec.validate();
    }
    if let Ok(text) = std::str::from_utf8(data) {
        for line in text.lines() {
            if let Ok(e) = serde_json::from_str::<TrackEvent>(line) {
                let again = serde_json::to_string(&e).expect("a parsed event writes");
                let back: TrackEvent = serde_json::from_str(&again).expect("and parses again");
                assert_eq!(back, e);
            }
        }
    }
});
