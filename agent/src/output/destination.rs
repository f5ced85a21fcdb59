//! Where a recording's objects go: a directory (`file:///DIR`, the embedded
//! default) or an S3-compatible bucket (`s3://BUCKET/PREFIX`), behind one
//! API so that both behave alike. A recording's objects are
//! `<destination>/<dir>/<key>` where `dir` is the spec's output directory.
//!
//! S3 credentials and endpoint come from the standard AWS variables
//! (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
//! `AWS_REGION`, `AWS_ENDPOINT_URL`, web identity for IRSA, instance
//! metadata) and, when no key is in the environment, from the shared files
//! (`~/.aws/credentials` and `~/.aws/config`, profile `AWS_PROFILE`).

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The AWS variables passed to the S3 client as they are (region and
/// endpoint are read on their own, with the shared files).
const AWS_VARIABLES: [&str; 11] = [
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
    "AWS_ROLE_SESSION_NAME",
    "AWS_ENDPOINT_URL_STS",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
    "AWS_VIRTUAL_HOSTED_STYLE_REQUEST",
];

/// Files larger than this are uploaded in parts.
const MULTIPART_OVER: u64 = 32 << 20;
/// The size of one part of a multipart upload.
const PART_BYTES: usize = 16 << 20;

/// Why a destination cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DestinationError {
    /// The URL is not a destination.
    #[error("{0}")]
    Url(String),
    /// The store said no (or could not be reached).
    #[error("{0}")]
    Store(#[from] object_store::Error),
    /// A local file could not be read or written.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// An opened destination.
#[derive(Clone)]
pub struct Destination {
    url: String,
    store: Arc<dyn ObjectStore>,
    prefix: Vec<String>,
}

impl std::fmt::Debug for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Destination")
            .field("url", &self.url)
            .finish()
    }
}

impl Destination {
    /// Opens `file:///DIR` (created if missing) or `s3://BUCKET/PREFIX`,
    /// configured from the process's environment. Nothing is sent to a
    /// store here: a bad key shows at the first write.
    pub fn open(url: &str) -> Result<Destination, DestinationError> {
        Destination::open_with_env(url, &|k| std::env::var(k).ok())
    }

    /// [`Destination::open`] with the AWS variables read from `env` (a
    /// program that serves several stores, a benchmark).
    pub fn open_with_env(
        url: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Destination, DestinationError> {
        recfleet_protocol::spec::check_destination(url).map_err(DestinationError::Url)?;
        // reqwest (WebDriver, object stores) needs the process's rustls
        // provider; installing it twice is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let url = url.trim_end_matches('/').to_string();
        if let Some(dir) = url.strip_prefix("file://") {
            let dir = if dir.is_empty() { "/" } else { dir };
            std::fs::create_dir_all(dir)?;
            let store = LocalFileSystem::new_with_prefix(dir)?;
            return Ok(Destination {
                url,
                store: Arc::new(store),
                prefix: Vec::new(),
            });
        }
        let rest = url.strip_prefix("s3://").unwrap_or_default();
        let mut parts = rest.split('/').filter(|p| !p.is_empty());
        let bucket = parts.next().unwrap_or_default().to_string();
        let prefix = parts.map(String::from).collect();
        let store = s3_builder(&bucket, env).build()?;
        Ok(Destination {
            url,
            store: Arc::new(store),
            prefix,
        })
    }

    /// The destination's URL, without a trailing slash.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The URL of a recording's directory.
    pub fn location(&self, dir: &str) -> String {
        format!("{}/{}", self.url, dir.trim_matches('/'))
    }

    /// The URL of one object.
    pub fn object_url(&self, dir: &str, key: &str) -> String {
        format!("{}/{}", self.location(dir), key)
    }

    fn path(&self, dir: &str, key: &str) -> Path {
        let parts = self
            .prefix
            .iter()
            .map(String::as_str)
            .chain(dir.split('/'))
            .chain(key.split('/'))
            .filter(|p| !p.is_empty());
        Path::from_iter(parts)
    }

    /// Stores `bytes` at `dir/key` (replacing what was there).
    pub async fn put(&self, dir: &str, key: &str, bytes: Bytes) -> Result<(), DestinationError> {
        self.store
            .put(&self.path(dir, key), PutPayload::from(bytes))
            .await?;
        Ok(())
    }

    /// Stores a local file at `dir/key`; large files go in parts so that
    /// memory stays bounded. Returns its size.
    pub async fn put_file(
        &self,
        dir: &str,
        key: &str,
        file: &FsPath,
    ) -> Result<u64, DestinationError> {
        let len = tokio::fs::metadata(file).await?.len();
        if len <= MULTIPART_OVER {
            let bytes = tokio::fs::read(file).await?;
            self.put(dir, key, Bytes::from(bytes)).await?;
            return Ok(len);
        }
        let upload = self.store.put_multipart(&self.path(dir, key)).await?;
        let mut writer = object_store::WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
        let mut f = tokio::fs::File::open(file).await?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            writer.wait_for_capacity(2).await?;
            writer.write(&buf[..n]);
        }
        writer.finish().await?;
        Ok(len)
    }

