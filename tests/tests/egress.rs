//! The egress policy where the browser resolves: a page that fetches, or
//! redirects to, a refused address is blocked and reported; a name that
//! resolves to a refused address is blocked; an internal host admitted on
//! purpose works; the coordinator refuses internal URLs at the door.
//!
//! Everything happens on addresses of the test's own: the worker and its
//! browser run in a network namespace the test made, whose names come from
//! the namespace's own hosts file (`class.test` and `evil.test` both
//! resolve to the host's side of the pair, 10.231.11.1, a private
//! address). Only `class.test` is admitted, by name. A refused request
//! that leaked would land on the test's own server, which counts it.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use recfleet_protocol::manifest::SegmentEndReason;
use recfleet_protocol::spec::{RecordingSpec, Viewport};
use recfleet_protocol::{ConsoleRequest, ConsoleResponse, RecordingId, TrackEvent};
use recfleet_testkit::netns::Netns;
use recfleet_testkit::{FleetOptions, TestFleet};
use recfleet_tests::recordings::wait_completed;

const NET: u8 = 11;

/// The class server of the test: the page, an allowed `/ok`, a redirect to
/// a refused name, and `/secret`, which nothing may ever reach.
struct ClassServer {
    port: u16,
    secret_hits: Arc<AtomicU64>,
}

fn page(host: IpAddr) -> String {
    format!(
        r#"<!doctype html><html><body style="margin:0;background:#123;color:#fff;font:48px sans-serif">
<div id="t">egress</div>
<script>
const P = location.port;
const tries = {{
  ok: `http://class.test:${{P}}/ok`,
  name: `http://evil.test:${{P}}/secret`,
  literal: `http://{host}:${{P}}/secret`,
  metadata: 'http://169.254.169.254/latest/meta-data/',
}};
for (const [what, url] of Object.entries(tries)) {{
  fetch(url)
    .then(r => r.text().then(t => window.recfleet.emit('egress.fetch', {{ what, status: r.status, body: t.slice(0, 40) }})))
    .catch(e => window.recfleet.emit('egress.fetch', {{ what, error: String(e) }}));
}}
const ws = new WebSocket(`ws://evil.test:${{P}}/secret`);
ws.onerror = () => window.recfleet.emit('egress.ws', {{ error: true }});
let n = 0;
setInterval(() => {{ document.getElementById('t').textContent = 'egress ' + (n++); }}, 200);
</script></body></html>"#
    )
}

impl ClassServer {
    fn start(host: IpAddr) -> ClassServer {
        let listener = TcpListener::bind(SocketAddr::new(host, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let secret_hits = Arc::new(AtomicU64::new(0));
        let hits = secret_hits.clone();
        let html = page(host);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (hits, html) = (hits.clone(), html.clone());
                std::thread::spawn(move || answer(stream, port, &hits, &html));
            }
        });
        ClassServer { port, secret_hits }
    }
}

