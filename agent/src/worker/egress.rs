//! The egress proxy of one part. Chromium sends every request of the page
//! through it (`--proxy-server`, loopback included): navigations, redirects,
//! subresources, fetches and WebSockets. The proxy does the DNS resolution
//! itself, checks the host and every address against the coordinator's URL
//! policy, and connects only to an address it checked, so a name that
//! resolves (or re-resolves) to an internal address gets nowhere.
//!
//! A refused request is answered 403 with the reason and kept in the
//! part's [`BlockLog`]; the part's monitor turns it into a `browser.blocked`
//! event, a page log line, and the reason of a page that did not load.
//!
//! WebRTC media does not go through an HTTP proxy: it is sent where the
//! page's signalling says, which only the network can stop
//! (docs/operations.md, "Egress").

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use recfleet_protocol::egress::UrlPolicy;
use recfleet_protocol::now_ms;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

/// Connections from the browser served at once (Chromium opens at most 32
/// per proxy; the rest are headroom). More wait in the kernel's backlog.
const CONNECTIONS: usize = 128;
/// Time for the browser to send a request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// Time for a name to resolve.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);
/// Time for a TCP connection to an allowed address.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time for a plain-HTTP origin to answer with its headers (long polls
/// included).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(120);
/// Refusals kept for the monitor between two probes; more are counted.
const UNREAD_MAX: usize = 32;
/// Refusals logged one by one per part; then every hundredth.
const LOGGED: u64 = 20;

/// One refused request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocked {
    /// Wall clock, ms.
    pub at: u64,
    /// What the page asked for: `host:port`, or the URL of a plain-HTTP
    /// request.
    pub target: String,
    /// Why it was refused.
    pub why: String,
}

/// The refusals of one part: the latest ones not yet read, the last one,
/// and how many in all. Bounded whatever the page does.
#[derive(Debug, Default)]
pub struct BlockLog(Mutex<Blocks>);

#[derive(Debug, Default)]
struct Blocks {
    total: u64,
    unread: VecDeque<Blocked>,
    unread_dropped: u64,
    last: Option<Blocked>,
}

impl BlockLog {
    fn lock(&self) -> std::sync::MutexGuard<'_, Blocks> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps one refusal.
    pub fn record(&self, target: String, why: String) {
        let b = Blocked {
            at: now_ms(),
            target,
            why,
        };
        let mut g = self.lock();
        g.total += 1;
        if g.total <= LOGGED || g.total.is_multiple_of(100) {
            tracing::warn!(target = %b.target, why = %b.why, total = g.total, "the page's request is refused by the egress policy");
        }
        if g.unread.len() == UNREAD_MAX {
            g.unread.pop_front();
            g.unread_dropped += 1;
        }
        g.unread.push_back(b.clone());
        g.last = Some(b);
    }

    /// The refusals since the last call, and how many more there were.
    pub fn take_unread(&self) -> (Vec<Blocked>, u64) {
        let mut g = self.lock();
        let dropped = std::mem::take(&mut g.unread_dropped);
        (g.unread.drain(..).collect(), dropped)
    }

    /// The last refusal, if any.
    pub fn last(&self) -> Option<Blocked> {
        self.lock().last.clone()
    }

    /// Refusals in all.
    pub fn total(&self) -> u64 {
        self.lock().total
    }
}

/// What the part knows of its proxy: where it listens, what it refused.
#[derive(Debug, Clone)]
pub struct EgressGate {
    /// Its loopback port.
    pub port: u16,
    /// Its refusals.
    pub log: Arc<BlockLog>,
}

impl EgressGate {
    /// Chromium's flags that send every request of the page through it.
    /// `<-loopback>` takes away Chromium's own exception for loopback.
    pub fn chromium_args(&self) -> [String; 2] {
        [
            format!("--proxy-server=http://127.0.0.1:{}", self.port),
            "--proxy-bypass-list=<-loopback>".to_string(),
        ]
    }

