//! The start-of-hour burst, across processes and without a browser: a real
//! coordinator process, 100 simulated workers of capacity 4 connected over
//! real QUIC from this process, an operator asking for 2,000 recordings
//! within about 2 s (50 requests in flight), and a viewer watching the
//! event stream all along. Then the same fleet with 10,000 recordings
//! waiting. What must hold: every request is answered in time, no worker
//! is lost on the way, exactly the capacity is placed and the rest waits
//! in request order, and the event stream stays live.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use recfleet_protocol::quic;
use recfleet_protocol::spec::RecordingSpec;
use recfleet_protocol::{
    ConsoleRequest, ConsoleResponse, OpenStream, RecordingId, RecordingInfo, RecordingState,
    WorkerState,
};
use recfleet_testkit::procs::{cores_between, proc_sample};
use recfleet_testkit::{FleetOptions, TestFleet};
use tokio::sync::Semaphore;

const WORKERS: usize = 100;
const CAPACITY: u32 = 4;
const SLOTS: usize = WORKERS * CAPACITY as usize;
const BURST: usize = 2_000;
const IN_FLIGHT: usize = 50;
/// The burst's requests are spread evenly over this.
const SPREAD: Duration = Duration::from_secs(2);
const STOPPED: usize = 40;
const MANY_WAITING: usize = 10_000;

const PLACED: [RecordingState; 3] = [
    RecordingState::Assigned,
    RecordingState::Starting,
    RecordingState::Recording,
];

fn spec(id: &str) -> RecordingSpec {
    let mut s = RecordingSpec::new(
        RecordingId::new(id).unwrap(),
        "http://127.0.0.1:9/class.html",
    );
    s.stop.max_duration_secs = Some(3600);
    s
}

/// One request's outcome: how long it took and what came back.
struct Answer {
    id: String,
    latency: Duration,
    response: Result<ConsoleResponse, String>,
}

