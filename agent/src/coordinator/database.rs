//! Connections to PostgreSQL, for the lease and for the store: the URL as
//! libpq takes it (`postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=require`),
//! a deadline on connecting, TCP keep-alives, and TLS through rustls on ring
//! when the URL asks for it (`sslmode=require`; `prefer`, libpq's default,
//! uses TLS when the server offers it). The server's certificate is checked
//! against `ca` (a PEM file) or the system's roots.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::Client;

/// Where PostgreSQL is, and how to trust it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbTarget {
    /// The libpq-style URL (it may hold a password: never logged as is).
    pub url: String,
    /// CA certificates (PEM) that signed the server's certificate; `None`:
    /// the system's roots.
    pub ca: Option<PathBuf>,
}

/// The system's CA bundle on Debian (and Ubuntu, Alpine with ca-certificates).
const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Why a connection could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The database refused, or the URL is wrong (with its causes: "error
    /// performing TLS handshake" alone does not say the certificate's
    /// issuer is unknown).
    #[error("{}", with_causes(.0))]
    Db(#[from] tokio_postgres::Error),
    /// Nothing answered in time.
    #[error("the database did not answer within {0:?}")]
    Timeout(Duration),
    /// The CA file could not be used.
    #[error("store CA {path}: {reason}")]
    Ca {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
}

/// An error and its sources, `outer: inner: innermost`.
pub fn with_causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

fn roots(ca: Option<&Path>) -> Result<rustls::RootCertStore, ConnectError> {
    let path = ca.unwrap_or(Path::new(SYSTEM_ROOTS));
    let bad = |reason: String| ConnectError::Ca {
        path: path.display().to_string(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let mut store = rustls::RootCertStore::empty();
    use rustls::pki_types::pem::PemObject as _;
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| bad(format!("invalid pem: {e}")))?;
        // A bundle may hold a certificate rustls cannot use; the others do.
        let _ = store.add(cert);
    }
    if store.is_empty() {
        return Err(bad("no usable CA certificate".into()));
    }
    Ok(store)
}

/// Connects within `within`; the connection runs on a task of its own and
/// ends when the client is dropped.
pub async fn connect(target: &DbTarget, within: Duration) -> Result<Client, ConnectError> {
    let mut config: tokio_postgres::Config = target.url.parse()?;
    config
        .connect_timeout(within)
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(5))
        .application_name("recfleet-coordinator");
    use tokio_postgres::config::SslMode;
    // `require` needs the roots; `prefer` (the default) goes without TLS
    // when there are none to check the server with.
    let roots = match config.get_ssl_mode() {
        SslMode::Disable => None,
        SslMode::Require => Some(roots(target.ca.as_deref())?),
        _ => roots(target.ca.as_deref()).ok(),
    };
    let connecting = async {
        if let Some(roots) = roots {
            let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .map_err(|e| ConnectError::Ca {
                path: String::new(),
                reason: e.to_string(),
            })?
            .with_root_certificates(roots)
            .with_no_client_auth();
            let (client, connection) = config
                .connect(tokio_postgres_rustls::MakeRustlsConnect::new(tls))
                .await?;
            spawn_connection(connection);
            Ok(client)
        } else {
            let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
            spawn_connection(connection);
            Ok(client)
        }
    };
    tokio::time::timeout(within, connecting)
        .await
        .map_err(|_| ConnectError::Timeout(within))?
}

fn spawn_connection<S, T>(connection: tokio_postgres::Connection<S, T>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "database connection ended");
        }
    });
}