    /// Copies `dir/key` into a local file; returns its size.
    pub async fn get_file(
        &self,
        dir: &str,
        key: &str,
        file: &FsPath,
    ) -> Result<u64, DestinationError> {
        let got = self.store.get(&self.path(dir, key)).await?;
        let mut stream = got.into_stream();
        let mut out = tokio::fs::File::create(file).await?;
        let mut n = 0u64;
        while let Some(piece) = stream.next().await {
            let piece = piece?;
            n += piece.len() as u64;
            out.write_all(&piece).await?;
        }
        out.flush().await?;
        Ok(n)
    }

    /// Reads `dir/key` whole (small objects: manifests).
    pub async fn get(&self, dir: &str, key: &str) -> Result<Bytes, DestinationError> {
        Ok(self.store.get(&self.path(dir, key)).await?.bytes().await?)
    }

    /// Every object under `dir/sub`, as (key relative to `dir`, size).
    pub async fn list(&self, dir: &str, sub: &str) -> Result<Vec<(String, u64)>, DestinationError> {
        let base = self.path(dir, "");
        let base_parts = base.parts().count();
        let prefix = self.path(dir, sub);
        let mut out = Vec::new();
        let mut stream = self.store.list(Some(&prefix));
        while let Some(meta) = stream.next().await {
            let meta = meta?;
            let rel: Vec<String> = meta
                .location
                .parts()
                .skip(base_parts)
                .map(|p| p.as_ref().to_string())
                .collect();
            out.push((rel.join("/"), meta.size));
        }
        out.sort();
        Ok(out)
    }

