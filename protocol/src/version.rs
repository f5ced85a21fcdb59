//! Protocol versioning. ALPN carries the version, so peers of different
//! versions find out during the handshake and are told so plainly.

/// The ALPN id of this protocol version.
/// `recfleet/2`: recording specs name their destination, worker telemetry
/// and infos carry upload lag and buffer (fields added to structs, which
/// postcard encodes by position: not readable by `recfleet/1`).
/// `recfleet/3`: media health in specs, telemetry and infos; worker
/// queries (thumbnails, logs, processes) on streams of their own.
/// `recfleet/4`: the event track (spec `events`, manifest `outputs.events`,
/// `OpenStream::Events`).
/// `recfleet/5`: the coordinator's URL policy in the worker's welcome
/// (egress enforced where the browser resolves).
/// `recfleet/6`: the warm pool, measured cost and admission in worker
/// telemetry and infos; redundancy in specs, the host in hellos and infos,
/// the second copy in recording infos.
pub const ALPN: &[u8] = b"recfleet/6";

/// The version as text.
pub const VERSION: &str = "recfleet/6";

/// Other `recfleet/N` versions a server accepts at the TLS level only in
/// order to refuse them with a clear message (close code
/// [`crate::error::close::VERSION_MISMATCH`]) rather than a bare TLS alert.
pub const REFUSED_ALPNS: &[&[u8]] = &[
    b"recfleet/0",
    b"recfleet/1",
    b"recfleet/2",
    b"recfleet/3",
    b"recfleet/4",
    b"recfleet/5",
    b"recfleet/7",
];

/// The ALPN list a server offers: the real one first.
pub fn server_alpns() -> Vec<Vec<u8>> {
    std::iter::once(ALPN)
        .chain(REFUSED_ALPNS.iter().copied())
        .map(<[u8]>::to_vec)
        .collect()
}

/// The message for a peer speaking `other`.
pub fn mismatch_message(other: &[u8]) -> String {
    format!(
        "protocol version mismatch: the peer speaks {}, this build speaks {VERSION}",
        String::from_utf8_lossy(other)
    )
}