    /// The reason a page did not load, if the policy is why.
    pub fn blocked_reason(&self) -> Option<String> {
        self.log
            .last()
            .map(|b| format!("blocked by the egress policy: {}", b.why))
    }
}

/// A running proxy; it stops (with every tunnel it opened) when dropped.
#[derive(Debug)]
pub struct EgressProxy {
    gate: EgressGate,
    task: tokio::task::JoinHandle<()>,
    _closed: watch::Sender<()>,
}

impl Drop for EgressProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Shared {
    policy: Arc<UrlPolicy>,
    log: Arc<BlockLog>,
    closed: watch::Receiver<()>,
}

impl EgressProxy {
    /// Starts a proxy on a free loopback port, enforcing `policy`.
    pub async fn start(policy: Arc<UrlPolicy>) -> std::io::Result<EgressProxy> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let port = listener.local_addr()?.port();
        let log = Arc::new(BlockLog::default());
        let (closed_tx, closed) = watch::channel(());
        let shared = Arc::new(Shared {
            policy,
            log: log.clone(),
            closed,
        });
        let task = tokio::spawn(serve(listener, shared));
        Ok(EgressProxy {
            gate: EgressGate { port, log },
            task,
            _closed: closed_tx,
        })
    }

    /// What the part needs of it.
    pub fn gate(&self) -> EgressGate {
        self.gate.clone()
    }
}

async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let slots = Arc::new(Semaphore::new(CONNECTIONS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "the egress proxy cannot accept; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let shared = shared.clone();
        let mut closed = shared.closed.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service = hyper::service::service_fn(move |req| handle(req, shared.clone()));
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            tokio::select! {
                r = conn => if let Err(e) = r {
                    tracing::debug!(error = %e, "egress proxy connection ended");
                },
                _ = closed.changed() => {}
            }
        });
    }
}

type Body = BoxBody<Bytes, hyper::Error>;

fn text(status: StatusCode, body: String) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body)).map_err(|e| match e {}).boxed());
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Why a destination was not reached.
enum OpenError {
    /// The policy refuses it.
    Refused(String),
    /// It is allowed but did not answer.
    Failed(String),
}

async fn handle(req: Request<Incoming>, shared: Arc<Shared>) -> Result<Response<Body>, Infallible> {
    if req.method() == Method::CONNECT {
        return Ok(tunnel(req, shared).await);
    }
    Ok(forward(req, shared).await)
}

/// CONNECT host:port (https, wss, ws): a checked connection, then bytes
/// both ways until either side closes or the proxy stops.
async fn tunnel(req: Request<Incoming>, shared: Arc<Shared>) -> Response<Body> {
    let Some(authority) = req.uri().authority().cloned() else {
        return text(StatusCode::BAD_REQUEST, "CONNECT needs host:port\n".into());
    };
    let (host, port) = (
        authority.host().to_string(),
        authority.port_u16().unwrap_or(443),
    );
    let target = format!("{host}:{port}");
    let mut upstream = match open(&shared, &host, port).await {
        Ok(s) => s,
        Err(e) => return refusal(&shared, target, e),
    };
    let mut closed = shared.closed.clone();
    tokio::spawn(async move {
        let upgraded = tokio::select! {
            u = hyper::upgrade::on(req) => u,
            _ = closed.changed() => return,
        };
        match upgraded {
            Ok(upgraded) => {
                let mut browser = TokioIo::new(upgraded);
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut browser, &mut upstream) => {}
                    _ = closed.changed() => {}
                }
            }
            Err(e) => tracing::debug!(error = %e, %target, "the tunnel was not taken up"),
        }
    });
    Response::new(Full::new(Bytes::new()).map_err(|e| match e {}).boxed())
}

