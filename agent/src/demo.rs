//! Serves the demo class page (agent/assets/demo/class.html, built into the
//! binary) on loopback, for the local fleet, the tests and benchmarks.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// The page itself.
pub const CLASS_HTML: &str = include_str!("../assets/demo/class.html");

/// A running demo page server.
#[derive(Debug)]
pub struct DemoServer {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl DemoServer {
    /// Serves on `addr` (use port 0 for any free port).
    pub async fn start(addr: SocketAddr) -> std::io::Result<DemoServer> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 8192];
                    let n = conn.read(&mut buf).await.unwrap_or(0);
                    let request = String::from_utf8_lossy(&buf[..n]);
                    let path = request.split_whitespace().nth(1).unwrap_or("/");
                    let path = path.split('?').next().unwrap_or("/");
                    let response = if path == "/" || path == "/class.html" {
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n{CLASS_HTML}",
                            CLASS_HTML.len()
                        )
                    } else {
                        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                            .to_string()
                    };
                    let _ = conn.write_all(response.as_bytes()).await;
                    let _ = conn.shutdown().await;
                });
            }
        });
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
