//! What every decoding target checks of one message type: arbitrary bytes
//! give a message or an error, never a panic; a decoded message encodes
//! back to a frame that decodes the same; the streaming buffer agrees when
//! the bytes come a few at a time.

use recfleet_protocol::frame::{self, FrameBuffer};

pub fn check<T>(data: &[u8])
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