/// A plain-HTTP request in absolute form: sent on a checked connection in
/// origin form, its answer passed back.
async fn forward(req: Request<Incoming>, shared: Arc<Shared>) -> Response<Body> {
    let uri = req.uri().clone();
    let (Some("http"), Some(host)) = (uri.scheme_str(), uri.host()) else {
        return text(
            StatusCode::BAD_REQUEST,
            "this is a proxy: send http://host/path or CONNECT host:port\n".into(),
        );
    };
    let host = host.to_string();
    let port = uri.port_u16().unwrap_or(80);
    let target = format!("http://{host}:{port}{}", uri.path());
    let upstream = match open(&shared, &host, port).await {
        Ok(s) => s,
        Err(e) => return refusal(&shared, target, e),
    };
    let (mut sender, conn) =
        match hyper::client::conn::http1::handshake(TokioIo::new(upstream)).await {
            Ok(x) => x,
            Err(e) => return text(StatusCode::BAD_GATEWAY, format!("{target}: {e}\n")),
        };
    let mut closed = shared.closed.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = conn => {}
            _ = closed.changed() => {}
        }
    });
    let (mut parts, body) = req.into_parts();
    parts.uri = uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .parse()
        .unwrap_or_else(|_| hyper::Uri::from_static("/"));
    parts.headers.remove("proxy-connection");
    parts.headers.remove("proxy-authorization");
    match tokio::time::timeout(
        RESPONSE_TIMEOUT,
        sender.send_request(Request::from_parts(parts, body)),
    )
    .await
    {
        Ok(Ok(resp)) => resp.map(|b| b.boxed()),
        Ok(Err(e)) => text(StatusCode::BAD_GATEWAY, format!("{target}: {e}\n")),
        Err(_) => text(
            StatusCode::GATEWAY_TIMEOUT,
            format!(
                "{target} did not answer within {} s\n",
                RESPONSE_TIMEOUT.as_secs()
            ),
        ),
    }
}

fn refusal(shared: &Shared, target: String, e: OpenError) -> Response<Body> {
    match e {
        OpenError::Refused(why) => {
            let body = format!("recfleet: {target} is refused: {why}\n");
            shared.log.record(target, why);
            text(StatusCode::FORBIDDEN, body)
        }
        OpenError::Failed(why) => text(StatusCode::BAD_GATEWAY, format!("{target}: {why}\n")),
    }
}

/// Resolves `host`, keeps only the addresses the policy allows, and
/// connects to the first that answers.
async fn open(shared: &Shared, host: &str, port: u16) -> Result<TcpStream, OpenError> {
    let policy = &shared.policy;
    policy.check_host(host).map_err(OpenError::Refused)?;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => {
            match tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((bare, port))).await
            {
                Err(_) => {
                    return Err(OpenError::Failed(format!(
                        "{host} did not resolve within {} s",
                        RESOLVE_TIMEOUT.as_secs()
                    )))
                }
                Ok(Err(e)) => {
                    return Err(OpenError::Failed(format!("{host} does not resolve: {e}")))
                }
                Ok(Ok(a)) => a.collect(),
            }
        }
    };
    let mut refused = None;
    let allowed: Vec<SocketAddr> = addrs
        .into_iter()
        .filter(|a| match check(policy, host, a.ip()) {
            Ok(()) => true,
            Err(why) => {
                refused.get_or_insert(why);
                false
            }
        })
        .collect();
    if allowed.is_empty() {
        return Err(OpenError::Refused(
            refused.unwrap_or_else(|| format!("{host} has no address")),
        ));
    }
    let mut last = String::new();
    for a in allowed {
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(a)).await {
            Ok(Ok(s)) => return Ok(s),
            Ok(Err(e)) => last = format!("cannot connect to {a}: {e}"),
            Err(_) => last = format!("{a} did not accept within {} s", CONNECT_TIMEOUT.as_secs()),
        }
    }
    Err(OpenError::Failed(last))
}

/// The policy's verdict, and then: never this machine's own addresses
/// (its metrics port, a neighbour's ChromeDriver), unless admitted by name
/// or range on purpose.
fn check(policy: &UrlPolicy, host: &str, ip: IpAddr) -> Result<(), String> {
    policy.check_addr(host, ip)?;
    if !policy.admits(host, ip) && is_own_address(ip) {
        return Err(format!(
            "{ip} is an address of this worker, refused by policy"
        ));
    }
    Ok(())
}