/// Asks for `ids`, at most `IN_FLIGHT` at once; the i-th request is not
/// sent before `spread * i / n` (`None`: as fast as answers come back).
async fn start_all(
    conn: &quinn::Connection,
    ids: Vec<String>,
    spread: Option<Duration>,
) -> Vec<Answer> {
    let sem = Arc::new(Semaphore::new(IN_FLIGHT));
    let t0 = tokio::time::Instant::now();
    let n = ids.len() as u32;
    let mut tasks = Vec::with_capacity(ids.len());
    for (i, id) in ids.into_iter().enumerate() {
        if let Some(spread) = spread {
            tokio::time::sleep_until(t0 + spread * i as u32 / n).await;
        }
        let permit = sem.clone().acquire_owned().await.unwrap();
        let conn = conn.clone();
        tasks.push(tokio::spawn(async move {
            let req = OpenStream::Request(ConsoleRequest::StartRecording(spec(&id)));
            let t = Instant::now();
            let response = quic::request::<_, ConsoleResponse>(&conn, &req)
                .await
                .map_err(|e| e.to_string());
            let latency = t.elapsed();
            drop(permit);
            Answer {
                id,
                latency,
                response,
            }
        }));
    }
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Every request got `Started` with a new recording; returns the sorted
/// latencies.
fn all_started(answers: &[Answer]) -> Vec<Duration> {
    let bad: Vec<String> = answers
        .iter()
        .filter(|a| {
            !matches!(
                a.response,
                Ok(ConsoleResponse::Started { created: true, .. })
            )
        })
        .take(5)
        .map(|a| format!("{}: {:?}", a.id, a.response))
        .collect();
    let failed = answers
        .iter()
        .filter(|a| {
            !matches!(
                a.response,
                Ok(ConsoleResponse::Started { created: true, .. })
            )
        })
        .count();
    assert_eq!(
        failed,
        0,
        "{failed} of {} requests not answered with Started; first: {bad:#?}",
        answers.len()
    );
    let mut lat: Vec<Duration> = answers.iter().map(|a| a.latency).collect();
    lat.sort();
    lat
}

fn by_state(list: &[RecordingInfo], states: &[RecordingState]) -> Vec<String> {
    list.iter()
        .filter(|r| states.contains(&r.state))
        .map(|r| r.id.to_string())
        .collect()
}

/// Polls the paged list until `pred` holds on it (within `secs`).
async fn wait_list(
    fleet: &mut TestFleet,
    secs: u64,
    what: &str,
    pred: impl Fn(&[RecordingInfo]) -> bool,
) -> Vec<RecordingInfo> {
    let until = Instant::now() + Duration::from_secs(secs);
    loop {
        let list = fleet.recordings_paged(&[]).await.unwrap();
        if pred(&list) {
            return list;
        }
        assert!(
            Instant::now() < until,
            "{what} within {secs} s: {} placed, {} pending, {} total; logs in {}",
            by_state(&list, &PLACED).len(),
            by_state(&list, &[RecordingState::Pending]).len(),
            list.len(),
            fleet.dir().display()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Workers that are not ready (lost ones among them), and how many in all.
async fn not_ready(conn: &quinn::Connection) -> (Vec<String>, usize) {
    let req = OpenStream::Request(ConsoleRequest::ListWorkers);
    let ConsoleResponse::Workers(workers) = quic::request(conn, &req).await.unwrap() else {
        panic!("ListWorkers")
    };
    let bad = workers
        .iter()
        .filter(|w| w.state != WorkerState::Ready)
        .map(|w| format!("{} {:?}", w.name, w.state))
        .collect();
    (bad, workers.len())
}

/// No worker lost: none in state lost (or anything but ready), all there.
async fn no_worker_lost(fleet: &TestFleet) {
    let conn = fleet.connect_as("viewer").await.unwrap();
    let (bad, n) = not_ready(&conn).await;
    assert!(bad.is_empty(), "workers not ready: {bad:?}");
    assert_eq!(n, WORKERS);
}

/// Lists the workers every 500 ms until stopped; returns every one seen
/// not ready (with when, since the start).
fn poll_workers(
    conn: quinn::Connection,
    stop: Arc<tokio::sync::Notify>,
) -> tokio::task::JoinHandle<Vec<(Duration, String)>> {
    tokio::spawn(async move {
        let t0 = Instant::now();
        let mut seen = Vec::new();
        loop {
            let (bad, _) = not_ready(&conn).await;
            seen.extend(bad.into_iter().map(|b| (t0.elapsed(), b)));
            tokio::select! {
                _ = stop.notified() => return seen,
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_of_hour_burst_is_answered_placed_in_order_and_watched() {
    let mut fleet = TestFleet::start_with(FleetOptions {
        // Debug logs of every request would be the test's bottleneck.
        log_filter: "info".into(),
        agent_certs: 0,
        ..Default::default()
    })
    .await
    .unwrap();
    fleet.wait_ready().await.unwrap();
    fleet
        .add_sim_workers("sim", WORKERS, CAPACITY)
        .await
        .unwrap();
    fleet.wait_workers(WORKERS, 30).await.unwrap();
    let watch = fleet.watch("viewer").await.unwrap();
    let pid = fleet.coordinator_pid().unwrap();
    // The subscriber has its snapshot before the burst begins.
    let until = Instant::now() + Duration::from_secs(10);
    while watch.seen().snapshots.is_empty() {
        assert!(Instant::now() < until, "no snapshot");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The burst.
    let ids: Vec<String> = (0..BURST).map(|i| format!("burst-{i:05}")).collect();
    let op = fleet.connect_operator().await.unwrap();
    let stop_polling = Arc::new(tokio::sync::Notify::new());
    let poller = poll_workers(
        fleet.connect_as("viewer").await.unwrap(),
        stop_polling.clone(),
    );
    let (cpu0, me0) = (
        proc_sample(pid).unwrap(),
        proc_sample(std::process::id()).unwrap(),
    );
    let t0 = Instant::now();
    let answers = start_all(&op, ids.clone(), Some(SPREAD)).await;
    let t_end = Instant::now();
    let (cpu1, me1) = (
        proc_sample(pid).unwrap(),
        proc_sample(std::process::id()).unwrap(),
    );
    let lat = all_started(&answers);
    let (p50, p99, max) = (
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        *lat.last().unwrap(),
    );
    eprintln!(
        "burst: {BURST} requests in {:.2} s, latency p50 {p50:?} p99 {p99:?} max {max:?}; \
         coordinator {:.2} cores, RSS {} MiB; this process (sims, clients) {:.2} cores",
        t_end.duration_since(t0).as_secs_f64(),
        cores_between(&cpu0, &cpu1),
        cpu1.rss_bytes >> 20,
        cores_between(&me0, &me1),
    );
    assert!(p99 <= Duration::from_secs(1), "p99 {p99:?} > 1 s");

    // Exactly the capacity placed, the rest waiting.
    let list = wait_list(&mut fleet, 15, "all slots placed", |l| {
        by_state(l, &[RecordingState::Recording]).len() == SLOTS
    })
    .await;
    assert_eq!(list.len(), BURST);
    assert_eq!(by_state(&list, &PLACED).len(), SLOTS);
    assert_eq!(
        by_state(&list, &[RecordingState::Pending]).len(),
        BURST - SLOTS
    );
    let placed_at = {
        let seen = watch.seen();
        let mut at: Vec<Instant> = seen.recording_since.values().copied().collect();
        at.sort();
        at.get(SLOTS - 1).copied()
    };
    let placed_secs = placed_at.map(|a| a.duration_since(t0).as_secs_f64());
    eprintln!("burst: all {SLOTS} slots recording {placed_secs:?} s after the first request");

    // Through the burst and 5 s after it: no worker lost, events all along.
    tokio::time::sleep_until((t_end + Duration::from_secs(5)).into()).await;
    stop_polling.notify_one();
    let not_ready_seen = poller.await.unwrap();
    assert!(
        not_ready_seen.is_empty(),
        "workers not ready during the burst: {not_ready_seen:?}"
    );
    no_worker_lost(&fleet).await;
    {
        let seen = watch.seen();
        assert!(seen.worker_lost.is_empty(), "lost: {:?}", seen.worker_lost);
        assert_eq!(seen.ended, None, "the subscription ended");
        assert_eq!(seen.out_of_order, 0);
        // Every second of the burst; the last window ends with the burst
        // (a sliver of a second would prove nothing).
        let burst_secs = t_end.duration_since(t0).as_secs_f64().ceil() as u32;
        for k in 0..burst_secs {
            let from = (t0 + Duration::from_secs(u64::from(k)))
                .min(t_end.checked_sub(Duration::from_secs(1)).unwrap_or(t0))
                .max(t0);
            let n = seen.events_between(from, from + Duration::from_secs(1));
            assert!(n > 0, "no event in second {k} of the burst");
        }
        let after = seen.events_between(t_end, Instant::now() + Duration::from_secs(1));
        assert!(after > 0, "no event after the burst");
        eprintln!(
            "burst: the viewer got {} events during the burst, {after} in the 5 s after, {} lags",
            seen.events_between(t0, t_end),
            seen.lagged.len()
        );
    }
    // A subscriber that comes after the burst gets the whole snapshot (in
    // parts), then events.
    let late = fleet.watch("viewer").await.unwrap();
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        {
            let seen = late.seen();
            if let Some(s) = seen.snapshots.first() {
                if s.recordings == BURST && !seen.event_times.is_empty() {
                    assert_eq!(s.workers, WORKERS);
                    assert!(s.parts > 1, "2,000 recordings fit one frame?");
                    break;
                }
            }
            assert!(
                Instant::now() < until,
                "late subscriber: {:?}",
                seen.snapshots
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(late);

    // Capacity frees: the oldest waiting recordings start next, in order.
    let pending_before = by_state(&list, &[RecordingState::Pending]);
    let placed_before: BTreeSet<String> = by_state(&list, &PLACED).into_iter().collect();
    let stop: Vec<String> = placed_before.iter().take(STOPPED).cloned().collect();
    let stops0 = fleet.sims()[0]
        .counters
        .stops
        .load(std::sync::atomic::Ordering::Relaxed);
    for id in &stop {
        let r = fleet
            .request(ConsoleRequest::StopRecording {
                id: RecordingId::new(id).unwrap(),
            })
            .await
            .unwrap();
        assert!(matches!(r, ConsoleResponse::Accepted { .. }), "{r:?}");
    }
    let list = wait_list(&mut fleet, 15, "the freed slots refilled", |l| {
        by_state(l, &[RecordingState::Recording]).len() == SLOTS
            && by_state(l, &[RecordingState::Completed]).len() == STOPPED
    })
    .await;
    let stops = fleet.sims()[0]
        .counters
        .stops
        .load(std::sync::atomic::Ordering::Relaxed)
        - stops0;
    assert_eq!(stops, STOPPED as u64, "StopSegment frames at the workers");
    let completed: BTreeSet<String> = by_state(&list, &[RecordingState::Completed])
        .into_iter()
        .collect();
    assert_eq!(completed, stop.iter().cloned().collect());
    let placed_after: BTreeSet<String> = by_state(&list, &PLACED).into_iter().collect();
    let started_next: BTreeSet<String> = placed_after.difference(&placed_before).cloned().collect();
    let oldest: BTreeSet<String> = pending_before.iter().take(STOPPED).cloned().collect();
    assert_eq!(
        started_next, oldest,
        "the recordings that started are not the {STOPPED} oldest waiting"
    );
    assert_eq!(
        by_state(&list, &[RecordingState::Pending]),
        pending_before[STOPPED..].to_vec(),
        "the rest still waits, in request order"
    );

    // 10,000 waiting on the same workers.
    let waiting = by_state(&list, &[RecordingState::Pending]).len();
    let more: Vec<String> = (0..MANY_WAITING - waiting)
        .map(|i| format!("more-{i:05}"))
        .collect();
    let t1 = Instant::now();
    let answers = start_all(&op, more.clone(), None).await;
    let t1_end = Instant::now();
    let lat = all_started(&answers);
    eprintln!(
        "waiting: {} more requests in {:.2} s, latency p50 {:?} p99 {:?} max {:?}",
        more.len(),
        t1_end.duration_since(t1).as_secs_f64(),
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat.last().unwrap()
    );
    let list = fleet.recordings_paged(&[]).await.unwrap();
    assert_eq!(
        by_state(&list, &[RecordingState::Pending]).len(),
        MANY_WAITING
    );
    assert_eq!(by_state(&list, &PLACED).len(), SLOTS);
    tokio::time::sleep(Duration::from_secs(3)).await;
    no_worker_lost(&fleet).await;
    let check = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    {
        let seen = watch.seen();
        assert!(seen.worker_lost.is_empty(), "lost: {:?}", seen.worker_lost);
        assert_eq!(seen.ended, None, "the subscription ended");
        assert!(
            seen.anything_after(check),
            "the subscription went quiet after 10,000 requests"
        );
        // A lag is allowed; it must be followed by a whole fresh snapshot.
        if let Some((lag_at, _)) = seen.lagged.last() {
            let snap = seen.snapshots.last().unwrap();
            assert!(snap.at > *lag_at, "no snapshot after the lag");
        }
        eprintln!(
            "waiting: the viewer got {} events, {} lags, {} snapshots (last in {} parts)",
            seen.event_times.len(),
            seen.lagged.len(),
            seen.snapshots.len(),
            seen.snapshots.last().map_or(0, |s| s.parts)
        );
    }
    // A new subscriber gets all of it, in parts.
    let late = fleet.watch("viewer").await.unwrap();
    let until = Instant::now() + Duration::from_secs(15);
    loop {
        {
            let seen = late.seen();
            let total = BURST + more.len();
            if let Some(s) = seen.snapshots.first() {
                if s.recordings >= total - STOPPED && !seen.event_times.is_empty() {
                    eprintln!(
                        "waiting: a new subscriber got {} recordings in {} parts",
                        s.recordings, s.parts
                    );
                    break;
                }
            }
            assert!(
                Instant::now() < until,
                "late subscriber: {:?}",
                seen.snapshots
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    fleet.shutdown().await;
}
