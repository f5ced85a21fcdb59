//! Benchmark 7, coordinators on PostgreSQL: the fleet-scale run on SQLite
//! and on PostgreSQL side by side (placement rate, request latency), and
//! leader failover: kill -9 of the leader of two coordinators, then the
//! time until a console's request is answered (by the other).

use std::path::Path;
use std::time::{Duration, Instant};

use recfleet_client::{connect, Client};
use recfleet_protocol::{ConsoleRequest, ConsoleResponse};
use recfleet_testkit::http::http_get;
use recfleet_testkit::postgres::PgServer;
use serde_json::{json, Value};

use crate::harness::start_fleet_on;
use crate::stats::Summary;
use crate::Opts;

/// The leader, by /readyz (a standby answers 503).
async fn leader(fleet: &recfleet_testkit::TestFleet, within: Duration) -> anyhow::Result<String> {
    let until = Instant::now() + within;
    loop {
        for name in fleet.coordinator_names() {
            if let Some(http) = fleet.coordinator_http_of(&name) {
                if let Ok((200, _)) = http_get(http, "/readyz") {
                    return Ok(name);
                }
            }
        }
        anyhow::ensure!(Instant::now() < until, "no leader within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn failover(opts: &Opts, agent: &Path, dir: &Path) -> anyhow::Result<Value> {
    let db = PgServer::start().await?;
    let mut fleet = start_fleet_on(agent, dir, 2000, Some(db.url()), 1).await?;
    let tls = fleet.material("operator")?;
    let mut samples = Vec::new();
    for trial in 0..opts.failover_trials() {
        let first = leader(&fleet, Duration::from_secs(30)).await?;
        // Both up: the other is a standby that has seen the lease.
        tokio::time::sleep(Duration::from_secs(2)).await;
        // A console of both coordinators, connected (to either) before.
        let client = Client::new(
            connect::endpoint(&tls)?,
            fleet.coordinator_list(),
            "localhost",
        )
        .with_connect_timeout(Duration::from_secs(1))
        .with_request_timeout(Duration::from_secs(1));
        client.request(ConsoleRequest::ListWorkers).await?;
        let killed = Instant::now();
        fleet.kill_coordinator_named(&first).await;
        let answered = loop {
            if let Ok(ConsoleResponse::Workers(_)) =
                client.request(ConsoleRequest::ListWorkers).await
            {
                break killed.elapsed();
            }
            anyhow::ensure!(
                killed.elapsed() < Duration::from_secs(60),
                "no leader answered"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let now = leader(&fleet, Duration::from_secs(5)).await?;
        println!(
            "    trial {}: {first} killed, {now} answered after {} ms",
            trial + 1,
            answered.as_millis()
        );
        samples.push(answered.as_secs_f64() * 1000.0);
        fleet.start_coordinator_named(&first)?;
    }
    fleet.shutdown().await;
    let s = Summary::of(&samples);
    println!(
        "  failover (kill -9 of the leader -> a console request answered): p50 {:.0} ms, p95 {:.0} ms, max {:.0} ms over {}",
        s.p50, s.p95, s.max, s.n
    );
    Ok(json!({
        "trials": s.n,
        "lease_ttl_ms": 3000,
        "lease_renew_ms": 1000,
        "first_answer_ms": { "p50": s.p50, "p95": s.p95, "max": s.max, "samples": samples },
    }))
}

/// Runs both parts.
pub async fn run(opts: &Opts, agent: &Path, dir: &Path) -> anyhow::Result<Value> {
    let n = opts.pick(20, 500);
    println!("  {n} simulated workers on SQLite, then on PostgreSQL ...");
    let sqlite = crate::scale::one(opts, agent, &dir.join("sqlite"), n, None).await?;
    let db = PgServer::start().await?;
    let postgres = crate::scale::one(opts, agent, &dir.join("postgres"), n, Some(db.url())).await?;
    drop(db);
    let rate = |v: &Value| v["placement"]["placed_per_s"].as_f64();
    let lat = |v: &Value, p: &str| v["placement"]["start_request_ms"][p].as_f64();
    if let (Some(a), Some(b)) = (rate(&sqlite), rate(&postgres)) {
        println!(
            "  placement: SQLite {a:.0}/s, PostgreSQL {b:.0}/s ({:.2}x)",
            b / a
        );
    }
    for p in ["p50", "p99"] {
        if let (Some(a), Some(b)) = (lat(&sqlite, p), lat(&postgres, p)) {
            println!(
                "  start request {p} (16 in flight): SQLite {a:.1} ms, PostgreSQL {b:.1} ms ({:.2}x)",
                b / a
            );
        }
    }
    println!("  leader failover ...");
    let failover = failover(opts, agent, &dir.join("failover")).await?;
    Ok(json!({
        "workers": n,
        "sqlite": sqlite,
        "postgres": postgres,
        "failover": failover,
    }))
}
