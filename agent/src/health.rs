//! Health and metrics over HTTP for both roles: `/healthz` (the process
//! answers), `/readyz` (it can do its job; 503 with the reason when not),
//! `/metrics` (Prometheus text), and readiness to systemd (sd_notify).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use crate::http::{self, Response};

/// Content type of the Prometheus text format.
pub const PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What a role answers to probes.
pub trait Probe: Send + Sync + 'static {
    /// `Ok` when ready, else why not.
    fn ready(&self) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + '_>>;
    /// The metrics text, if available.
    fn metrics(&self) -> Pin<Box<dyn Future<Output = Option<String>> + Send + '_>>;
}

/// Serves the probe endpoints on `addr`.
pub async fn serve(addr: SocketAddr, probe: Arc<dyn Probe>) -> std::io::Result<SocketAddr> {
    let (bound, _task) = http::spawn(addr, move |path: String| {
        let probe = probe.clone();
        async move {
            match path.as_str() {
                "/healthz" => Response::text(200, "ok\n"),
                "/readyz" => match probe.ready().await {
                    Ok(()) => Response::text(200, "ready\n"),
                    Err(why) => Response::text(503, format!("not ready: {why}\n")),
                },
                "/metrics" => match probe.metrics().await {
                    Some(text) => Response::ok(PROMETHEUS, text),
                    None => Response::text(503, "metrics not available yet\n"),
                },
                _ => Response::text(404, "endpoints: /healthz /readyz /metrics\n"),
            }
        }
    })
    .await?;
    tracing::info!(addr = %bound, "health and metrics endpoint");
    Ok(bound)
}

/// Tells systemd the service is ready (a no-op without NOTIFY_SOCKET).
pub fn notify_ready() {
    if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}
