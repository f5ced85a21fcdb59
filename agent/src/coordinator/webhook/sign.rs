//! Webhook signatures, as Stripe and GitHub sign theirs: an HMAC-SHA256 of
//! `"<unix seconds>.<body>"` with a shared secret, sent as
//!
//! ```text
//! Recfleet-Signature: t=1700000000,v1=5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd
//! ```
//!
//! The timestamp is signed too, so that a captured request cannot be
//! replayed later than the receiver's tolerance. Pure: the time is passed in.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The header that carries the signature.
pub const SIGNATURE_HEADER: &str = "Recfleet-Signature";
/// The header that carries the event id (the idempotency key).
pub const EVENT_ID_HEADER: &str = "Recfleet-Event-Id";
/// The header that carries the event type.
pub const EVENT_TYPE_HEADER: &str = "Recfleet-Event-Type";

/// Why a signature does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The header is not `t=<seconds>,v1=<hex>`.
    #[error("malformed signature header")]
    Malformed,
    /// The timestamp is further from now than the tolerance.
    #[error("the signature's timestamp is {0} s away from now, beyond the tolerance")]
    Stale(u64),
    /// No `v1` signature matches the body.
    #[error("no signature matches the body")]
    Mismatch,
}

fn mac(secret: &[u8], t: u64, body: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length, so this never falls back; the daemon
    // stays free of panics all the same.
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(secret)
        .unwrap_or_else(|_| <HmacSha256 as KeyInit>::new(&Default::default()));
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The `Recfleet-Signature` value for `body` sent at `t` (Unix seconds).
pub fn sign(secret: &[u8], t: u64, body: &[u8]) -> String {
    let tag = mac(secret, t, body).finalize().into_bytes();
    format!("t={t},v1={}", hex(&tag))
}

/// Checks a `Recfleet-Signature` header against `body`: some `v1` must be
/// the HMAC of `"<t>.<body>"` (compared in constant time), and `t` within
/// `tolerance_secs` of `now_secs`. Several `v1` entries are allowed (a
/// sender rotating its secret signs with both).
pub fn verify(
    secret: &[u8],
    header: &str,
    body: &[u8],
    now_secs: u64,
    tolerance_secs: u64,
) -> Result<(), VerifyError> {
    let mut t = None;
    let mut tags = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = Some(v.parse::<u64>().map_err(|_| VerifyError::Malformed)?),
            Some(("v1", v)) => tags.push(unhex(v).ok_or(VerifyError::Malformed)?),
            Some(_) => {} // other schemes: ignored, as Stripe's receivers do
            None => return Err(VerifyError::Malformed),
        }
    }
    let t = t.ok_or(VerifyError::Malformed)?;
    if tags.is_empty() {
        return Err(VerifyError::Malformed);
    }
    let skew = now_secs.abs_diff(t);
    if skew > tolerance_secs {
        return Err(VerifyError::Stale(skew));
    }
    if tags
        .iter()
        .any(|tag| mac(secret, t, body).verify_slice(tag).is_ok())
    {
        Ok(())
    } else {
        Err(VerifyError::Mismatch)
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"whsec_test";
    const BODY: &[u8] = br#"{"id":"r1-1","type":"recording.started"}"#;

    #[test]
    fn a_signature_verifies_with_its_secret_only() {
        let h = sign(SECRET, 1_700_000_000, BODY);
        assert!(h.starts_with("t=1700000000,v1="), "{h}");
        assert_eq!(h.len(), "t=1700000000,v1=".len() + 64);
        assert_eq!(verify(SECRET, &h, BODY, 1_700_000_010, 300), Ok(()));
        assert_eq!(
            verify(b"other", &h, BODY, 1_700_000_010, 300),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify(SECRET, &h, b"{}", 1_700_000_010, 300),
            Err(VerifyError::Mismatch)
        );
    }

    #[test]
    fn known_answer() {
        // HMAC-SHA256("key", "1.x"), computed independently
        // (python3 -c 'import hmac,hashlib; print(hmac.new(b"key", b"1.x", hashlib.sha256).hexdigest())')
        assert_eq!(
            sign(b"key", 1, b"x"),
            "t=1,v1=fc4913c41a7bf793267e2a384f3261c9436ec2cd097bd745e7b0d99113f510ec"
        );
    }

    #[test]
    fn old_or_malformed_signatures_are_refused() {
        let h = sign(SECRET, 1000, BODY);
        assert_eq!(
            verify(SECRET, &h, BODY, 2000, 300),
            Err(VerifyError::Stale(1000))
        );
        for bad in ["", "t=1", "v1=00", "t=x,v1=00", "t=1,v1=zz", "garbage"] {
            assert_eq!(
                verify(SECRET, bad, BODY, 1, 300),
                Err(VerifyError::Malformed),
                "{bad}"
            );
        }
        // a second v1 (secret rotation) is accepted when one matches
        let both = format!("{},v1={}", sign(b"old", 1000, BODY), &h[h.len() - 64..]);
        assert_eq!(verify(SECRET, &both, BODY, 1000, 300), Ok(()));
    }
}
