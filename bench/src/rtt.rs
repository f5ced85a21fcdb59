//! Benchmark 1, the control round trip: an operator request through the coordinator to a
//! worker and back, against a bare quinn echo with the same TLS and framing,
//! Erlang distribution between two BEAM nodes, and HTTP/1.1 keep-alive with
//! JSON bodies. Every peer runs as its own process on loopback.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use recfleet_protocol::quic::{self, TransportSettings};
use recfleet_protocol::{ConsoleRequest, ConsoleResponse, OpenStream, WorkerName};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use recfleet_testkit::Pki;

use crate::harness::start_fleet;
use crate::stats::Summary;
use crate::Opts;

/// Payload of every round trip, bytes (the same for every system).
pub const PAYLOAD: usize = 100;

type OpFuture = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;
type Op = Arc<dyn Fn() -> OpFuture + Send + Sync>;

/// One system's figures.
#[derive(Debug, Clone)]
pub struct Figures {
    /// Sequential round-trip latency, µs.
    pub latency: Summary,
    /// Round trips per second with `conc` in flight.
    pub msgs_per_s: f64,
}

async fn sequential(op: &Op, warmup: usize, n: usize) -> anyhow::Result<Summary> {
    for _ in 0..warmup {
        op().await?;
    }
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        op().await?;
        samples.push(t.elapsed().as_secs_f64() * 1e6);
    }
    Ok(Summary::of(&samples))
}

/// Round trips per second with one op per concurrent client, for `dur`.
async fn throughput(ops: Vec<Op>, dur: Duration) -> anyhow::Result<f64> {
    let start = Instant::now();
    let deadline = start + dur;
    let tasks: Vec<_> = ops
        .into_iter()
        .map(|op| {
            tokio::spawn(async move {
                let mut n = 0u64;
                while Instant::now() < deadline {
                    op().await?;
                    n += 1;
                }
                anyhow::Ok(n)
            })
        })
        .collect();
    let mut total = 0;
    for t in tasks {
        total += t.await??;
    }
    Ok(total as f64 / start.elapsed().as_secs_f64())
}

async fn measure(
    opts: &Opts,
    seq_op: Op,
    conc_ops: impl Future<Output = anyhow::Result<Vec<Op>>>,
) -> anyhow::Result<Figures> {
    let latency = sequential(&seq_op, opts.rtt_warmup(), opts.rtt_samples()).await?;
    let msgs_per_s = throughput(conc_ops.await?, opts.rtt_duration()).await?;
    Ok(Figures {
        latency,
        msgs_per_s,
    })
}

/// Concurrent clients for the throughput runs.
pub const CONCURRENCY: usize = 32;

fn console_op(conn: quinn::Connection, req: ConsoleRequest) -> Op {
    Arc::new(move || {
        let (conn, req) = (conn.clone(), req.clone());
        Box::pin(async move {
            match quic::request::<_, ConsoleResponse>(&conn, &OpenStream::Request(req)).await? {
                ConsoleResponse::Pong { payload } if payload.len() == PAYLOAD => Ok(()),
                other => anyhow::bail!("unexpected answer: {other:?}"),
            }
        })
    })
}

fn quinn_op(conn: quinn::Connection) -> Op {
    let payload = vec![7u8; PAYLOAD];
    Arc::new(move || {
        let (conn, payload) = (conn.clone(), payload.clone());
        Box::pin(async move {
            let back: Vec<u8> = quic::request(&conn, &payload).await?;
            anyhow::ensure!(back.len() == PAYLOAD, "short echo");
            Ok(())
        })
    })
}

