//! Framing: a 4-byte big-endian length, then a postcard payload. Pure bytes,
//! no I/O; `crate::quic` puts frames on QUIC streams.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Length of the prefix before each payload.
pub const PREFIX_LEN: usize = 4;

/// The largest payload accepted or sent (8 MiB). Large enough for a
/// snapshot of about 10,000 workers; a peer announcing more is cut off before
/// anything is allocated for it.
pub const MAX_FRAME_LEN: usize = 8 * 1024 * 1024;

/// Why bytes are not a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The bytes end before the frame does.
    #[error("truncated frame: {needed} bytes needed, {available} available")]
    Truncated {
        /// Bytes the frame needs (prefix included).
        needed: usize,
        /// Bytes there are.
        available: usize,
    },
    /// The announced or actual payload is larger than the limit.
    #[error("oversized frame: {len} bytes, the limit is {max}")]
    Oversized {
        /// The payload length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The payload is not a valid message.
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// The payload decoded but bytes were left over inside the frame.
    #[error("malformed frame: {0} unexpected bytes after the message")]
    TrailingBytes(usize),
}

/// Encodes `msg` as one frame (prefix + payload).
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, FrameError> {
    // Reserve the prefix, then serialize straight after it.
    let mut buf = postcard::to_extend(msg, vec![0u8; PREFIX_LEN])
        .map_err(|e| FrameError::Malformed(describe(&e)))?;
    let len = buf.len() - PREFIX_LEN;
    if len > MAX_FRAME_LEN {
        return Err(FrameError::Oversized {
            len,
            max: MAX_FRAME_LEN,
        });
    }
    buf[..PREFIX_LEN].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(buf)
}

/// Reads the payload length from a prefix, refusing oversized frames.
pub fn payload_len(prefix: [u8; PREFIX_LEN]) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(prefix) as usize;
    if len > MAX_FRAME_LEN {
        return Err(FrameError::Oversized {
            len,
            max: MAX_FRAME_LEN,
        });
    }
    Ok(len)
}

/// Decodes a payload (without prefix) into a message; the whole payload must
/// be used.
pub fn decode_payload<T: DeserializeOwned>(payload: &[u8]) -> Result<T, FrameError> {
    if payload.len() > MAX_FRAME_LEN {
        return Err(FrameError::Oversized {
            len: payload.len(),
            max: MAX_FRAME_LEN,
        });
    }
    let (msg, rest) =
        postcard::take_from_bytes(payload).map_err(|e| FrameError::Malformed(describe(&e)))?;
    if !rest.is_empty() {
        return Err(FrameError::TrailingBytes(rest.len()));
    }
    Ok(msg)
}

/// Decodes the first frame of `buf`, returning the message and the number
/// of bytes it took. `Truncated` means: wait for more bytes.
pub fn decode<T: DeserializeOwned>(buf: &[u8]) -> Result<(T, usize), FrameError> {
    let Some(prefix) = buf.get(..PREFIX_LEN) else {
        return Err(FrameError::Truncated {
            needed: PREFIX_LEN,
            available: buf.len(),
        });
    };
    let mut p = [0u8; PREFIX_LEN];
    p.copy_from_slice(prefix);
    let len = payload_len(p)?;
    let end = PREFIX_LEN + len;
    let Some(payload) = buf.get(PREFIX_LEN..end) else {
        return Err(FrameError::Truncated {
            needed: end,
            available: buf.len(),
        });
    };
    Ok((decode_payload(payload)?, end))
}

/// Turns postcard's errors into what a person debugging a peer needs to know.
fn describe(e: &postcard::Error) -> String {
    use postcard::Error as E;
    match e {
        E::DeserializeUnexpectedEnd => "the message ends early".into(),
        E::DeserializeBadEnum => {
            "unknown variant (a message or field this version does not know)".into()
        }
        E::DeserializeBadVarint => "bad integer encoding".into(),
        E::DeserializeBadBool => "bad boolean".into(),
        E::DeserializeBadChar => "bad character".into(),
        E::DeserializeBadUtf8 => "text is not UTF-8".into(),
        E::DeserializeBadOption => "bad option tag".into(),
        E::DeserializeBadEncoding => "bad encoding".into(),
        // postcard drops serde's text here; these are the two causes.
        E::SerdeDeCustom => {
            "unknown variant, or an invalid value (such as an id with characters that are not allowed)"
                .into()
        }
        other => other.to_string(),
    }
}

/// Splits a byte stream into frames (for readers that get bytes in pieces).
#[derive(Debug, Default)]
pub struct FrameBuffer {
    buf: Vec<u8>,
}

impl FrameBuffer {
    /// Appends received bytes.
    pub fn extend(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete frame, `Ok(None)` if more bytes are needed. An error
    /// means the stream is broken: the caller closes it.
    pub fn next_frame<T: DeserializeOwned>(&mut self) -> Result<Option<T>, FrameError> {
        match decode(&self.buf) {
            Ok((msg, used)) => {
                self.buf.drain(..used);
                Ok(Some(msg))
            }
            Err(FrameError::Truncated { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Bytes held that are not yet a frame.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }
}
