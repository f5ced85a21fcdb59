//! Feeds arbitrary bytes to the frame decoder as every message type a peer
//! can send. The decoder must return a message or an error, never panic,
//! and a decoded message must encode back to a frame that decodes the same.

#![no_main]

use libfuzzer_sys::fuzz_target;
use recfleet_protocol::frame::{self, FrameBuffer};
use recfleet_protocol::{ConsoleResponse, CoordinatorMessage, OpenStream, SubscriptionFrame, WorkerMessage};

fn check<T>(data: &[u8])
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    if let Ok((msg, _)) = frame::decode::<T>(data) {
        let bytes = frame::encode(&msg).expect("a decoded message encodes");
        let (again, _) = frame::decode::<T>(&bytes).expect("and decodes again");
        assert_eq!(again, msg);
    }
    let _ = frame::decode_payload::<T>(data);
    let mut buf = FrameBuffer::default();
    for chunk in data.chunks(5) {
        buf.extend(chunk);
        while let Ok(Some(_)) = buf.next_frame::<T>() {}
    }
}

fuzz_target!(|data: &[u8]| {
    check::<OpenStream>(data);
    check::<WorkerMessage>(data);
    check::<CoordinatorMessage>(data);
    check::<ConsoleResponse>(data);
    check::<SubscriptionFrame>(data);
});
