//! The agent's few HTTP endpoints (health, metrics, the demo page) on
//! hyper's HTTP/1.1 server: requests split over many writes, pipelined
//! requests, keep-alive and HEAD work as any client expects, every
//! connection has a deadline for its request headers, and an accept error
//! (out of file descriptors) is logged and retried instead of ending the
//! listener, which would get a healthy pod restarted by its probes.
//! (hyper rather than our own parser: the hand-written one answered only the
//! first of pipelined requests and 404 to a request split over two writes.)

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// A response: status, content type, body.
#[derive(Debug, Clone)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// Content-Type.
    pub content_type: &'static str,
    /// The body (a page, a metric text or a media file).
    pub body: Bytes,
}

impl Response {
    /// 200 with `body`.
    pub fn ok(content_type: &'static str, body: impl Into<Bytes>) -> Self {
        Response {
            status: 200,
            content_type,
            body: body.into(),
        }
    }
    /// A plain-text response with `status`.
    pub fn text(status: u16, body: impl Into<Bytes>) -> Self {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
        }
    }
}

/// How long a client may take to send a request's headers (and, on a
/// kept-alive connection, to start the next request).
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once; more wait in the kernel's backlog.
const CONNECTIONS: usize = 256;
/// After an accept error, wait this long before the next accept.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// Serves `handler(path)` on `listener` until the task is dropped.
pub async fn serve<F, Fut>(listener: TcpListener, handler: F)
where
    F: Fn(String) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response> + Send + 'static,
{
    let handler = Arc::new(handler);
    let slots = Arc::new(Semaphore::new(CONNECTIONS));
    let mut failed_in_a_row = 0u32;
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => {
                failed_in_a_row = 0;
                stream
            }
            Err(e) => {
                failed_in_a_row += 1;
                // Once per burst: a full fd table fails every accept.
                if failed_in_a_row == 1 {
                    tracing::warn!(error = %e, "cannot accept an HTTP connection; retrying");
                }
                tokio::time::sleep(ACCEPT_RETRY).await;
                continue;
            }
        };
        let handler = handler.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let handler = handler.clone();
                async move { Ok::<_, Infallible>(answer(&*handler, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .keep_alive(true)
                .pipeline_flush(true)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "HTTP connection ended with an error");
            }
            drop(permit);
        });
    }
}

/// GET and HEAD are answered by `handler`; anything else is 405.
async fn answer<F, Fut>(handler: &F, req: Request<Incoming>) -> hyper::Response<Full<Bytes>>
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = Response>,
{
    let head = req.method() == Method::HEAD;
    let resp = if req.method() == Method::GET || head {
        handler(req.uri().path().to_string()).await
    } else {
        Response::text(405, "only GET and HEAD\n")
    };
    let len = resp.body.len();
    let body = if head { Bytes::new() } else { resp.body };
    let mut out = hyper::Response::new(Full::new(body));
    *out.status_mut() =
        StatusCode::from_u16(resp.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = out.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(resp.content_type));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if resp.status == 405 {
        h.insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
    }
    if head {
        // HEAD says what GET would send.
        h.insert(hyper::header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    out
}

/// Binds `addr` and serves `handler` in a task; returns the bound address.
pub async fn spawn<F, Fut>(
    addr: SocketAddr,
    handler: F,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)>
where
    F: Fn(String) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response> + Send + 'static,
{
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    Ok((bound, tokio::spawn(serve(listener, handler))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    async fn server() -> SocketAddr {
        let (addr, _task) = spawn("127.0.0.1:0".parse().unwrap(), |path: String| async move {
            match path.as_str() {
                "/healthz" => Response::ok("text/plain", "ok\n"),
                _ => Response::text(404, "not found\n"),
            }
        })
        .await
        .unwrap();
        addr
    }

    /// Writes `parts` one by one (a pause between them), then reads until
    /// the server closes or `want` responses arrived.
    async fn exchange(addr: SocketAddr, parts: &[&str], want: usize) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        for p in parts {
            s.write_all(p.as_bytes()).await.unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut got = String::new();
        let mut buf = [0u8; 4096];
        while got.matches("HTTP/1.1 ").count() < want || !got.ends_with('\n') {
            let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
                .await
                .expect("an answer within 5 s")
                .unwrap();
            if n == 0 {
                break;
            }
            got.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        got
    }

    #[tokio::test]
    async fn a_request_split_over_writes_is_answered() {
        let addr = server().await;
        let got = exchange(
            addr,
            &["GET /hea", "lthz HTTP/1.1\r\nHost: x\r", "\n\r\n"],
            1,
        )
        .await;
        assert!(got.starts_with("HTTP/1.1 200 OK"), "{got}");
        assert!(got.ends_with("ok\n"), "{got}");
    }

    #[tokio::test]
    async fn pipelined_requests_are_all_answered_in_order() {
        let addr = server().await;
        let two = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\n\r\n";
        let got = exchange(addr, &[two], 2).await;
        let first = got.find("200 OK").expect(&got);
        let second = got.find("404 Not Found").expect(&got);
        assert!(first < second, "{got}");
    }

    #[tokio::test]
    async fn head_has_no_body_and_other_methods_are_refused() {
        let addr = server().await;
        let got = exchange(addr, &["HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n"], 1).await;
        assert!(got.starts_with("HTTP/1.1 200 OK"), "{got}");
        assert!(got.contains("content-length: 3"), "{got}");
        assert!(!got.contains("ok\n"), "{got}");
        let got = exchange(addr, &["DELETE /healthz HTTP/1.1\r\nHost: x\r\n\r\n"], 1).await;
        assert!(got.starts_with("HTTP/1.1 405"), "{got}");
        assert!(got.contains("allow: GET, HEAD"), "{got}");
    }

    #[tokio::test]
    async fn a_client_that_sends_nothing_is_dropped_after_the_header_deadline() {
        let addr = server().await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /healthz HTT").await.unwrap();
        let mut buf = [0u8; 1024];
        let n = tokio::time::timeout(HEADER_TIMEOUT + Duration::from_secs(3), s.read(&mut buf))
            .await
            .expect("closed by the server");
        // Closed (0) or a 408 before closing.
        let text = String::from_utf8_lossy(&buf[..n.unwrap_or(0)]).to_string();
        assert!(text.is_empty() || text.contains("408"), "{text}");
    }
}
