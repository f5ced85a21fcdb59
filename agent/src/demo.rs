//! Serves the demo class page (agent/assets/demo/class.html, built into the
//! binary) on loopback, for the local fleet, the tests and benchmarks.

use std::net::SocketAddr;

use crate::http::{self, Response};

/// The page itself.
pub const CLASS_HTML: &str = include_str!("../assets/demo/class.html");
/// A page that goes wrong on a schedule, for media health: see its header.
pub const HEALTH_HTML: &str = include_str!("../assets/demo/health.html");
/// A page whose picture and events go together, for the event track: see
/// its header.
pub const EVENTS_HTML: &str = include_str!("../assets/demo/events.html");

/// A running demo page server.
#[derive(Debug)]
pub struct DemoServer {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl DemoServer {
    /// Serves on `addr` (use port 0 for any free port).
    pub async fn start(addr: SocketAddr) -> std::io::Result<DemoServer> {
        let (addr, task) = http::spawn(addr, |path: String| async move {
            if path == "/" || path == "/class.html" {
                Response::ok("text/html; charset=utf-8", CLASS_HTML)
            } else if path == "/health.html" {
                Response::ok("text/html; charset=utf-8", HEALTH_HTML)
            } else if path == "/events.html" {
                Response::ok("text/html; charset=utf-8", EVENTS_HTML)
            } else {
                Response::text(404, "not found\n")
            }
        })
        .await?;
        Ok(DemoServer { addr, task })
    }

    /// The page's URL with a query string (e.g. `tone=660&bg=red&end=20`).
    pub fn url(&self, query: &str) -> String {
        if query.is_empty() {
            format!("http://{}/class.html", self.addr)
        } else {
            format!("http://{}/class.html?{query}", self.addr)
        }
    }

    /// The media health test page's URL (e.g. `silent=10&frozen=10`).
    pub fn health_url(&self, query: &str) -> String {
        format!("http://{}/health.html?{query}", self.addr)
    }

    /// The event track test page's URL (e.g. `flash=1500&rtc=1`).
    pub fn events_url(&self, query: &str) -> String {
        format!("http://{}/events.html?{query}", self.addr)
    }

    /// The address served on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for DemoServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