/// Runs the whole comparison; returns the JSON section.
pub async fn run(opts: &Opts, agent: &Path, dir: &Path) -> anyhow::Result<Value> {
    let mut fleet = start_fleet(agent, &dir.join("fleet"), 3000).await?;
    fleet.add_worker(1, 1)?;
    fleet.wait_workers(1, 30).await?;
    let payload = vec![7u8; PAYLOAD];
    let conn = fleet.connect_operator().await?;
    let two_hop = ConsoleRequest::PingWorker {
        worker: WorkerName::new("w1")?,
        payload: payload.clone(),
    };
    let one_hop = ConsoleRequest::Ping {
        payload: payload.clone(),
    };
    println!("  recfleet PingWorker (console -> coordinator -> worker and back) ...");
    let recfleet = measure(opts, console_op(conn.clone(), two_hop.clone()), async {
        Ok(vec![console_op(conn.clone(), two_hop.clone()); CONCURRENCY])
    })
    .await?;
    println!("  recfleet Ping (console -> coordinator and back) ...");
    let one = measure(opts, console_op(conn.clone(), one_hop.clone()), async {
        Ok(vec![console_op(conn.clone(), one_hop.clone()); CONCURRENCY])
    })
    .await?;
    let coordinator_version = fleet.request(ConsoleRequest::WhoAmI).await?;
    fleet.shutdown().await;

    // (a) bare quinn echo: same TLS configs, ALPN, transport settings and
    // framing, one bidirectional stream per request, in its own process.
    println!("  quinn echo ...");
    let pki = Pki::new(&dir.join("echo-tls"))?;
    let (_echo, addr) = spawn_server("quic", pki.dir()).await?;
    let endpoint = quic::client_endpoint(&pki.material("operator")?, TransportSettings::default())?;
    let qconn = quic::connect(&endpoint, addr, "localhost", Duration::from_secs(5)).await?;
    let bare = measure(opts, quinn_op(qconn.clone()), async {
        Ok(vec![quinn_op(qconn.clone()); CONCURRENCY])
    })
    .await?;
    drop(_echo);

    // (c) HTTP/1.1 keep-alive, JSON bodies; one connection per concurrent
    // client (HTTP/1.1 has one request in flight per connection).
    println!("  HTTP/1.1 keep-alive JSON ...");
    let (_http, haddr) = spawn_server("http", pki.dir()).await?;
    let http = measure(opts, http_op(haddr).await?, async {
        let mut ops = Vec::new();
        for _ in 0..CONCURRENCY {
            ops.push(http_op(haddr).await?);
        }
        Ok(ops)
    })
    .await?;
    drop(_http);

    // (b) Erlang distribution.
    println!("  Erlang distribution (two BEAM nodes) ...");
    let erlang = erlang(opts, dir).await;

    let ratio = |peer: &Figures| {
        json!({
            "latency_p50_x": recfleet.latency.p50 / peer.latency.p50,
            "latency_p99_x": recfleet.latency.p99 / peer.latency.p99,
            "throughput_x": recfleet.msgs_per_s / peer.msgs_per_s,
        })
    };
    let ratio_one = |peer: &Figures| {
        json!({
            "latency_p50_x": one.latency.p50 / peer.latency.p50,
            "latency_p99_x": one.latency.p99 / peer.latency.p99,
            "throughput_x": one.msgs_per_s / peer.msgs_per_s,
        })
    };
    let fig = |f: &Figures| {
        let mut v = f.latency.json("us");
        v["msgs_per_s"] = json!(f.msgs_per_s);
        v
    };
    let mut systems = json!({
        "recfleet_ping_worker_2hop": fig(&recfleet),
        "recfleet_ping_coordinator_1hop": fig(&one),
        "quinn_echo_1hop": fig(&bare),
        "http1_keepalive_json_1hop": fig(&http),
    });
    let mut ratios = json!({
        "ping_worker_vs_quinn": ratio(&bare),
        "ping_worker_vs_http": ratio(&http),
        "ping_coordinator_vs_quinn": ratio_one(&bare),
        "ping_coordinator_vs_http": ratio_one(&http),
    });
    match &erlang {
        Ok((f, raw)) => {
            let mut v = fig(f);
            v["otp_release"] = raw["otp_release"].clone();
            systems["erlang_distribution_1hop"] = v;
            ratios["ping_worker_vs_erlang"] = ratio(f);
            ratios["ping_coordinator_vs_erlang"] = ratio_one(f);
        }
        Err(e) => {
            systems["erlang_distribution_1hop"] = json!({ "skipped": e.to_string() });
        }
    }
    let _ = coordinator_version;
    Ok(json!({
        "payload_bytes": PAYLOAD,
        "sequential_samples": opts.rtt_samples(),
        "throughput_concurrency": CONCURRENCY,
        "throughput_secs": opts.rtt_duration().as_secs_f64(),
        "systems": systems,
        "ratios": ratios,
    }))
}