    /// Removes `dir/key` (absent is fine).
    pub async fn delete(&self, dir: &str, key: &str) -> Result<(), DestinationError> {
        match self.store.delete(&self.path(dir, key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// An S3 client configured from the environment, then the shared files.
/// Requests time out (30 s, connect 5 s) and the client retries little:
/// callers keep their own backoff and report their lag, rather than hang
/// inside a library for minutes.
fn s3_builder(bucket: &str, lookup: &dyn Fn(&str) -> Option<String>) -> AmazonS3Builder {
    let env = |k: &str| lookup(k).filter(|v| !v.is_empty());
    let mut b = AmazonS3Builder::new().with_bucket_name(bucket);
    // What AmazonS3Builder::from_env reads, from `lookup`: keys, token,
    // web identity (IRSA), container credentials, addressing style.
    for key in AWS_VARIABLES {
        if let (Some(value), Ok(config)) = (env(key), key.to_ascii_lowercase().parse()) {
            b = b.with_config(config, value);
        }
    }
    let profile = env("AWS_PROFILE").unwrap_or_else(|| "default".into());
    if env("AWS_ACCESS_KEY_ID").is_none() {
        if let Some(creds) = shared_file(lookup, "AWS_SHARED_CREDENTIALS_FILE", "credentials")
            .and_then(|t| ini_section(&t, &profile))
        {
            for (k, v) in creds {
                match k.as_str() {
                    "aws_access_key_id" => b = b.with_access_key_id(v),
                    "aws_secret_access_key" => b = b.with_secret_access_key(v),
                    "aws_session_token" => b = b.with_token(v),
                    _ => {}
                }
            }
        }
    }
    let section = if profile == "default" {
        "default".to_string()
    } else {
        format!("profile {profile}")
    };
    let config =
        shared_file(lookup, "AWS_CONFIG_FILE", "config").and_then(|t| ini_section(&t, &section));
    let config_value = |key: &str| {
        config
            .as_ref()
            .and_then(|c| c.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()))
    };
    let region = env("AWS_REGION")
        .or_else(|| env("AWS_DEFAULT_REGION"))
        .or_else(|| config_value("region"))
        .unwrap_or_else(|| "us-east-1".into());
    b = b.with_region(region);
    let endpoint = env("AWS_ENDPOINT_URL_S3")
        .or_else(|| env("AWS_ENDPOINT_URL"))
        .or_else(|| config_value("endpoint_url"));
    let mut options = ClientOptions::new()
        .with_timeout(Duration::from_secs(30))
        .with_connect_timeout(Duration::from_secs(5));
    if let Some(endpoint) = endpoint {
        if endpoint.starts_with("http://") {
            options = options.with_allow_http(true);
        }
        b = b.with_endpoint(endpoint);
    }
    let retry = RetryConfig {
        max_retries: 2,
        retry_timeout: Duration::from_secs(20),
        ..RetryConfig::default()
    };
    b.with_client_options(options).with_retry(retry)
}

/// The text of `~/.aws/<name>` (or the file named by `var`), if any.
fn shared_file(lookup: &dyn Fn(&str) -> Option<String>, var: &str, name: &str) -> Option<String> {
    let path = lookup(var)
        .map(PathBuf::from)
        .or_else(|| lookup("HOME").map(|h| PathBuf::from(h).join(".aws").join(name)))?;
    std::fs::read_to_string(path).ok()
}

/// The `key = value` pairs of `[section]` in an INI text (the AWS shared
/// files' format: no nesting needed for the keys read here).
fn ini_section(text: &str, section: &str) -> Option<Vec<(String, String)>> {
    let mut inside = false;
    let mut found = false;
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = name.trim() == section;
            found |= inside;
            continue;
        }
        if inside {
            if let Some((k, v)) = line.split_once('=') {
                out.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
    }
    found.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_profile_of_the_shared_files() {
        let text = "[default]\naws_access_key_id = A\n\n[other]\n# note\naws_access_key_id=B\nregion = eu-west-1\n";
        assert_eq!(
            ini_section(text, "other").unwrap(),
            vec![
                ("aws_access_key_id".to_string(), "B".to_string()),
                ("region".to_string(), "eu-west-1".to_string())
            ]
        );
        assert!(ini_section(text, "missing").is_none());
    }

    #[tokio::test]
    async fn a_directory_destination_stores_lists_and_reads_back() {
        let root = tempfile::tempdir().unwrap();
        let url = format!("file://{}/out", root.path().display());
        let d = Destination::open(&url).unwrap();
        d.put(
            "rec-1",
            "segments/e1-p0/init.mp4",
            Bytes::from_static(b"init"),
        )
        .await
        .unwrap();
        d.put("rec-1", "manifest.json", Bytes::from_static(b"{}"))
            .await
            .unwrap();
        assert!(root
            .path()
            .join("out/rec-1/segments/e1-p0/init.mp4")
            .is_file());
        let listed = d.list("rec-1", "segments").await.unwrap();
        assert_eq!(listed, vec![("segments/e1-p0/init.mp4".to_string(), 4)]);
        assert_eq!(&d.get("rec-1", "manifest.json").await.unwrap()[..], b"{}");
        assert_eq!(
            d.object_url("rec-1", "recording.mp4"),
            format!("{url}/rec-1/recording.mp4")
        );
        d.delete("rec-1", "manifest.json").await.unwrap();
        d.delete("rec-1", "manifest.json").await.unwrap();
    }

    #[test]
    fn refuses_what_is_not_a_destination() {
        for bad in [
            "http://x/",
            "file://relative",
            "s3://A_B/x",
            "s3://bucket/../x",
        ] {
            assert!(Destination::open(bad).is_err(), "{bad}");
        }
    }
}