/// One request per connection (Connection: close): the test needs nothing
/// more of its server.
fn answer(mut s: std::net::TcpStream, port: u16, hits: &AtomicU64, html: &str) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 2048];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16 << 10 {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let head = String::from_utf8_lossy(&buf);
    let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
    let (status, extra, body) = if path.starts_with("/secret") {
        hits.fetch_add(1, Ordering::SeqCst);
        ("200 OK", String::new(), "secret".to_string())
    } else if path == "/ok" {
        ("200 OK", String::new(), "ok".to_string())
    } else if path == "/page.html" {
        (
            "200 OK",
            "Content-Type: text/html; charset=utf-8\r\n".to_string(),
            html.to_string(),
        )
    } else if path == "/redirect" {
        (
            "302 Found",
            format!("Location: http://evil.test:{port}/secret\r\n"),
            String::new(),
        )
    } else {
        ("404 Not Found", String::new(), String::new())
    };
    let _ = s.write_all(
        format!(
            "HTTP/1.1 {status}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
}

fn spec(id: &RecordingId, url: String, secs: u32) -> RecordingSpec {
    let mut spec = RecordingSpec::new(id.clone(), url);
    spec.viewport = Viewport {
        width: 640,
        height: 360,
    };
    spec.audio = false;
    spec.stop.max_duration_secs = Some(secs);
    spec
}

fn events(fleet: &TestFleet, id: &RecordingId) -> Vec<(String, serde_json::Value)> {
    let text = std::fs::read_to_string(fleet.recordings().join(id.as_str()).join("events.jsonl"))
        .expect("events.jsonl");
    text.lines()
        .map(|l| serde_json::from_str::<TrackEvent>(l).expect("an event per line"))
        .map(|e| (e.kind, serde_json::from_str(&e.data).unwrap()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_a_page_reaches_only_what_the_policy_allows_where_the_browser_resolves() {
    let net = Netns::create(NET);
    let host = net.host_ip();
    net.hosts(&[("class.test", host), ("evil.test", host)]);
    let server = ClassServer::start(host);
    let mut fleet = TestFleet::start_with(FleetOptions {
        stitch: false,
        listen_ip: [0, 0, 0, 0].into(),
        // Only the class server's name is admitted: the same address by
        // another name, or as a literal, is a private address like any.
        coordinator_env: vec![("RECFLEET_ALLOW_INTERNAL".into(), "class.test".into())],
        ..Default::default()
    })
    .await
    .unwrap();
    let coordinator = SocketAddr::new(host, fleet.addr.port());
    fleet
        .add_worker_in_netns(1, 2, &net.name, coordinator)
        .unwrap();
    fleet.wait_workers(1, 30).await.unwrap();

    // At the door: internal URLs are refused before any browser starts.
    for url in [
        "http://localhost:9/".to_string(),
        format!("http://{host}:{}/page.html", server.port),
        "http://[::ffff:169.254.169.254]/".to_string(),
        "http://kubernetes.default.svc/".to_string(),
    ] {
        let id = RecordingId::new("door").unwrap();
        match fleet
            .request(ConsoleRequest::StartRecording(spec(&id, url.clone(), 10)))
            .await
            .unwrap()
        {
            ConsoleResponse::Error(e) => {
                let all = format!("{} {}", e.message, e.details.join(" "));
                assert!(all.contains("refused by policy"), "{url}: {all}");
            }
            other => panic!("{url} was accepted: {other:?}"),
        }
    }

    // The page loads from the admitted name; its fetches of a refused name,
    // a refused literal, the metadata address and a WebSocket are blocked.
    let page = RecordingId::new("page").unwrap();
    let url = format!("http://class.test:{}/page.html", server.port);
    fleet
        .request(ConsoleRequest::StartRecording(spec(&page, url, 10)))
        .await
        .unwrap();
    let m = wait_completed(&mut fleet, &page, 90).await;
    assert!(m.segments[0].first_frame_at.is_some(), "{m:?}");
    let track = events(&fleet, &page);
    let fetched: Vec<&serde_json::Value> = track
        .iter()
        .filter(|(k, _)| k == "egress.fetch")
        .map(|(_, v)| v)
        .collect();
    println!("fetches: {fetched:?}");
    let ok = fetched
        .iter()
        .find(|v| v["what"] == "ok")
        .expect("the allowed fetch ran");
    assert_eq!(ok["body"], "ok", "{ok}");
    let blocked: Vec<String> = track
        .iter()
        .filter(|(k, _)| k == "browser.blocked")
        .map(|(_, v)| format!("{} {}", v["target"], v["why"]))
        .collect();
    println!("blocked: {blocked:#?}");
    for (what, needle) in [
        (
            "a name resolving to a private address",
            format!("evil.test resolves to {host}"),
        ),
        ("a private literal", format!("{host} is a private address")),
        (
            "the metadata address",
            "169.254.169.254 is a link-local".to_string(),
        ),
    ] {
        assert!(
            blocked.iter().any(|b| b.contains(&needle)),
            "{what} ({needle}) is not among the blocked: {blocked:#?}"
        );
    }
    // The WebSocket went the same way (CONNECT to evil.test).
    assert!(
        blocked
            .iter()
            .any(|b| b.contains(&format!("evil.test:{}", server.port)) && !b.contains("http://")),
        "{blocked:#?}"
    );

    // A redirect from the admitted page to a refused name: the page does
    // not load, and the segment says why.
    let redirect = RecordingId::new("redirect").unwrap();
    let url = format!("http://class.test:{}/redirect", server.port);
    fleet
        .request(ConsoleRequest::StartRecording(spec(&redirect, url, 60)))
        .await
        .unwrap();
    let d = fleet
        .wait_for(&redirect, 60, |d| {
            d.info.state.is_terminal()
                || d.manifest
                    .segments
                    .iter()
                    .any(|s| matches!(s.end_reason, Some(SegmentEndReason::StartFailed { .. })))
        })
        .await
        .unwrap();
    let reason = d
        .manifest
        .segments
        .iter()
        .find_map(|s| match &s.end_reason {
            Some(SegmentEndReason::StartFailed { reason }) => Some(reason.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no failed start: {:?}", d.manifest.segments));
    println!("redirect: {reason}");
    assert!(
        reason.contains("blocked by the egress policy")
            && reason.contains(&format!("evil.test resolves to {host}")),
        "{reason}"
    );
    let _ = fleet
        .request(ConsoleRequest::StopRecording {
            id: redirect.clone(),
        })
        .await;

    // Nothing refused ever reached the class server.
    assert_eq!(server.secret_hits.load(Ordering::SeqCst), 0);
    fleet.shutdown().await;
}