/// Whether `ip` is assigned to this machine: only then can a socket be
/// bound to it.
fn is_own_address(ip: IpAddr) -> bool {
    std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_block_log_is_bounded_and_read_once() {
        let log = BlockLog::default();
        for i in 0..100 {
            log.record(format!("10.0.0.{i}:80"), "private".into());
        }
        let (unread, dropped) = log.take_unread();
        assert_eq!(unread.len(), UNREAD_MAX);
        assert_eq!(dropped, 100 - UNREAD_MAX as u64);
        assert_eq!(unread.last().unwrap().target, "10.0.0.99:80");
        assert_eq!(log.take_unread(), (Vec::new(), 0));
        assert_eq!(log.total(), 100);
        assert_eq!(log.last().unwrap().target, "10.0.0.99:80");
    }

    /// CONNECT to an allowed address becomes a byte tunnel; to a refused
    /// one, a 403 with the reason, kept in the log; a plain-HTTP request
    /// is forwarded in origin form.
    #[tokio::test]
    async fn the_proxy_tunnels_forwards_and_refuses() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        // An echo server, then an HTTP/1.0 one-shot server, on loopback.
        let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let echo_port = echo.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut s, _) = echo.accept().await.unwrap();
            let mut buf = [0u8; 64];
            let n = s.read(&mut buf).await.unwrap();
            s.write_all(&buf[..n]).await.unwrap();
        });
        let web = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let web_port = web.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut s, _) = web.accept().await.unwrap();
            let mut buf = vec![0u8; 1024];
            let n = s.read(&mut buf).await.unwrap();
            let head = String::from_utf8_lossy(&buf[..n]).to_string();
            let line = head.lines().next().unwrap_or("").to_string();
            let body = format!("saw {line}");
            s.write_all(
                format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            )
            .await
            .unwrap();
        });
        let proxy = EgressProxy::start(Arc::new(UrlPolicy::loopback_allowed()))
            .await
            .unwrap();
        let gate = proxy.gate();
        let ask = |req: String| async move {
            let mut c = TcpStream::connect(("127.0.0.1", gate.port)).await.unwrap();
            c.write_all(req.as_bytes()).await.unwrap();
            c
        };
        // A tunnel: the answer, then our bytes echoed through it.
        let mut c = ask(format!(
            "CONNECT 127.0.0.1:{echo_port} HTTP/1.1\r\nHost: 127.0.0.1:{echo_port}\r\n\r\n"
        ))
        .await;
        let mut buf = vec![0u8; 256];
        let n = c.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        c.write_all(b"ping through").await.unwrap();
        let n = c.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"ping through");
        // Forwarded in origin form.
        let mut c = ask(format!(
            "GET http://127.0.0.1:{web_port}/a?b=1 HTTP/1.1\r\nHost: 127.0.0.1:{web_port}\r\nProxy-Connection: keep-alive\r\n\r\n"
        ))
        .await;
        let mut text = String::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), c.read_to_string(&mut text)).await;
        assert!(text.contains("saw GET /a?b=1 HTTP/1.1"), "{text}");
        // Refused: 10.0.0.1 is private (never connected to).
        let mut c = ask("CONNECT 10.0.0.1:443 HTTP/1.1\r\nHost: 10.0.0.1:443\r\n\r\n".into()).await;
        let n = c.read(&mut buf).await.unwrap();
        let answer = String::from_utf8_lossy(&buf[..n]).to_string();
        assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
        let (blocked, _) = proxy.gate().log.take_unread();
        assert_eq!(blocked.len(), 1);
        assert_eq!(blocked[0].target, "10.0.0.1:443");
        assert!(blocked[0].why.contains("private"), "{:?}", blocked[0]);
    }

    #[test]
    fn this_machines_addresses_are_its_own() {
        assert!(is_own_address("127.0.0.1".parse().unwrap()));
        // TEST-NET-3: never assigned to a machine.
        assert!(!is_own_address("203.0.113.9".parse().unwrap()));
    }
}