async fn erlang(opts: &Opts, dir: &Path) -> anyhow::Result<(Figures, Value)> {
    let escript = which("escript").context(
        "escript not found (Debian: apt-get install erlang-base; make bench installs it)",
    )?;
    let script = dir.join("erl_rtt.escript");
    std::fs::write(&script, include_str!("../peers/erl_rtt.escript"))?;
    let out = Command::new(escript)
        .arg(&script)
        .arg(opts.rtt_samples().to_string())
        .arg(PAYLOAD.to_string())
        .arg(CONCURRENCY.to_string())
        .arg(opts.rtt_duration().as_millis().to_string())
        .current_dir(dir)
        .kill_on_drop(true)
        .output()
        .await?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .with_context(|| {
            format!(
                "the escript printed no result: {stdout} {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
    let v: Value = serde_json::from_str(line)?;
    let f = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    let figures = Figures {
        latency: Summary {
            n: v["n"].as_u64().unwrap_or(0) as usize,
            p50: f("p50_us"),
            p95: f64::NAN,
            p99: f("p99_us"),
            max: f64::NAN,
        },
        msgs_per_s: f("msgs_per_s"),
    };
    Ok((figures, v))
}

/// A program on PATH.
pub fn which(name: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

/// Starts `recfleet-bench serve <kind>` and waits for its address.
async fn spawn_server(kind: &str, tls: &Path) -> anyhow::Result<(Child, SocketAddr)> {
    let mut child = Command::new(std::env::current_exe()?)
        .args(["serve", kind, "--tls"])
        .arg(tls)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .context("the peer server did not start")??
        .context("the peer server exited")?;
    let addr = line
        .strip_prefix("ready ")
        .context("unexpected server output")?
        .parse()?;
    Ok((child, addr))
}

/// `recfleet-bench serve quic|http`: the peer servers, in a process of their own.
pub async fn serve(kind: &str, tls: &Path) -> anyhow::Result<()> {
    match kind {
        "quic" => {
            let material = recfleet_certs::TlsMaterial::load(
                &tls.join("ca.pem"),
                &tls.join("coordinator.pem"),
                &tls.join("coordinator-key.pem"),
            )?;
            let endpoint = quic::server_endpoint(
                ([127, 0, 0, 1], 0).into(),
                &material,
                TransportSettings::default(),
            )?;
            println!("ready {}", endpoint.local_addr()?);
            while let Some(incoming) = endpoint.accept().await {
                tokio::spawn(async move {
                    let Ok(peer) = quic::accept(incoming).await else {
                        return;
                    };
                    while let Ok((mut send, mut recv)) = peer.connection.accept_bi().await {
                        tokio::spawn(async move {
                            if let Ok(Some(msg)) = quic::read_frame::<Vec<u8>>(&mut recv).await {
                                let _ = quic::write_frame(&mut send, &msg).await;
                                let _ = send.finish();
                            }
                        });
                    }
                });
            }
            Ok(())
        }
        "http" => {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            println!("ready {}", listener.local_addr()?);
            loop {
                let (tcp, _) = listener.accept().await?;
                tcp.set_nodelay(true)?;
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        |req: hyper::Request<hyper::body::Incoming>| async move {
                            let body = req.into_body().collect().await?.to_bytes();
                            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                            let out = serde_json::to_vec(&json!({ "payload": v["payload"] }))
                                .unwrap_or_default();
                            anyhow::Ok(
                                hyper::Response::builder()
                                    .header("content-type", "application/json")
                                    .body(Full::new(Bytes::from(out)))?,
                            )
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .keep_alive(true)
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
            }
        }
        other => anyhow::bail!("unknown server kind {other}"),
    }
}

/// One HTTP/1.1 keep-alive connection; each op is a POST with a JSON body
/// carrying the payload as hex, answered with the same JSON.
async fn http_op(addr: SocketAddr) -> anyhow::Result<Op> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(conn);
    let sender = Arc::new(tokio::sync::Mutex::new(sender));
    let hex: String = std::iter::repeat_n("07", PAYLOAD).collect();
    let body = Bytes::from(serde_json::to_vec(&json!({ "payload": hex }))?);
    Ok(Arc::new(move || {
        let (sender, body) = (sender.clone(), body.clone());
        Box::pin(async move {
            let req = hyper::Request::post("/echo")
                .header("host", "127.0.0.1")
                .header("content-type", "application/json")
                .body(Full::new(body))?;
            let mut s = sender.lock().await;
            s.ready().await?;
            let resp = s.send_request(req).await?;
            drop(s);
            let bytes = resp.into_body().collect().await?.to_bytes();
            let v: Value = serde_json::from_slice(&bytes)?;
            anyhow::ensure!(v["payload"].as_str().map(str::len) == Some(2 * PAYLOAD));
            Ok(())
        })
    }))
}
