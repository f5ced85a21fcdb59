//! Plain HTTP/1.1 GETs against /metrics, /healthz and /readyz.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// A plain HTTP GET; returns (status, body).
pub fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    // One write: the agent's responder reads the request once, and a
    // request written piecemeal (as `write!` does) may be answered after
    // its first piece, breaking the pipe for the rest.
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(request.as_bytes())?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// Polls `path` until it answers `status` (within `secs`); returns the body.
pub async fn wait_http(
    addr: SocketAddr,
    path: &str,
    status: u16,
    secs: u64,
) -> anyhow::Result<String> {
    let until = Instant::now() + Duration::from_secs(secs);
    loop {
        let path2 = path.to_string();
        let last = match tokio::task::spawn_blocking(move || http_get(addr, &path2)).await? {
            Ok((s, body)) if s == status => return Ok(body),
            other => other,
        };
        anyhow::ensure!(
            Instant::now() < until,
            "{addr}{path} did not answer {status} within {secs} s; last: {last:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
